"""One writer for SQLite: a thread that owns the write connection and commits in groups.

Every write in the bridge is a function `(connection) -> result` handed to the
writer. The thread takes whatever has queued up, runs each function inside its own
savepoint of ONE transaction, commits once (one fsync for the whole group), then
settles every caller's future. Concurrent webhooks therefore share commits instead
of queueing for them, and a failing function only rolls back itself.

A write is `durable` (the default) or not. A group holding a durable write commits
with `synchronous=FULL`: the WAL is synced, and with it every group committed before.
A group of writes that may be lost in a power cut (the processor's decisions, the
deliverer's outcomes: each is made again, with the same transaction ids, if lost)
commits with `synchronous=NORMAL`, without an fsync of its own. Every webhook's 200
and every claim that precedes a request to Credyt is durable, so nothing is sent to
Credyt before the decision that made it is on disk.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from bridge.errors import StoreError

T = TypeVar("T")
log = structlog.get_logger("bridge.storage.sqlite_writer")


@dataclass
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any] | concurrent.futures.Future[Any]
    loop: asyncio.AbstractEventLoop | None
    durable: bool = True  # committed with an fsync before the caller hears of it


class Writer:
    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        max_batch: int = 1000,
        *,
        guard: Callable[[], None] | None = None,
    ) -> None:
        self._connect = connect
        self._max_batch = max_batch
        # Called before each COMMIT; raising StoreError rolls the group back, so nothing
        # is acknowledged that would not be there at the next start (e.g. a deleted file).
        self._guard = guard
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sqlite-writer", daemon=True)
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self.commits = 0  # groups committed, for the benchmarks and metrics
        self._synchronous: str | None = None  # the writer connection's level now

    def start(self) -> None:
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            raise StoreError(f"cannot open the database for writing: {self._start_error}")

    async def run(self, fn: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        """Run `fn` in the next group; `durable=False`: its commit needs no fsync (a
        power cut may lose it, never a crash of the process)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Job(fn, future, loop, durable))
        return await future

    def run_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put(_Job(fn, future, None))
        return future.result()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:  # reported to start()
            self._start_error = exc
            self._started.set()
            return
        self._started.set()
        try:
            stop = False
            while not stop:
                job = self._queue.get()
                if job is None:
                    break
                batch = [job]
                while len(batch) < self._max_batch:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    batch.append(nxt)
                self._commit(conn, batch)
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        results: list[tuple[bool, Any]] = []
        try:
            level = "FULL" if any(job.durable for job in batch) else "NORMAL"
            if level != self._synchronous:  # outside any transaction, as SQLite wants
                conn.execute(f"PRAGMA synchronous = {level}")
                self._synchronous = level
            conn.execute("BEGIN IMMEDIATE")
            if len(batch) == 1:  # alone in its group (most, at ordinary rates): no savepoint
                lone = _run_alone(conn, batch[0])
                if not lone[0]:  # it failed: nothing else to keep
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    _settle(batch, [lone])
                    return
                results.append(lone)
            for job in batch if len(batch) > 1 else ():
                conn.execute("SAVEPOINT job")
                try:
                    value = job.fn(conn)
                except Exception as exc:  # the caller gets it; the others go on
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    results.append((False, _as_store_error(exc)))
                else:
                    conn.execute("RELEASE job")
                    results.append((True, value))
            if self._guard is not None:
                self._guard()
            conn.execute("COMMIT")
            self.commits += 1
        except sqlite3.Error as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            log.error("store_commit_failed", error=str(exc), jobs=len(batch))
            error = StoreError(f"the database could not commit: {exc}")
            results = [(False, error)] * len(batch)
        except StoreError as exc:  # the guard refused the commit
            conn.execute("ROLLBACK")
            log.error("store_commit_refused", error=str(exc), jobs=len(batch))
            results = [(False, exc)] * len(batch)
        _settle(batch, results)


def _run_alone(conn: sqlite3.Connection, job: _Job) -> tuple[bool, Any]:
    try:
        return True, job.fn(conn)
    except Exception as exc:  # the caller gets it
        return False, _as_store_error(exc)


def _as_store_error(exc: Exception) -> Exception:
    if isinstance(exc, sqlite3.Error):
        return StoreError(f"the database refused a write: {exc}")
    return exc


def _settle(batch: list[_Job], results: list[tuple[bool, Any]]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, bool, Any]]] = {}
    for job, (ok, value) in zip(batch, results, strict=True):
        if job.loop is None:
            assert isinstance(job.future, concurrent.futures.Future)
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)
        else:
            by_loop.setdefault(job.loop, []).append((job.future, ok, value))
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_async, items)
        except RuntimeError:  # the loop has closed; nobody is waiting any more
            pass


def _settle_async(items: list[tuple[Any, bool, Any]]) -> None:
    for future, ok, value in items:
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
