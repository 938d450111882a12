"""The served bot in `make bench`: cold start, memory, and replies under concurrent load.

The server is `supportbot serve` in its own process on a free loopback port, over a prepared
database and index; the load comes from `eval.loadgen` in another process.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (a server with several workers is a process tree)."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:  # the task ended meanwhile
                continue
    return tree


def _kb_fields(path: Path, keys: tuple[str, ...]) -> dict[str, int]:
    fields = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(":")
        if key in keys:
            fields[key] = int(value.split()[0])
    return fields


def memory_mb(pid: int) -> dict:
    """Memory of the server's processes, in MB: resident now and at its peak (VmRSS, VmHWM),
    summed over the process tree, and the proportional share (Pss: a page shared by two
    processes, such as a mapped index file or a library, counts half in each)."""
    rss = peak = pss = 0
    processes = 0
    for p in process_tree(pid):
        try:
            status = _kb_fields(Path(f"/proc/{p}/status"), ("VmRSS", "VmHWM"))
            rollup = _kb_fields(Path(f"/proc/{p}/smaps_rollup"), ("Pss",))
        except OSError:
            continue
        processes += 1
        rss += status.get("VmRSS", 0)
        peak += status.get("VmHWM", 0)
        pss += rollup.get("Pss", 0)
    return {
        "rss": round(rss / 1024, 1),
        "peak": round(peak / 1024, 1),
        "pss": round(pss / 1024, 1),
        "processes": processes,
    }


class Server:
    """`supportbot serve` over ``env``'s database and index; started by :meth:`start`."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            **env,
            "SUPPORTBOT_HOST": "127.0.0.1",
            "SUPPORTBOT_PORT": str(self.port),
            "SUPPORTBOT_SECRET_KEY_FILE": str(workdir / "secret_key"),
        }
        self.log = workdir / f"server-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180.0) -> float:
        """Start the server; returns the seconds until /health answered ok."""
        started = time.perf_counter()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "supportbot"), "serve"], env=self.env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the server exited: see {self.log}")
                try:
                    if http.get(f"{self.url}/health").status_code == 200:
                        return time.perf_counter() - started
                except httpx.HTTPError:
                    pass
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"the server did not get healthy in {timeout:.0f} s: see {self.log}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def load(url: str, questions_file: Path, clients: int, requests: int, seconds: float) -> dict:
    """One bounded run of the load generator, in its own process."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "eval.loadgen",
            url,
            "--questions",
            str(questions_file),
            "--clients",
            str(clients),
            "--requests",
            str(requests),
            "--seconds",
            str(seconds),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 180,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"the load generator failed: {out.stderr[-3000:]}")
    return json.loads(out.stdout)


def _median_run(runs: list[dict]) -> dict:
    """The run with the median replies/s, with the medians of every figure beside it."""
    ordered = sorted(runs, key=lambda r: r["replies_per_s"])
    mid = dict(ordered[len(ordered) // 2])
    mid["median_of"] = len(runs)
    mid["latency_ms"] = {
        q: round(statistics.median(r["latency_ms"][q] for r in runs), 2) for q in ("p50", "p99")
    }
    mid["runs_replies_per_s"] = [r["replies_per_s"] for r in runs]
    return mid


def measure(
    env: dict[str, str],
    questions: list[str],
    runs: int = 3,
    clients: tuple[int, ...] = (8, 64),
    requests: int = 2000,
    seconds: float = 30.0,
    workers: int = 1,
) -> dict:
    """Cold start (median of ``runs`` starts), replies/s and latency per client count (median
    of ``runs``), and the server's memory after the load, with ``workers`` server processes."""
    env = {**env, "SUPPORTBOT_WORKERS": str(workers)}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        qfile = workdir / "questions.json"
        qfile.write_text(json.dumps(questions))
        starts: list[float] = []
        server = None
        for i in range(runs):
            server = Server(env, workdir)
            starts.append(server.start())
            if i < runs - 1:
                server.stop()
        assert server is not None and server.proc is not None
        try:
            idle = memory_mb(server.proc.pid)
            results = {}
            for n in clients:
                results[str(n)] = _median_run(
                    [load(server.url, qfile, n, requests, seconds) for _ in range(runs)]
                )
            loaded = memory_mb(server.proc.pid)
        finally:
            server.stop()
    return {
        "workers": workers,
        "cold_start_s": round(statistics.median(starts), 2),
        "cold_start_runs_s": [round(s, 2) for s in starts],
        "memory_mb": {"after_start": idle, "after_load": loaded},
        "http": results,
    }
