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
The schema is versioned in `schema_version`; migrations run under an advisory lock, so
replicas starting together migrate once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import psycopg
import structlog
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolClosed, PoolTimeout
from psycopg_pool.base import AttemptWithBackoff

from bridge.errors import DecisionConflictError, StoreError
from bridge.events import Envelope
from bridge.storage import queries as statements
from bridge.storage.decision_backfill import KNOWN_PAYMENT_IDS, fill_decisions
from bridge.storage.queries import for_psycopg
from bridge.storage.records import (
    DeliveryOutcome,
    EventFilter,
    InboxRow,
    OutboxRow,
    PaymentState,
    ProcessingResult,
)
from bridge.storage.rows import INBOX_COLUMNS, OUTBOX_COLUMNS, decided_row
from bridge.storage.rows import inbox_row as _inbox_row
from bridge.storage.rows import outbox_row as _outbox_row
from bridge.storage.store import CLOCK_STEP_SLACK, redact_database

T = TypeVar("T")
log = structlog.get_logger("bridge.storage.postgres")

SCHEMA_VERSION = 4
MIGRATION_LOCK = 0x637265647974  # pg_advisory_xact_lock key: "credyt"
EVENTS_CHANNEL = "bridge_events"
ADJUSTMENTS_CHANNEL = "bridge_adjustments"
CONNECT_TIMEOUT = 10.0  # seconds to reach the server at start-up
POOL_TIMEOUT = 5.0  # seconds a request waits for a free connection before a StoreError
POOL_MAX = 10  # connections for writes and claims
READ_POOL_MAX = 4  # connections for the synchronous reads
PRUNE_BATCH = 2000  # rows deleted per transaction, so the workers are never held up long
LOCK_SPACE = 0x6372  # the first key of the payment advisory (transaction) locks
# Longest pause between two attempts of a pool to replace a lost connection. The pools'
# own backoff doubles without a cap (1, 2, 4, 8, 16 s...), so a 40 s outage kept every
# request failing for 16-21 s after the server was back; one attempt a second per pool
# is nothing for a server and puts the bridge back within about a second.
RECONNECT_DELAY_MAX = 1.0
READY_PROBE_BYTES = 1024  # the row /readyz inserts (and rolls back): a small webhook's size
RETRIES = 3  # a transaction that deadlocked or hit a serialization failure is re-run

AsyncConn = psycopg.AsyncConnection[Any]

_MIGRATION_V1 = (
    """CREATE TABLE inbox (
        id bigserial PRIMARY KEY,
        connector text NOT NULL,
        event_id text NOT NULL,
        event_type text NOT NULL,
        livemode boolean,
        received_at double precision NOT NULL,
        body bytea NOT NULL,
        status text NOT NULL,
        reason text,
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at double precision,
        updated_at double precision,
        payment_key text,
        customer_id text
    )""",
    "CREATE UNIQUE INDEX inbox_connector_event_id ON inbox (connector, event_id)",
    "CREATE INDEX inbox_due ON inbox (status, next_attempt_at)",
    "CREATE INDEX inbox_received ON inbox (received_at)",
    "CREATE INDEX inbox_status_id ON inbox (status, id)",
    "CREATE INDEX inbox_payment ON inbox (payment_key)",
    "CREATE INDEX inbox_customer ON inbox (customer_id)",
    """CREATE TABLE outbox (
        id bigserial PRIMARY KEY,
        transaction_id text NOT NULL,
        inbox_id bigint,
        connector text,
        rule text,
        kind text,
        payment_key text,
        reversal_key text,
        customer_id text NOT NULL,
        asset text,
        account text,
        amount text,
        payment_amount_minor bigint,
        body text NOT NULL,
        status text NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at double precision,
        lease_until double precision,
        queued_at double precision,
        received_at double precision,
        created_at double precision,
        updated_at double precision,
        delivered_at double precision,
        last_status integer,
        last_error text
    )""",
    "CREATE UNIQUE INDEX outbox_transaction_id ON outbox (transaction_id)",
    "CREATE INDEX outbox_due ON outbox (status, next_attempt_at)",
    "CREATE INDEX outbox_status_id ON outbox (status, id)",
    "CREATE INDEX outbox_payment ON outbox (payment_key)",
    "CREATE INDEX outbox_inbox ON outbox (inbox_id)",
    """CREATE TABLE attempts (
        id bigserial PRIMARY KEY,
        outbox_id bigint,
        started_at double precision,
        duration_ms double precision,
        status_code integer,
        outcome text,
        response text
    )""",
    "CREATE INDEX attempts_outbox ON attempts (outbox_id)",
    "CREATE TABLE heartbeat (id integer PRIMARY KEY, at double precision)",
)

_MIGRATION_V2 = (
    # Other PSP ids of a payment (PaymentIntent, Charge, Checkout Session) -> the payment
    # key its credit is recorded under, so a refund naming them finds that credit.
    """CREATE TABLE payment_links (
        id text NOT NULL,
        payment_key text NOT NULL,
        PRIMARY KEY (id, payment_key)
    )""",
    # `events show evt_...` looks an event up by its PSP id alone.
    "CREATE INDEX inbox_event_id ON inbox (event_id)",
)


# Which Credyt environment (live/test) and account an adjustment is for (NULL: any).
_MIGRATION_V3 = (
    "ALTER TABLE outbox ADD COLUMN credyt_environment text",
    "ALTER TABLE outbox ADD COLUMN credyt_account text",
)


def _fill_v4(conn: psycopg.Connection[Any]) -> None:
    """The classes of the ids already linked, and the adjustments already recorded."""
    for statement in fill_decisions(
        conn.execute(KNOWN_PAYMENT_IDS).fetchall(),
        conn.execute(f"SELECT {OUTBOX_COLUMNS} FROM outbox ORDER BY id").fetchall(),
    ):
        conn.execute(*for_psycopg(statement))


_MIGRATION_V4: tuple[str | Callable[[psycopg.Connection[Any]], None], ...] = (
    # Every PSP id of a payment in one class, and every adjustment ever decided: what a
    # decision reads, never pruned (see bridge.storage.queries). Row ids are identity
    # columns: never reused after prune.
    "CREATE TABLE payment_ids (id text PRIMARY KEY, class text NOT NULL)",
    "CREATE INDEX payment_ids_class ON payment_ids (class)",
    """CREATE TABLE decided (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        transaction_id text NOT NULL UNIQUE,
        connector text, rule text, kind text,
        payment_key text NOT NULL,
        reversal_key text, original text, family text,
        customer_id text, asset text, account text, amount text,
        payment_amount_minor bigint, reversed_minor bigint,
        decided_at double precision
    )""",
    "CREATE INDEX decided_payment ON decided (payment_key)",
    _fill_v4,
)

# Each migration brings the schema from version N-1 to N (the same steps as the SQLite
# store's); all run in one transaction. A step is SQL, or a function of the connection.
MIGRATIONS: dict[int, tuple[str | Callable[[psycopg.Connection[Any]], None], ...]] = {
    1: _MIGRATION_V1,
    2: _MIGRATION_V2,
    3: _MIGRATION_V3,
    4: _MIGRATION_V4,
}


def migrate(conn: psycopg.Connection[Any]) -> int:
    """Bring the schema to SCHEMA_VERSION in one transaction; returns the version found."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        version = int(row[0]) if row and row[0] is not None else 0
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the database has schema version {version}, newer than this bridge "
                f"({SCHEMA_VERSION}): upgrade credyt-bridge"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for step in MIGRATIONS[target]:
                if isinstance(step, str):
                    conn.execute(step)
                else:
                    step(conn)
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (target,))
            log.info("store_migrated", schema_version=target)
    return version


class PostgresStore:
    """The Store protocol on PostgreSQL, plus `claim_events` and `subscribe` for replicas
    and `linked_payment_keys` (PaymentLinks), like the SQLite store."""

    def __init__(self, url: str, *, pool_max: int = POOL_MAX) -> None:
        self.url = url
        self._shown = redact_database(url)
        self._closed = False
        self._listener: asyncio.Task[None] | None = None
        self._subscribers: list[
            tuple[asyncio.AbstractEventLoop, Callable[[], None], Callable[[], None]]
        ] = []
        self._subscribers_lock = threading.Lock()
        self._active: set[asyncio.Task[Any]] = set()  # calls running on the store's loop
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="postgres-store", daemon=True
        )
        self._thread.start()
        self._pool: AsyncConnectionPool[AsyncConn] | None = None
        self._reads: ConnectionPool[psycopg.Connection[Any]] | None = None
        try:
            self._options = _connect_options(url)
            with psycopg.connect(url, **self._options) as conn:
                migrate(conn)
            self._reads = _ReadPool(
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
            raise StoreError(f"cannot open the database {self._shown}: {_reason(exc)}") from exc
        except BaseException:
            self.close()
            raise

    async def _open_pool(self, pool_max: int) -> None:
        self._pool = _WritePool(
            self.url,
            min_size=min(2, pool_max),
            max_size=pool_max,
            kwargs={"autocommit": True, **self._options},
            configure=_durable_commits,
            timeout=POOL_TIMEOUT,
            name="bridge-writes",
            open=False,
        )
        await self._pool.open(wait=True, timeout=CONNECT_TIMEOUT)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
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
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
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
        assert self._pool is not None
        for attempt in range(1, RETRIES + 1):
            try:
                async with self._pool.connection() as conn, conn.transaction():
                    return await fn(conn)
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure) as exc:
                if attempt == RETRIES:
                    raise StoreError(f"the database refused a write: {_reason(exc)}") from exc
                log.warning("store_transaction_retried", attempt=attempt, error=_reason(exc))
            except pg_errors.DiskFull as exc:  # not a lost connection: no reconnect, no retry
                log.error("store_disk_full", database=self._shown, error=_reason(exc))
                raise StoreError(f"the database's disk is full: {_reason(exc)}") from exc
            except psycopg.OperationalError as exc:
                # A connection lost (server restart, failover, idle timeout): drop the
                # pool's dead connections and run the transaction again. Every write here
                # may run twice if its commit went through unseen: inserts do nothing the
                # second time, a claim's first rows wait for their lease, and a delivery
                # outcome at worst counts one attempt twice.
                if isinstance(exc, PoolTimeout | PoolClosed) or attempt == RETRIES:
                    raise StoreError(f"the database could not commit: {_reason(exc)}") from exc
                log.warning("store_reconnecting", attempt=attempt, error=_reason(exc))
                with contextlib.suppress(psycopg.Error):
                    await self._pool.check()
            except psycopg.Error as exc:
                raise StoreError(f"the database could not commit: {_reason(exc)}") from exc
        raise AssertionError("unreachable")

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self._reads is None or self._closed:
            raise StoreError("the store is closed")
        for attempt in range(1, RETRIES + 1):
            try:
                with self._reads.connection() as conn:
                    return conn.execute(sql, params).fetchall()
            except psycopg.OperationalError as exc:  # a lost connection: as in _transaction
                if isinstance(exc, PoolTimeout | PoolClosed) or attempt == RETRIES:
                    raise StoreError(f"the database could not be read: {_reason(exc)}") from exc
                log.warning("store_reconnecting", attempt=attempt, error=_reason(exc))
                with contextlib.suppress(psycopg.Error):
                    self._reads.check()
            except psycopg.Error as exc:
                raise StoreError(f"the database could not be read: {_reason(exc)}") from exc
        raise AssertionError("unreachable")

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

        async def insert(conn: AsyncConn) -> bool:
            cursor = await conn.execute(
                "WITH new AS ("
                " INSERT INTO inbox (connector, event_id, event_type, livemode, received_at,"
                " body, status, attempts, next_attempt_at, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, 'pending', 0, %s, %s)"
                " ON CONFLICT (connector, event_id) DO NOTHING RETURNING id)"
                f" SELECT pg_notify('{EVENTS_CHANNEL}', '') FROM new",
                (
                    connector,
                    envelope.event_id,
                    envelope.event_type,
                    envelope.livemode,
                    received_at,
                    body,
                    received_at,
                    received_at,
                ),
            )
            return len(await cursor.fetchall()) == 1

        return await self._write(insert)

    def due_events(self, now: float, limit: int) -> list[InboxRow]:
        rows = self._query(
            f"SELECT {INBOX_COLUMNS}, body FROM inbox WHERE status = 'pending'"
            " AND (next_attempt_at <= %s OR updated_at > %s)"
            " ORDER BY next_attempt_at, id LIMIT %s",
            (now, now + CLOCK_STEP_SLACK, limit),
        )
        return [_inbox_row(r, bytes(r[13])) for r in rows]

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
                f" RETURNING {_qualified('inbox', INBOX_COLUMNS)}, inbox.body",
                (now, now + CLOCK_STEP_SLACK, limit, now + lease),
            )
            rows = await cursor.fetchall()
            return sorted((_inbox_row(r, bytes(r[13])) for r in rows), key=lambda r: r.id)

        return await self._write(claim)

    def next_event_due(self) -> float | None:
        return self._hint("SELECT MIN(next_attempt_at) FROM inbox WHERE status = 'pending'")

    async def record_processing(self, result: ProcessingResult, now: float) -> int:
        """Record one event's outcome and its adjustments in one transaction.

        Returns how many adjustments were new (an existing transaction_id keeps its
        first body: one transaction id never carries two bodies).
        """

        async def record(conn: AsyncConn) -> int:
            return await _record_processing(conn, result, now)

        return await self._write(record)

    def adjustments_for_payment(self, payment_key: str) -> list[OutboxRow]:
        rows = self._query(
            f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE payment_key = %s ORDER BY id",
            (payment_key,),
        )
        return [_outbox_row(r) for r in rows]

    def payment_state(self, ids: Sequence[str]) -> PaymentState:
        """Every id of the payment `ids` belong to, and what was decided for it."""
        wanted = sorted(set(ids))
        if not wanted:
            return PaymentState((), ())
        members = self._query(*for_psycopg(statements.class_members(wanted)))
        ids_all = sorted({*wanted, *(r[0] for r in members)})
        rows = self._query(*for_psycopg(statements.decided_for(ids_all)))
        return PaymentState(tuple(ids_all), tuple(decided_row(r) for r in rows))

    def linked_payment_keys(self, ids: Sequence[str]) -> list[str]:
        """The payment keys any of `ids` (PaymentIntent, Charge...) is linked to."""
        if not ids:
            return []
        rows = self._query(
            "SELECT DISTINCT payment_key FROM payment_links WHERE id = ANY(%s)"
            " ORDER BY payment_key",
            (list(ids),),
        )
        return [r[0] for r in rows]

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
                f" RETURNING {_qualified('outbox', OUTBOX_COLUMNS)}",
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
            return sorted((_outbox_row(r) for r in rows), key=lambda r: (r.next_attempt_at, r.id))

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
            await _record_delivery(conn, outcome)

        await self._write(record)

    # -- health -----------------------------------------------------------------------

    async def check_writable(self) -> None:
        """Whether a webhook could be stored now: the heartbeat, and an inbox insert of a
        webhook-sized row, rolled back. The heartbeat alone is an update in place, which
        a full disk still allows while every insert fails."""

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

        try:
            await self._write(beat)
        except StoreError as exc:
            log.warning("store_not_writable", database=self._shown, error=str(exc))
            raise

    # -- operating ----------------------------------------------------------------------

    def list_events(self, flt: EventFilter) -> list[InboxRow]:
        clause, params = flt.where("%s")
        rows = self._query(
            f"SELECT {INBOX_COLUMNS} FROM inbox {clause} ORDER BY id DESC LIMIT %s",
            (*params, flt.limit),
        )
        return [_inbox_row(r) for r in rows]

    def get_event(self, event_ref: str) -> InboxRow | None:
        """By row id, or by the PSP event id."""
        if event_ref.isdigit():
            rows = self._query(
                f"SELECT {INBOX_COLUMNS}, body FROM inbox WHERE id = %s", (int(event_ref),)
            )
        else:
            rows = self._query(
                f"SELECT {INBOX_COLUMNS}, body FROM inbox WHERE event_id = %s ORDER BY id LIMIT 1",
                (event_ref,),
            )
        return _inbox_row(rows[0], bytes(rows[0][13])) if rows else None

    def adjustments_for_event(self, inbox_id: int) -> list[OutboxRow]:
        rows = self._query(
            f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE inbox_id = %s ORDER BY id", (inbox_id,)
        )
        return [_outbox_row(r) for r in rows]

    def list_adjustments(self, status: str | None = None, limit: int = 100) -> list[OutboxRow]:
        if status is None:
            rows = self._query(
                f"SELECT {OUTBOX_COLUMNS} FROM outbox ORDER BY id DESC LIMIT %s", (limit,)
            )
        else:
            rows = self._query(
                f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE status = %s ORDER BY id DESC LIMIT %s",
                (status, limit),
            )
        return [_outbox_row(r) for r in rows]

    def get_adjustment(self, ref: str) -> OutboxRow | None:
        if ref.isdigit():
            rows = self._query(f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = %s", (int(ref),))
        else:
            rows = self._query(
                f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE transaction_id = %s", (ref,)
            )
        return _outbox_row(rows[0]) if rows else None

    def attempts_for(self, outbox_id: int) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT started_at, duration_ms, status_code, outcome, response FROM attempts"
            " WHERE outbox_id = %s ORDER BY id",
            (outbox_id,),
        )
        keys = ("started_at", "duration_ms", "status_code", "outcome", "response")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def counts(self) -> dict[str, dict[str, int]]:
        events = {
            s: int(n) for s, n in self._query("SELECT status, COUNT(*) FROM inbox GROUP BY 1")
        }
        adjustments = {
            s: int(n) for s, n in self._query("SELECT status, COUNT(*) FROM outbox GROUP BY 1")
        }
        return {"events": events, "adjustments": adjustments}

    def oldest_pending_adjustment(self) -> float | None:
        rows = self._query("SELECT MIN(queued_at) FROM outbox WHERE status = 'pending'")
        return rows[0][0] if rows else None

    async def retry_adjustments(self, ids: Sequence[int] = (), *, dead: bool = False) -> int:
        """Put adjustments back to pending, due now, with a fresh attempt budget."""
        now = time.time()
        sql = (
            "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = %s,"
            " queued_at = %s, lease_until = NULL, updated_at = %s"
        )

        async def retry(conn: AsyncConn) -> int:
            if dead:
                cursor = await conn.execute(sql + " WHERE status = 'dead'", (now, now, now))
            else:
                cursor = await conn.execute(
                    sql + " WHERE id = ANY(%s) AND status != 'delivered'",
                    (now, now, now, [int(i) for i in ids]),
                )
            if cursor.rowcount:
                await _notify(conn, ADJUSTMENTS_CHANNEL)
            return max(cursor.rowcount, 0)

        return await self._write(retry)

    async def reset_events(self, ids: Sequence[int]) -> int:
        """Mark events pending, due now, so the processor runs them again."""
        now = time.time()

        async def reset(conn: AsyncConn) -> int:
            cursor = await conn.execute(
                "UPDATE inbox SET status = 'pending', next_attempt_at = %s, updated_at = %s"
                " WHERE id = ANY(%s)",
                (now, now, [int(i) for i in ids]),
            )
            if cursor.rowcount:
                await _notify(conn, EVENTS_CHANNEL)
            return max(cursor.rowcount, 0)

        return await self._write(reset)

    async def prune_finished(self, before: float) -> dict[str, int]:
        """Delete finished rows last touched before `before`, in small transactions.

        The same rules as the SQLite store: delivered adjustments only by whole payments
        (while any adjustment of the payment is younger or not delivered, all stay), their
        attempts, then `processed`/`ignored` events received before `before` that no
        adjustment refers to. `failed` and `pending` events and `dead` adjustments stay.
        """
        counts = {"adjustments": 0, "attempts": 0, "events": 0}

        async def adjustments(conn: AsyncConn) -> tuple[int, int]:
            cursor = await conn.execute(
                "SELECT o.id FROM outbox o WHERE o.status = 'delivered' AND o.delivered_at < %s"
                " AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.payment_key = o.payment_key"
                " AND (p.status != 'delivered' OR p.delivered_at >= %s)) LIMIT %s",
                (before, before, PRUNE_BATCH),
            )
            ids = [int(r[0]) for r in await cursor.fetchall()]
            if not ids:
                return 0, 0
            gone = await conn.execute("DELETE FROM attempts WHERE outbox_id = ANY(%s)", (ids,))
            outbox = await conn.execute("DELETE FROM outbox WHERE id = ANY(%s)", (ids,))
            return max(outbox.rowcount, 0), max(gone.rowcount, 0)

        async def events(conn: AsyncConn) -> int:
            cursor = await conn.execute(
                "DELETE FROM inbox WHERE id IN (SELECT i.id FROM inbox i"
                " WHERE i.status IN ('processed', 'ignored') AND i.received_at < %s"
                " AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.inbox_id = i.id) LIMIT %s)",
                (before, PRUNE_BATCH),
            )
            return max(cursor.rowcount, 0)

        while True:
            outbox, attempts = await self._write(adjustments)
            counts["adjustments"] += outbox
            counts["attempts"] += attempts
            if outbox < PRUNE_BATCH:
                break
        while True:
            inbox = await self._write(events)
            counts["events"] += inbox
            if inbox < PRUNE_BATCH:
                break
        return counts

    # -- waking the other replicas ----------------------------------------------------

    def subscribe(
        self, *, events: Callable[[], None], adjustments: Callable[[], None]
    ) -> Callable[[], None]:
        """Call `events` / `adjustments` on the caller's event loop whenever any process
        sharing this database added work of that kind. Returns the unsubscribe function."""
        entry = (asyncio.get_running_loop(), events, adjustments)
        with self._subscribers_lock:
            self._subscribers.append(entry)
        self._loop.call_soon_threadsafe(self._ensure_listener)

        def unsubscribe() -> None:
            with self._subscribers_lock:
                if entry in self._subscribers:
                    self._subscribers.remove(entry)

        return unsubscribe

    def _ensure_listener(self) -> None:
        if self._listener is None and not self._closed:
            self._listener = self._loop.create_task(self._listen(), name="postgres-listen")

    async def _listen(self) -> None:
        backoff = 0.2
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, **self._options
                )
                async with conn:
                    await conn.execute(f"LISTEN {EVENTS_CHANNEL}")
                    await conn.execute(f"LISTEN {ADJUSTMENTS_CHANNEL}")
                    log.debug("store_listening", database=self._shown)
                    backoff = 0.2
                    # anything added while this connection was not listening
                    self._dispatch(EVENTS_CHANNEL)
                    self._dispatch(ADJUSTMENTS_CHANNEL)
                    async for notice in conn.notifies():
                        self._dispatch(notice.channel)
            except psycopg.Error as exc:
                log.warning("store_listen_reconnecting", error=_reason(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _dispatch(self, channel: str) -> None:
        with self._subscribers_lock:
            subscribers = list(self._subscribers)
        for loop, events, adjustments in subscribers:
            callback = events if channel == EVENTS_CHANNEL else adjustments
            try:
                loop.call_soon_threadsafe(callback)
            except RuntimeError:  # that loop has closed
                pass


async def _state_in(conn: AsyncConn, ids: Sequence[str]) -> PaymentState:
    cursor = await conn.execute(*for_psycopg(statements.class_members(ids)))
    members = sorted({*ids, *(r[0] for r in await cursor.fetchall())})
    cursor = await conn.execute(*for_psycopg(statements.decided_for(members)))
    rows = await cursor.fetchall()
    return PaymentState(tuple(members), tuple(decided_row(r) for r in rows))


async def _lock_classes(conn: AsyncConn, ids: Sequence[str]) -> None:
    """Transaction-scoped advisory locks on the ids and on every id of their classes,
    until the set is stable: two transactions touching one payment (whichever of its
    ids they name) run one after the other. Released by commit or abort: a lost
    connection can only abort the decision, never leave another replica free to make
    it again. Deadlocks are detected by the server and the transaction re-run."""
    locked: set[str] = set()
    wanted = set(ids)
    while not wanted <= locked:
        new = sorted(wanted - locked)
        await conn.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(k)) FROM unnest(%s::text[]) AS k",
            (LOCK_SPACE, new),
        )
        locked.update(new)
        cursor = await conn.execute(*for_psycopg(statements.class_members(sorted(locked))))
        classes = await conn.execute(*for_psycopg(statements.classes_of(sorted(locked))))
        wanted = (
            locked
            | {r[0] for r in await cursor.fetchall()}
            | {r[0] for r in await classes.fetchall()}
        )


async def _join_ids(conn: AsyncConn, ids: Sequence[str]) -> None:
    cursor = await conn.execute(*for_psycopg(statements.classes_of(ids)))
    classes = [r[0] for r in await cursor.fetchall()]
    target = min(classes) if classes else min(ids)
    others = [c for c in classes if c != target]
    if others:
        await conn.execute(*for_psycopg(statements.merge_classes(target, others)))
    for statement in statements.add_ids(ids, target):
        await conn.execute(*for_psycopg(statement))


async def _record_processing(conn: AsyncConn, result: ProcessingResult, now: float) -> int:
    ids = statements.payment_ids_of(
        result.payment_key, [*result.payment_ids, *(a.payment_key for a in result.adjustments)]
    )
    if ids:
        await _lock_classes(conn, ids)
    if result.basis is not None:
        if (await _state_in(conn, ids)).basis != result.basis:
            raise DecisionConflictError(
                f"payment {result.payment_key} was decided elsewhere meanwhile"
            )
    new = 0
    for adj in result.adjustments:
        cursor = await conn.execute(*for_psycopg(statements.insert_adjustment(adj, result, now)))
        new += max(cursor.rowcount, 0)
        await conn.execute(*for_psycopg(statements.insert_decided(adj, now)))
    if ids:
        await _join_ids(conn, ids)
    await conn.execute(*for_psycopg(statements.record_event_outcome(result, now)))
    linked = 0
    for link in statements.insert_links(result):
        cursor = await conn.execute(*for_psycopg(link))
        linked += max(cursor.rowcount, 0)
    if (new or linked) and result.payment_key:
        # Reversals (and customer-less payments) held for this payment can go now,
        # whichever of its ids they name.
        keys = list((await _state_in(conn, ids)).ids)
        cursor = await conn.execute(
            "UPDATE inbox SET next_attempt_at = %s WHERE status = 'pending'"
            " AND payment_key = ANY(%s) AND id != %s AND next_attempt_at > %s",
            (now, keys, result.inbox_id, now),
        )
        if cursor.rowcount:
            await _notify(conn, EVENTS_CHANNEL)
    if new:
        await _notify(conn, ADJUSTMENTS_CHANNEL)
    return new


async def _record_delivery(conn: AsyncConn, outcome: DeliveryOutcome) -> None:
    await conn.execute(*for_psycopg(statements.record_delivery(outcome, time.time())))
    await conn.execute(*for_psycopg(statements.insert_attempt(outcome)))


async def _durable_commits(conn: AsyncConn) -> None:
    """A 200 means the webhook is on disk: a server or role set to
    `synchronous_commit = off` is overridden for the bridge's writes ('local' and the
    replica-waiting levels are durable already and stay as they are)."""
    cursor = await conn.execute("SELECT current_setting('synchronous_commit')")
    row = await cursor.fetchone()
    if row is not None and row[0] == "off":
        await conn.execute("SET synchronous_commit = on")


async def _notify(conn: AsyncConn, channel: str) -> None:
    """Delivered to every listening replica when the transaction commits."""
    await conn.execute("SELECT pg_notify(%s, '')", (channel,))


class _QuickReconnect(AttemptWithBackoff):
    """psycopg_pool's reconnect backoff, never longer than RECONNECT_DELAY_MAX."""

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, RECONNECT_DELAY_MAX)


class _WritePool(AsyncConnectionPool[AsyncConn]):
    async def _add_connection(
        self, attempt: AttemptWithBackoff | None, growing: bool = False
    ) -> None:
        attempt = attempt or _QuickReconnect(timeout=self.reconnect_timeout)
        await super()._add_connection(attempt, growing)


class _ReadPool(ConnectionPool[psycopg.Connection[Any]]):
    def _add_connection(self, attempt: AttemptWithBackoff | None, growing: bool = False) -> None:
        attempt = attempt or _QuickReconnect(timeout=self.reconnect_timeout)
        super()._add_connection(attempt, growing)


def _connect_options(url: str) -> dict[str, Any]:
    """Timeouts for every connection, unless the URL sets its own: give up connecting
    after CONNECT_TIMEOUT, and notice a server that vanished (a failover) within about a
    minute even on an idle connection such as the listener's."""
    given = conninfo_to_dict(url)
    defaults = {
        "connect_timeout": int(CONNECT_TIMEOUT),
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }
    return {key: value for key, value in defaults.items() if key not in given}


def _qualified(table: str, columns: str) -> str:
    return ", ".join(f"{table}.{name.strip()}" for name in columns.split(","))


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
