"""The PostgreSQL store: the same inbox, outbox and attempts, shared by several replicas.

Chosen by `database: postgresql://user:password@host/db`. Every replica of the bridge
can receive webhooks, process events and deliver adjustments against one database:

- the inbox is unique on (connector, event_id) across replicas (ON CONFLICT DO NOTHING);
- events and adjustments are claimed with `FOR UPDATE SKIP LOCKED` and a lease, so two
  replicas never work on the same row at once, and the rows of a replica that died
  mid-work go to the others once the lease has expired;
- recording an event's outcome and its adjustments is ONE transaction;
- a decision about a payment is recorded in one transaction that takes
  transaction-scoped advisory locks on the payment's id classes and re-checks what the
  decision read (`PaymentState.basis`): a lost connection can only abort it, never
  let two replicas record for one payment;
- `NOTIFY bridge_events` / `bridge_adjustments` wake the workers of every replica (and
  of `serve` after an operator's retry or replay from the CLI).

Async methods run on the store's own event loop thread over a psycopg async pool, so
any caller's loop (uvicorn's, `asyncio.run` in the CLI) can use them; the protocol's
synchronous reads use a small sync pool and are quick indexed queries. A commit is
durable before `accept` returns (`synchronous_commit` is never `off` for the writes).
The schema is in `postgres_schema`, the pools in `postgres_pools`, recording under
advisory locks in `postgres_recording`, NOTIFY/LISTEN in `postgres_feed`; the reads and
the SQL are the ones the SQLite store runs too (`reads`, `queries`, `pruning`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from bridge.errors import DiskFullError, StoreError
from bridge.events import Envelope
from bridge.storage import queries as statements
from bridge.storage.postgres_alerts import alert_transaction
from bridge.storage.postgres_feed import EVENTS_CHANNEL, ChangeListener
from bridge.storage.postgres_operating import PostgresOperatorWrites
from bridge.storage.postgres_pools import (
    CONNECT_TIMEOUT,
    POOL_MAX,
    POOL_TIMEOUT,
    READ_POOL_MAX,
    AsyncConn,
    ReadPool,
    WritePool,
    connect_options,
    durable_commits,
    in_transaction,
    read,
    reason,
)
from bridge.storage.postgres_recording import (
    PostgresReconcileWrites,
    record_delivery,
    record_processing,
)
from bridge.storage.postgres_schema import SCHEMA_VERSION, migrate
from bridge.storage.reads import POSTGRES, POSTGRES_READS, StoreReads
from bridge.storage.records import DeliveryOutcome, InboxRow, OutboxRow, ProcessingResult
from bridge.storage.rows import (
    INBOX_COLUMNS,
    OUTBOX_COLUMNS,
    outbox_row,
    qualified,
)
from bridge.storage.store import CLOCK_STEP_SLACK, RunSQL, redact_database

__all__ = ["SCHEMA_VERSION", "PostgresStore"]

T = TypeVar("T")
log = structlog.get_logger("bridge.storage.postgres")

READY_PROBE_BYTES = 1024  # the row /readyz inserts (and rolls back): a small webhook's size
# How long a real write that found the disk full keeps /readyz at 503 when no write has
# succeeded since: the probe's small row can still fit in a page where a webhook can not.
DISK_FULL_MEMORY = 10.0

# A webhook stored, and the replicas woken, in one statement.
ACCEPT = (
    f"WITH new AS ({POSTGRES.sql(statements.INSERT_EVENT)} RETURNING id)"
    f" SELECT pg_notify('{EVENTS_CHANNEL}', '') FROM new"
)


class PostgresStore(PostgresOperatorWrites, PostgresReconcileWrites, StoreReads):
    """The Store protocol on PostgreSQL, plus `claim_events` and `subscribe` for replicas
    and `linked_payment_keys` (PaymentLinks), like the SQLite store."""

    _dialect = POSTGRES
    _sql = POSTGRES_READS

    def __init__(self, url: str, *, pool_max: int = POOL_MAX) -> None:
        self.url = url
        self._shown = redact_database(url)
        self._closed = False
        self._disk_full_at: float | None = None  # monotonic time of the last DiskFullError
        self._disk_full_error = ""
        self._feed: ChangeListener | None = None
        self._active: set[asyncio.Task[Any]] = set()  # calls running on the store's loop
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="postgres-store", daemon=True
        )
        self._thread.start()
        self._pool: AsyncConnectionPool[AsyncConn] | None = None
        self._reads: ConnectionPool[psycopg.Connection[Any]] | None = None
        try:
            self._options = connect_options(url)
            self._feed = ChangeListener(self._loop, url, self._options, self._shown)
            with psycopg.connect(url, **self._options) as conn:
                migrate(conn)
            self._reads = ReadPool(
                url,
                min_size=1,
                max_size=READ_POOL_MAX,
                kwargs={"autocommit": True, **self._options},
                timeout=POOL_TIMEOUT,
                name="bridge-reads",
                open=False,
            )
            self._reads.open(wait=True, timeout=CONNECT_TIMEOUT)
            self._on_loop(self._open_pool(pool_max)).result(CONNECT_TIMEOUT + 5)
        except (psycopg.Error, concurrent.futures.TimeoutError) as exc:
            self.close()
            raise StoreError(f"cannot open the database {self._shown}: {reason(exc)}") from exc
        except BaseException:
            self.close()
            raise

    async def _open_pool(self, pool_max: int) -> None:
        self._pool = WritePool(
            self.url,
            min_size=min(2, pool_max),
            max_size=pool_max,
            kwargs={"autocommit": True, **self._options},
            configure=durable_commits,
            timeout=POOL_TIMEOUT,
            name="bridge-writes",
            open=False,
        )
        await self._pool.open(wait=True, timeout=CONNECT_TIMEOUT)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._feed is not None:
            self._feed.closed = True
        if self._loop.is_running():
            try:
                self._on_loop(self._shutdown()).result(15)
            except Exception as exc:  # closing anyway
                log.warning("store_close_failed", error=str(exc))
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(15)
        if not self._loop.is_running():
            self._loop.close()
        if self._reads is not None:
            self._reads.close()

    async def _shutdown(self) -> None:
        if self._feed is not None:
            await self._feed.stop()
        # Calls still running (or being cancelled by their callers) end before the pool.
        running = self._active - {asyncio.current_task()}
        if running:
            _, late = await asyncio.wait(running, timeout=5)
            for task in late:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        if self._pool is not None:
            await self._pool.close()
        await self._loop.shutdown_default_executor()

    # -- plumbing ------------------------------------------------------------------------

    def _on_loop(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(self._tracked(coro), self._loop)

    async def _tracked(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run on the store's loop, known to `_shutdown` until done."""
        task = asyncio.current_task()
        assert task is not None
        self._active.add(task)
        try:
            return await coro
        finally:
            self._active.discard(task)

    async def _write(self, fn: Callable[[AsyncConn], Awaitable[T]]) -> T:
        """Run `fn` in one transaction on the store's loop; any caller's loop may await it."""
        if self._closed:
            raise StoreError("the store is closed")
        return await asyncio.wrap_future(self._on_loop(self._transaction(fn)))

    async def _transaction(self, fn: Callable[[AsyncConn], Awaitable[T]]) -> T:
        """One transaction; one that found the disk full is remembered for /readyz until
        a webhook is stored again (a claim that updates nothing in place proves nothing)."""
        assert self._pool is not None
        try:
            result = await in_transaction(self._pool, fn, self._shown)
        except DiskFullError as exc:
            self._disk_full_at = time.monotonic()
            self._disk_full_error = str(exc)
            raise
        return result

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self._reads is None or self._closed:
            raise StoreError("the store is closed")
        return read(self._reads, sql, params)

    def _body(self, value: Any) -> bytes:
        return bytes(value)

    def _hint(self, sql: str, params: Sequence[Any] = ()) -> float | None:
        """When the workers should look again; None (poll) while the database is away,
        so a failover does not stop them."""
        try:
            rows = self._query(sql, params)
        except StoreError as exc:
            log.warning("store_read_failed", error=str(exc))
            return None
        return rows[0][0] if rows else None

    # -- the webhook path -----------------------------------------------------------

    async def accept(
        self, connector: str, envelope: Envelope, body: bytes, received_at: float
    ) -> bool:
        """Store a verified webhook durably. False if (connector, event id) was already stored."""
        _, params = statements.insert_event(
            connector, envelope, body, received_at, envelope.livemode
        )

        async def insert(conn: AsyncConn) -> bool:
            cursor = await conn.execute(ACCEPT, params)
            return len(await cursor.fetchall()) == 1

        inserted = await self._write(insert)
        self._disk_full_at = None
        return inserted

    async def claim_events(self, now: float, limit: int, lease: float) -> list[InboxRow]:
        """Due pending events, hidden from other replicas for `lease` seconds.

        The lease is the event's `next_attempt_at`, pushed `lease` seconds out: recording
        the outcome sets it for real; a replica that dies leaves it due again afterwards.
        """

        async def claim(conn: AsyncConn) -> list[InboxRow]:
            cursor = await conn.execute(
                "WITH due AS (SELECT id FROM inbox WHERE status = 'pending'"
                " AND (next_attempt_at <= %s OR updated_at > %s)"
                " ORDER BY next_attempt_at, id LIMIT %s FOR UPDATE SKIP LOCKED)"
                " UPDATE inbox SET next_attempt_at = %s FROM due WHERE inbox.id = due.id"
                f" RETURNING {qualified('inbox', INBOX_COLUMNS)}, inbox.body",
                (now, now + CLOCK_STEP_SLACK, limit, now + lease),
            )
            rows = await cursor.fetchall()
            return sorted((self._event(r) for r in rows), key=lambda r: r.id)

        return await self._write(claim)

    def next_event_due(self) -> float | None:
        return self._hint(self._sql.next_event_due)

    async def record_processing(self, result: ProcessingResult, now: float) -> int:
        """Record one event's outcome and its adjustments in one transaction.

        Returns how many adjustments were new (an existing transaction_id keeps its
        first body: one transaction id never carries two bodies).
        """

        async def record(conn: AsyncConn) -> int:
            return await record_processing(conn, result, now)

        return await self._write(record)

    # -- the delivery path ------------------------------------------------------------

    async def claim_adjustments(self, now: float, limit: int, lease: float) -> list[OutboxRow]:
        """Due pending adjustments no replica holds, leased to this one for `lease` seconds."""

        async def claim(conn: AsyncConn) -> list[OutboxRow]:
            cursor = await conn.execute(
                "WITH due AS (SELECT id FROM outbox WHERE status = 'pending'"
                " AND (next_attempt_at <= %s OR updated_at > %s)"
                " AND (lease_until IS NULL OR lease_until <= %s OR lease_until > %s)"
                " ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED)"
                " UPDATE outbox SET lease_until = %s FROM due WHERE outbox.id = due.id"
                f" RETURNING {qualified('outbox', OUTBOX_COLUMNS)}",
                (
                    now,
                    now + CLOCK_STEP_SLACK,
                    now,
                    now + lease + CLOCK_STEP_SLACK,
                    limit,
                    now + lease,
                ),
            )
            rows = await cursor.fetchall()
            return sorted((outbox_row(r) for r in rows), key=lambda r: (r.next_attempt_at, r.id))

        return await self._write(claim)

    def next_adjustment_due(self) -> float | None:
        # A row another replica holds is due when its lease runs out, not before. Two
        # index range scans: rows due later, and the (few) due now, which may be leased.
        now = time.time()
        return self._hint(
            "SELECT LEAST("
            "(SELECT MIN(next_attempt_at) FROM outbox"
            " WHERE status = 'pending' AND next_attempt_at > %s),"
            " (SELECT MIN(GREATEST(next_attempt_at, COALESCE(lease_until, 0))) FROM outbox"
            " WHERE status = 'pending' AND next_attempt_at <= %s))",
            (now, now),
        )

    async def release_adjustments(self, ids: Sequence[int]) -> None:
        """Give back the leases of claimed rows this replica will not deliver after all."""

        async def release(conn: AsyncConn) -> None:
            await conn.execute(
                "UPDATE outbox SET lease_until = NULL WHERE id = ANY(%s) AND status = 'pending'",
                (list(ids),),
            )

        await self._write(release)

    async def record_delivery(self, outcome: DeliveryOutcome) -> None:
        async def record(conn: AsyncConn) -> None:
            await record_delivery(conn, outcome)

        await self._write(record)

    # -- health -----------------------------------------------------------------------

    async def check_writable(self) -> None:
        """Whether a webhook could be stored now: the heartbeat, and an inbox insert of a
        webhook-sized row, rolled back. The heartbeat alone is an update in place, which
        a full disk still allows while every insert fails. A write that found the disk
        full in the last DISK_FULL_MEMORY seconds, with no webhook stored since, is not
        overruled by the probe: the probe's row can fit in a page where a webhook's
        does not."""
        since = self._disk_full_at
        if since is not None and time.monotonic() - since < DISK_FULL_MEMORY:
            raise DiskFullError(self._disk_full_error)

        async def beat(conn: AsyncConn) -> None:
            now = time.time()
            await conn.execute(
                "INSERT INTO heartbeat (id, at) VALUES (1, %s)"
                " ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                (now,),
            )
            async with conn.transaction(force_rollback=True):
                await conn.execute(
                    "INSERT INTO inbox (connector, event_id, event_type, received_at, body,"
                    " status, attempts, next_attempt_at, updated_at)"
                    " VALUES ('_readyz', %s, '_readyz', %s, %s, 'ignored', 0, %s, %s)",
                    (uuid.uuid4().hex, now, os.urandom(READY_PROBE_BYTES), now, now),
                )

        async def probe() -> None:
            assert self._pool is not None  # not through _transaction: a probe that
            await in_transaction(self._pool, beat, self._shown)  # fits clears nothing

        if self._closed:
            raise StoreError("the store is closed")
        try:
            await asyncio.wrap_future(self._on_loop(probe()))
        except StoreError as exc:
            log.warning("store_not_writable", database=self._shown, error=str(exc))
            raise

    async def alert_transaction(self, fn: Callable[[RunSQL], T]) -> T:
        """Run `fn` in one transaction under an advisory lock (AlertTables)."""
        if self._reads is None or self._closed:
            raise StoreError("the store is closed")
        return await alert_transaction(self._reads, fn)

    def alert_query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._query(POSTGRES.sql(sql), params)

    # -- waking the other replicas ----------------------------------------------------

    def subscribe(
        self, *, events: Callable[[], None], adjustments: Callable[[], None]
    ) -> Callable[[], None]:
        """Call `events` / `adjustments` on the caller's event loop whenever any process
        sharing this database added work of that kind. Returns the unsubscribe function."""
        assert self._feed is not None
        return self._feed.subscribe(events=events, adjustments=adjustments)
