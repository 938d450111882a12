"""A bounded HTTP load generator for `make bench`: N concurrent customers chatting with the bot.

Run in its own process (``python -m eval.loadgen URL --clients 8``) so its CPU use is not the
server's. Each client opens a conversation and sends questions one after another, each waiting
for the bot's reply; when a reply hands the conversation to a person, the client opens a new one
(a person-owned conversation gets no bot reply to time). It stops after ``--requests`` replies or
``--seconds``, whichever comes first, and prints one JSON object.

The client is aiohttp: it shares the machine's cores with the server, and takes about a third
of httpx's CPU per request (0.45 ms instead of 1.2 ms here), so less of the figure is the load
generator's own cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time

import aiohttp
import numpy as np

API = "/api/v1/conversations"


async def _client(
    http: aiohttp.ClientSession, questions: list[str], offset: int, state: dict, deadline: float
) -> None:
    conv = None
    i = offset
    while state["left"] > 0 and time.monotonic() < deadline:
        state["left"] -= 1  # claimed before any await, so the count is never overshot
        if conv is None:
            async with http.post(API) as r:
                r.raise_for_status()
                conv = await r.json()
        text = questions[i % len(questions)]
        i += 1
        started = time.perf_counter()
        try:
            async with http.post(
                f"{API}/{conv['id']}/messages",
                json={"text": text},
                headers={"X-Conversation-Token": conv["token"]},
            ) as r:
                status = r.status
                body = await r.json() if status == 200 else None
        except (TimeoutError, aiohttp.ClientError):  # e.g. a closed kept-alive connection
            state["errors"] += 1
            continue
        elapsed = (time.perf_counter() - started) * 1000
        if status != 200:
            state["errors"] += 1
            conv = None
            continue
        state["latencies"].append(elapsed)
        state["actions"][body["action"]] = state["actions"].get(body["action"], 0) + 1
        if body["conversation_status"] != "bot":
            conv = None


async def run(
    url: str, questions: list[str], clients: int, requests: int, seconds: float, warmup: int
) -> dict:
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as http:
        warm = {"left": warmup, "errors": 0, "latencies": [], "actions": {}}
        await asyncio.gather(
            *(_client(http, questions, c * 7, warm, time.monotonic() + 60) for c in range(clients))
        )
        state = {"left": requests, "errors": 0, "latencies": [], "actions": {}}
        started = time.perf_counter()
        deadline = time.monotonic() + seconds
        await asyncio.gather(
            *(_client(http, questions, c * 13, state, deadline) for c in range(clients))
        )
        wall = time.perf_counter() - started
    lat = state["latencies"]
    return {
        "clients": clients,
        "replies": len(lat),
        "errors": state["errors"],
        "seconds": round(wall, 2),
        "replies_per_s": round(len(lat) / wall, 1) if wall else 0.0,
        "latency_ms": {
            "p50": round(statistics.median(lat), 2) if lat else None,
            "p99": round(float(np.percentile(lat, 99)), 2) if lat else None,
        },
        "actions": state["actions"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--questions", required=True, help="JSON file: a list of questions")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000, help="replies to time, at most")
    parser.add_argument("--seconds", type=float, default=60.0, help="time limit")
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args(argv)
    with open(args.questions) as fh:
        questions = json.load(fh)
    if not questions:
        sys.exit("loadgen: the questions file is empty")
    result = asyncio.run(
        run(args.url, questions, args.clients, args.requests, args.seconds, args.warmup)
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
