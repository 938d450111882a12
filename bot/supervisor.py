"""The parent of several server workers: the event hub and uvicorn's supervisor, nothing more.

``supportbot serve`` with more than one worker migrates the database and creates the session key
in its own process, which imports SQLAlchemy, pydantic and the settings to do so. It then
replaces itself (same process id, so signals and supervisors see no change) with
``python -P -m bot.supervisor HOST PORT WORKERS``, which imports only uvicorn and the hub: 27 MB
resident instead of 61 MB, measured, for a process that lives as long as the server.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import uvicorn

from bot.event_hub import start_hub


def command(host: str, port: int, workers: int) -> tuple[list[str], dict[str, str]]:
    """The command line that runs :func:`main`, and its environment. ``-P``: the working
    directory is not searched for modules (nor is it for the ``supportbot`` script); the folder
    this ``bot`` package came from goes first on ``PYTHONPATH`` instead, so an uninstalled
    checkout (``python -m bot.cli serve``) starts the same code."""
    source = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH")) if p)
    argv = [sys.executable, "-P", "-m", "bot.supervisor", host, str(port), str(workers)]
    return argv, {**os.environ, "PYTHONPATH": path}


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    host, port, workers = argv[0], int(argv[1]), int(argv[2])
    hub = start_hub()  # live updates published in one worker reach the others' subscribers
    os.environ.update(hub.environ())
    try:
        # every worker builds its app from the same environment (and .env file); a worker
        # loading a large index may not answer the supervisor's ping within the default 5 s
        uvicorn.run(
            "bot.app:create_app",
            factory=True,
            workers=workers,
            timeout_worker_healthcheck=60,
            host=host,
            port=port,
        )
    finally:
        hub.close()


if __name__ == "__main__":
    main(sys.argv[1:])
