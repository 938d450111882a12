"""`supportbot serve` with several worker processes: one database, one index, live updates that
reach a stream whichever worker stored the change."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from eval.bench_server import Server, process_tree

BIN = Path(sys.executable).parent
KB = Path(__file__).resolve().parent.parent / "kb_articles"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Two workers over the sample KB (fake embedder), on a free loopback port."""
    home = tmp_path_factory.mktemp("workers")
    env = {
        "SUPPORTBOT_DATABASE_URL": f"sqlite:///{home / 'bot.db'}",
        "SUPPORTBOT_INDEX_DIR": str(home / "index"),
        "SUPPORTBOT_EMBEDDER": "fake",
        "SUPPORTBOT_WORKERS": "2",
        "SUPPORTBOT_ANSWER_THRESHOLD": "0.0",  # the fake embedder's scores are low: answer all
        "SUPPORTBOT_CLARIFY_THRESHOLD": "0.0",
    }
    server = Server(env, home)
    for step in (["import", str(KB)], ["index"]):
        subprocess.run([str(BIN / "supportbot"), *step], env=server.env, cwd=home, check=True)
    server.start(timeout=120)
    try:
        yield server.url, server.proc, home
    finally:
        server.stop()


def test_two_worker_processes_serve(served):
    _, proc, _ = served
    # the supervisor runs the workers (and the spawn machinery may add a helper process)
    workers = [
        p for p in process_tree(proc.pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()
    ]
    assert len(workers) == 2


def test_the_parent_process_holds_only_the_hub_and_the_supervisor(served):
    """`serve` migrates in its own process, then execs a lean one: the process that lives as
    long as the server has not loaded pydantic, SQLAlchemy or the model runtime."""
    _, proc, _ = served
    assert "bot.supervisor" in Path(f"/proc/{proc.pid}/cmdline").read_text()
    parent = Path(f"/proc/{proc.pid}/maps").read_text()
    worker = next(
        p for p in process_tree(proc.pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()
    )
    assert "pydantic_core" in Path(f"/proc/{worker}/maps").read_text()
    assert "pydantic_core" not in parent
    assert "onnxruntime" not in parent


def test_the_supervisor_runs_the_same_bot_package(tmp_path, monkeypatch):
    """An uninstalled checkout (`python -m bot.cli serve`) works: the exec'd process finds this
    `bot` package first, not whatever a `bot` folder in the working directory holds."""
    import bot
    from bot.supervisor import command

    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    argv, environ = command("127.0.0.1", 8000, 2)
    assert argv[1:] == ["-P", "-m", "bot.supervisor", "127.0.0.1", "8000", "2"]
    (tmp_path / "bot").mkdir()  # a stray package where the server is started
    (tmp_path / "bot" / "__init__.py").write_text("raise SystemExit('wrong bot package')")
    found = subprocess.run(
        [argv[0], "-P", "-c", "import bot; print(bot.__file__)"],
        env=environ,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.strip() == bot.__file__
    assert environ["PYTHONPATH"].split(":")[1:] == ["/elsewhere"]


def test_a_stream_gets_every_message_whichever_worker_stored_it(served):
    url, _, _ = served
    conv = httpx.post(f"{url}/api/v1/conversations").json()
    headers = {"X-Conversation-Token": conv["token"]}
    received: list[dict] = []
    ready = threading.Event()
    sent = 30
    stream_process: list[int] = []

    def listen() -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            # the stream reuses this kept-alive connection, so the same worker serves it
            stream_process.append(http.get("/health").json()["process"])
            with http.stream(
                "GET", f"/api/v1/conversations/{conv['id']}/events", headers=headers
            ) as stream:
                ready.set()
                kind = None
                for line in stream.iter_lines():
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:") and kind == "message":
                        received.append(json.loads(line[5:]))
                        if len(received) >= 2 * sent:
                            return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert ready.wait(10)
    time.sleep(0.3)  # the worker has subscribed by the time its response headers went out
    ids, processes = [], set()
    for i in range(sent):
        # a new connection each time: the kernel hands it to either worker
        with httpx.Client(base_url=url, timeout=30) as fresh:
            processes.add(fresh.get("/health").json()["process"])
            r = fresh.post(
                f"/api/v1/conversations/{conv['id']}/messages",
                json={"text": f"how do I reset my password? ({i})"},
                headers=headers,
            )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["conversation_status"] == "bot"
        ids += [body["customer_message_id"], body["message_id"]]
    listener.join(15)
    assert processes - set(stream_process), "every message went to the stream's own worker"
    assert sorted(e["id"] for e in received) == sorted(ids)


def test_writes_from_both_workers_are_all_stored(served):
    url, _, _ = served
    errors: list[str] = []
    convs = [httpx.post(f"{url}/api/v1/conversations").json() for _ in range(6)]

    def chat(conv: dict) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            for i in range(10):
                r = http.post(
                    f"/api/v1/conversations/{conv['id']}/messages",
                    json={"text": f"where is my order {i}"},
                    headers={"X-Conversation-Token": conv["token"]},
                )
                if r.status_code != 200:
                    errors.append(r.text)

    threads = [threading.Thread(target=chat, args=(c,)) for c in convs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    for conv in convs:
        transcript = httpx.get(
            f"{url}/api/v1/conversations/{conv['id']}",
            headers={"X-Conversation-Token": conv["token"]},
        ).json()
        customer = [m for m in transcript["messages"] if m["role"] == "customer"]
        assert len(customer) == 10
