"""The ceiling the bridge's ingest is measured against: two baseline ASGI apps.

- `empty_app`: `POST /webhooks/stripe` reads the body and answers 200
  `{"status":"accepted"}`. What Starlette on uvicorn (uvloop + httptools, one process)
  can answer at all on this machine: the bridge's ingest is a fraction of this.
- `naive_sqlite_app(path)`: the same endpoint, but every request's body is committed in
  its own SQLite transaction (WAL, `synchronous=FULL`, one fsync per webhook) before the
  answer: the durable endpoint one writes without thinking about batching.
  `mode="direct"` commits on the event loop (blocking it during the fsync);
  `mode="threadpool"` hands each commit to Starlette's thread pool (one shared
  connection behind a lock, as a sync helper would).

Run one as a server the way the bridge runs (the harness does this in a subprocess):

    python bench/baselines.py empty --port 8001
    python bench/baselines.py naive --db /tmp/naive.db --mode threadpool --port 8002
"""

from __future__ import annotations

import argparse
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ACCEPTED = {"status": "accepted"}
WEBHOOK_PATH = "/webhooks/stripe"
NAIVE_MODES = ("direct", "threadpool")

Endpoint = Callable[[Request], Awaitable[Response]]
Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]


def _app(endpoint: Endpoint, lifespan: Lifespan | None = None) -> Starlette:
    return Starlette(routes=[Route(WEBHOOK_PATH, endpoint, methods=["POST"])], lifespan=lifespan)


def empty_app() -> Starlette:
    async def webhook(request: Request) -> Response:
        await request.body()
        return JSONResponse(ACCEPTED)

    return _app(webhook)


class NaiveInbox:
    """One SQLite connection; every `store` is its own committed transaction."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS inbox ("
            "id INTEGER PRIMARY KEY, received_at REAL NOT NULL, body BLOB NOT NULL)"
        )
        self._lock = threading.Lock()

    def store(self, body: bytes) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    "INSERT INTO inbox (received_at, body) VALUES (?, ?)", (time.time(), body)
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()


def naive_sqlite_app(path: Path | str, mode: str = "threadpool") -> Starlette:
    if mode not in NAIVE_MODES:
        raise ValueError(f"mode must be one of {NAIVE_MODES}, not {mode!r}")
    inbox = NaiveInbox(Path(path))

    async def webhook_direct(request: Request) -> Response:
        inbox.store(await request.body())
        return JSONResponse(ACCEPTED)

    async def webhook_threadpool(request: Request) -> Response:
        await run_in_threadpool(inbox.store, await request.body())
        return JSONResponse(ACCEPTED)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        inbox.close()

    return _app(webhook_direct if mode == "direct" else webhook_threadpool, lifespan)


def serve(app: Starlette, host: str, port: int) -> None:
    """uvicorn as the bridge runs it: uvloop, httptools, one process, no access log."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        workers=1,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve a baseline app for the benchmark.")
    parser.add_argument("app", choices=("empty", "naive"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", type=Path, help="SQLite file for the naive app")
    parser.add_argument("--mode", choices=NAIVE_MODES, default="threadpool")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    if args.app == "empty":
        app = empty_app()
    elif args.db is None:
        raise SystemExit("naive needs --db PATH")
    else:
        app = naive_sqlite_app(args.db, args.mode)
    serve(app, args.host, args.port)


if __name__ == "__main__":
    main()
