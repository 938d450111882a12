"""`supportbot serve` with several worker processes: one database, one index, live updates that
reach a stream whichever worker stored the change."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

BIN = Path(sys.executable).parent
KB = Path(__file__).resolve().parent.parent / "kb_articles"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Two workers over the sample KB (fake embedder), on a free loopback port."""
    home = tmp_path_factory.mktemp("workers")
    port = _free_port()
    env = {
        **os.environ,
        "SUPPORTBOT_DATABASE_URL": f"sqlite:///{home / 'bot.db'}",
        "SUPPORTBOT_INDEX_DIR": str(home / "index"),
        "SUPPORTBOT_SECRET_KEY_FILE": str(home / "secret"),
        "SUPPORTBOT_EMBEDDER": "fake",
        "SUPPORTBOT_HOST": "127.0.0.1",
        "SUPPORTBOT_PORT": str(port),
        "SUPPORTBOT_WORKERS": "2",
        "SUPPORTBOT_ANSWER_THRESHOLD": "0.0",  # the fake embedder's scores are low: answer all
        "SUPPORTBOT_CLARIFY_THRESHOLD": "0.0",
    }
    for step in (["import", str(KB)], ["index"]):
        subprocess.run([str(BIN / "supportbot"), *step], env=env, cwd=home, check=True)
    log = (home / "serve.log").open("wb")
    proc = subprocess.Popen(
        [str(BIN / "supportbot"), "serve"], env=env, cwd=home, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            assert proc.poll() is None, (home / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not get healthy"
            time.sleep(0.2)
        yield url, proc, home
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_two_worker_processes_serve(served):
    _, proc, _ = served
    # the supervisor runs the workers (and the spawn machinery may add a helper process)
    workers = [
        p for p in _children(proc.pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()
    ]
    assert len(workers) == 2


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
