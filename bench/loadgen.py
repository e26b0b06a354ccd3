"""Python load generators: fixed-rate (open loop) and full speed (closed loop).

wrk can only send as fast as it can, so the fixed-rate figures (p99 at 500/s and
2,000/s) come from `open_loop`: request k is due at start + k/rate whatever happened to
the earlier ones, and its latency is measured from that due time to the last byte of
the answer, so a stalled server shows up as latency instead of as fewer requests
(no coordinated omission). Keep-alive connections come from a pool; a request that
finds none free opens one (up to a cap) or waits, and the wait counts.

`closed_loop` is the full-speed fallback when wrk is not installed: C connections,
each sending its next request as soon as the answer arrives. It measures the Python
client as much as the server, so prefer wrk for the ceiling.

Both speak just enough HTTP/1.1 (requests prebuilt by presign.py, answers with a
Content-Length) on uvloop, in this process; the server is always another process.
Both are bounded by a request count and by a duration.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvloop

# uvloop's loop.time() ticks in whole milliseconds: time everything with perf_counter.
now = time.perf_counter
# uvicorn closes a keep-alive connection after 5 s idle; never reuse one idle this long.
MAX_IDLE_S = 3.0
# A request may leave this much before its due time (the event loop's timers are coarse).
EARLY_S = 0.0005
HTTP_ERRORS = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)


@dataclass(frozen=True)
class LoadResult:
    """What one load run measured. Latencies in milliseconds."""

    tool: str
    ok: int  # 2xx answers
    errors: int  # other answers, socket errors, timeouts
    duration_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    offered_rate: float | None = None  # open loop: requests/s scheduled
    exhausted: bool = False  # ran out of pre-signed requests before the duration
    start_wall: float = 0.0  # time.time() when request 0 was due
    sent: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)  # "HTTP 503", "timeout", ...

    @property
    def rps(self) -> float:
        return self.ok / self.duration_s if self.duration_s > 0 else 0.0


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of unsorted `values` (0.0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(pct / 100 * len(ordered))))
    return ordered[rank - 1]


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    ok: int = 0
    errors: int = 0
    kinds: collections.Counter[str] = field(default_factory=collections.Counter)

    def record(self, status: int, seconds: float) -> None:
        self.latencies_ms.append(seconds * 1000)
        if 200 <= status < 300:
            self.ok += 1
        else:
            self.fail(f"HTTP {status}")

    def fail(self, kind: str, count: int = 1) -> None:
        if count:
            self.errors += count
            self.kinds[kind] += count

    def result(self, tool: str, duration_s: float, **extra: Any) -> LoadResult:
        lat = self.latencies_ms
        return LoadResult(
            tool=tool,
            ok=self.ok,
            errors=self.errors,
            duration_s=duration_s,
            p50_ms=percentile(lat, 50),
            p99_ms=percentile(lat, 99),
            max_ms=max(lat, default=0.0),
            error_kinds=dict(self.kinds),
            **extra,
        )


def _content_length(head: bytes) -> int:
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    raise ValueError("answer without Content-Length")


class Connection:
    """One keep-alive HTTP/1.1 connection that sends prebuilt requests."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.last_used = now()

    def stale(self) -> bool:
        """Closed by the server, or idle long enough that it may be about to close it."""
        return self.reader.at_eof() or now() - self.last_used > MAX_IDLE_S

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def exchange(self, request: bytes) -> int:
        """Send `request`, read the whole answer, return its status code."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = _content_length(head)
        if length:
            await self.reader.readexactly(length)
        self.last_used = now()
        return status

    def close(self) -> None:
        self.writer.close()


class Pool:
    """Up to `limit` connections; `acquire` waits when all are busy."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port, self.limit = host, port, limit
        self.idle: list[Connection] = []
        self.opened = 0
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def fill(self, count: int) -> None:
        conns = [await self.acquire() for _ in range(min(count, self.limit))]
        for conn in conns:
            self.release(conn)

    async def acquire(self) -> Connection:
        while True:
            if self.idle:
                conn = self.idle.pop()
                if not conn.stale():
                    return conn
                self.discard(conn)
                continue
            if self.opened < self.limit:
                self.opened += 1
                try:
                    return await Connection.open(self.host, self.port)
                except BaseException:
                    self.opened -= 1
                    self._wake()
                    raise
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            await waiter

    def release(self, conn: Connection) -> None:
        self.idle.append(conn)
        self._wake()

    def discard(self, conn: Connection) -> None:
        conn.close()
        self.opened -= 1
        self._wake()

    def _wake(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


async def _send_one(pool: Pool, request: bytes, due: float, tally: Tally) -> None:
    began = min(due, now())  # late: from the due time (coordinated omission); early: from now
    try:
        conn = await pool.acquire()
    except HTTP_ERRORS as exc:
        tally.fail(f"connect: {type(exc).__name__}")
        return
    try:
        status = await conn.exchange(request)
    except HTTP_ERRORS as exc:
        pool.discard(conn)
        tally.fail(type(exc).__name__)
        return
    tally.record(status, now() - began)
    pool.release(conn)


async def open_loop(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    rate: float,
    duration: float,
    max_connections: int = 256,
    grace: float = 10.0,
) -> LoadResult:
    """Send min(len(requests), rate*duration) requests at `rate`/s; latency from due time."""
    total = min(len(requests), max(1, round(rate * duration)))
    pool = Pool(host, port, max_connections)
    await pool.fill(min(max_connections, 32))
    tally, tasks = Tally(), set()
    start = now() + 0.02
    start_wall = time.time() + (start - now())
    stop_scheduling = start + duration + grace
    sent = 0
    for k in range(total):
        due = start + k / rate
        while due - now() > EARLY_S:
            await asyncio.sleep(due - now())
        if now() > stop_scheduling:
            break
        tasks.add(asyncio.create_task(_send_one(pool, requests[k], due, tally)))
        sent += 1
    _, pending = await asyncio.wait(tasks, timeout=grace) if tasks else (set(), set())
    for task in pending:
        task.cancel()
    tally.fail("no answer in time", len(pending))
    tally.fail("not sent in time", total - sent)
    pool.close()
    return tally.result(
        "python open loop",
        duration_s=total / rate,
        offered_rate=rate,
        start_wall=start_wall,
        sent=sent,
    )


async def _closed_worker(
    conn: Connection, requests: Sequence[bytes], cursor: list[int], deadline: float, tally: Tally
) -> None:
    while cursor[0] < len(requests) and now() < deadline:
        request = requests[cursor[0]]
        cursor[0] += 1
        began = now()
        try:
            status = await conn.exchange(request)
        except HTTP_ERRORS as exc:
            tally.fail(type(exc).__name__)
            conn.close()
            return
        tally.record(status, now() - began)
    conn.close()


async def closed_loop(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    connections: int,
    duration: float,
) -> LoadResult:
    """Each of `connections` sends its next request when its answer arrives."""
    conns = [await Connection.open(host, port) for _ in range(connections)]
    tally, cursor = Tally(), [0]
    start = now()
    deadline = start + duration
    start_wall = time.time()
    workers = [_closed_worker(c, requests, cursor, deadline, tally) for c in conns]
    await asyncio.wait_for(asyncio.gather(*workers), timeout=duration + 30)
    elapsed = now() - start
    return tally.result(
        "python closed loop",
        duration_s=elapsed,
        exhausted=cursor[0] >= len(requests) and elapsed < duration,
        start_wall=start_wall,
        sent=cursor[0],
    )


def run(coro: Coroutine[Any, Any, LoadResult]) -> LoadResult:
    """Run a generator coroutine on a fresh uvloop event loop."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)
