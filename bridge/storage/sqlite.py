"""The SQLite store: inbox, outbox and delivery attempts in one file.

WAL mode with `synchronous=FULL`: a webhook answered 2xx is on disk. All writes go
through one `Writer` (group commit); reads use a connection per thread, which WAL
lets run beside the writer. The schema and its migrations are in
`bridge.storage.sqlite_schema`, the SQL both stores run in `queries`, `reads` and
`pruning`; every claim and list query has an index.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from bridge.errors import DecisionConflictError, StoreError
from bridge.events import Envelope
from bridge.storage import pruning
from bridge.storage import queries as statements
from bridge.storage.reads import SQLITE, SQLITE_READS, StoreReads, payment_state
from bridge.storage.records import DeliveryOutcome, OutboxRow, PaymentState, ProcessingResult
from bridge.storage.rows import OUTBOX_COLUMNS, outbox_row
from bridge.storage.sqlite_schema import SCHEMA_VERSION, connect, migrate
from bridge.storage.sqlite_writer import Writer
from bridge.storage.store import CLOCK_STEP_SLACK, RunSQL

T = TypeVar("T")

__all__ = ["SCHEMA_VERSION", "SQLiteStore", "file_identity"]


def file_identity(path: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the file at `path`, None if there is none: one stat call."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


IMAGE_UID = 10001  # the Dockerfile's `bridge` user, which a bind-mounted /data must suit


def _writable_file(path: str) -> bool:
    return not os.path.exists(path) or os.access(path, os.W_OK)


class SQLiteStore(StoreReads):
    """The embedded store. Safe to open from several processes (serve and the CLI)."""

    _dialect = SQLITE
    _sql = SQLITE_READS

    def __init__(self, path: str) -> None:
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise StoreError(f"the database folder {directory} does not exist")
        if not os.access(directory, os.W_OK) or not _writable_file(path):
            uid = os.getuid()
            image = "" if uid == IMAGE_UID else f"; the Docker image runs as uid {IMAGE_UID}"
            raise StoreError(
                f"the database {os.path.abspath(path)} is not writable by uid {uid}, the user "
                f"the bridge runs as: give it the folder (sudo chown -R {uid} {directory}){image}"
            )
        try:
            setup = connect(path)
            try:
                migrate(setup)
            finally:
                setup.close()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the database {path}: {exc}") from exc
        self._local = threading.local()
        self._identity: tuple[int, int] | None = None
        self.writer = Writer(self._connect_writer, guard=self._check_same_file)
        self.writer.start()

    def _connect_writer(self) -> sqlite3.Connection:
        conn = connect(self.path)
        self._identity = file_identity(self.path)
        return conn

    def _check_same_file(self) -> None:
        """StoreError if the database file was deleted or replaced since it was opened:
        what would be committed now would not be in the file the next start opens."""
        if self._identity is not None and file_identity(self.path) != self._identity:
            raise StoreError(
                f"the database file {self.path} was deleted or replaced while open; "
                "restart the bridge (writes are refused until then)"
            )

    def close(self) -> None:
        self.writer.close()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @property
    def _read(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, readonly=True)
            self._local.conn = conn
        return conn

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        try:
            return self._read.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"the database could not be read: {exc}") from exc

    # -- the webhook path -----------------------------------------------------------

    async def accept(
        self, connector: str, envelope: Envelope, body: bytes, received_at: float
    ) -> bool:
        """Store a verified webhook durably. False if (connector, event id) was already stored."""
        livemode = None if envelope.livemode is None else int(envelope.livemode)
        statement = statements.insert_event(connector, envelope, body, received_at, livemode)

        def insert(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(*statement)
            return cursor.rowcount == 1

        return await self.writer.run(insert)

    def next_event_due(self) -> float | None:
        rows = self._query(self._sql.next_event_due)
        return rows[0][0] if rows else None

    async def record_processing(self, result: ProcessingResult, now: float) -> int:
        """Record one event's outcome and its adjustments in one transaction.

        Returns how many adjustments were new (an existing transaction_id keeps its
        first body: one transaction id never carries two bodies).
        """
        # Not durable on its own: nothing acts on it before the deliverer's (durable)
        # claim syncs it; lost in a power cut, the event is still pending, decided again.
        return await self.writer.run(
            lambda conn: _record_processing(conn, result, now), durable=False
        )

    # -- the delivery path ------------------------------------------------------------

    async def claim_adjustments(self, now: float, limit: int, lease: float) -> list[OutboxRow]:
        def claim(conn: sqlite3.Connection) -> list[OutboxRow]:
            rows = conn.execute(
                f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE status = 'pending'"
                " AND (next_attempt_at <= ? OR updated_at > ?)"
                " AND (lease_until IS NULL OR lease_until <= ? OR lease_until > ?)"
                " ORDER BY next_attempt_at LIMIT ?",
                (now, now + CLOCK_STEP_SLACK, now, now + lease + CLOCK_STEP_SLACK, limit),
            ).fetchall()
            conn.executemany(
                "UPDATE outbox SET lease_until = ? WHERE id = ?",
                [(now + lease, r[0]) for r in rows],
            )
            return [outbox_row(r) for r in rows]

        return await self.writer.run(claim)

    def next_adjustment_due(self) -> float | None:
        rows = self._query(self._sql.next_adjustment_due)
        return rows[0][0] if rows else None

    async def record_delivery(self, outcome: DeliveryOutcome) -> None:
        # Not durable on its own: lost in a power cut, the row is sent again with the same
        # transaction id, and Credyt's 409 for it is confirmed as delivered.
        await self.writer.run(lambda conn: _record_delivery(conn, outcome), durable=False)

    async def release_adjustments(self, ids: Sequence[int]) -> None:
        """Give back the leases of claimed rows this process will not deliver after all."""

        def release(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE outbox SET lease_until = NULL WHERE id = ? AND status = 'pending'",
                [(i,) for i in ids],
            )

        await self.writer.run(release)

    # -- health -----------------------------------------------------------------------

    async def check_writable(self) -> None:
        def beat(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR REPLACE INTO heartbeat (id, at) VALUES (1, ?)", (time.time(),))

        await self.writer.run(beat)

    # -- operating ----------------------------------------------------------------------

    async def retry_adjustments(self, ids: Sequence[int] = (), *, dead: bool = False) -> int:
        """Put adjustments back to pending, due now, with a fresh attempt budget."""
        now = time.time()

        def retry(conn: sqlite3.Connection) -> int:
            sql = statements.REQUEUE_ADJUSTMENTS
            if dead:
                return conn.execute(sql + " WHERE status = 'dead'", (now, now, now)).rowcount
            return sum(
                conn.execute(
                    sql + " WHERE id = ? AND status IN ('pending', 'dead')", (now, now, now, i)
                ).rowcount
                for i in ids
            )

        return await self.writer.run(retry)

    async def decide_held(self, outbox_id: int, approve: bool, note: str) -> bool:
        """Approve (queue for delivery) or reject a held adjustment; False: not held."""
        now = time.time()

        def decide(conn: sqlite3.Connection) -> bool:
            update, record = statements.decide_held(outbox_id, approve, note, now)
            if conn.execute(*update).rowcount == 0:
                return False
            conn.execute(*record)
            return True

        return await self.writer.run(decide)

    async def resend_adjustments(self, ids: Sequence[int]) -> int:
        """Queue delivered adjustments again, due now (Credyt lost them)."""
        now = time.time()

        def resend(conn: sqlite3.Connection) -> int:
            sql = statements.RESEND_DELIVERED
            return sum(conn.execute(sql, (now, now, now, i)).rowcount for i in ids)

        return await self.writer.run(resend)

    async def record_reconcile(self, connector: str, finished_at: float, report: str) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(statements.INSERT_RECONCILE_RUN, (connector, finished_at, report))

        await self.writer.run(insert)

    async def reset_events(self, ids: Sequence[int]) -> int:
        """Mark events pending, due now, so the processor runs them again."""
        now = time.time()

        def reset(conn: sqlite3.Connection) -> int:
            return sum(
                conn.execute(
                    "UPDATE inbox SET status = 'pending', next_attempt_at = ?, updated_at = ?"
                    " WHERE id = ?",
                    (now, now, i),
                ).rowcount
                for i in ids
            )

        return await self.writer.run(reset)

    async def alert_transaction(self, fn: Callable[[RunSQL], T]) -> T:
        """Run `fn` in one savepoint of the writer's transaction (AlertTables)."""

        def run(conn: sqlite3.Connection) -> T:
            def execute(sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
                return conn.execute(sql, tuple(params)).fetchall()

            return fn(execute)

        return await self.writer.run(run)

    def alert_query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._query(sql, params)

    async def prune_finished(
        self, before: float, progress: pruning.Progress | None = None
    ) -> dict[str, int]:
        """Delete finished rows last touched before `before`, in small transactions
        (what goes and what stays: `bridge.storage.pruning`)."""
        return await pruning.prune_in_batches(
            lambda: self.writer.run(
                lambda conn: _prune_adjustments(conn, before, pruning.PRUNE_BATCH)
            ),
            lambda: self.writer.run(
                lambda conn: (
                    conn.execute(*pruning.prune_events(before, pruning.PRUNE_BATCH)).rowcount
                )
            ),
            progress,
        )


def _prune_adjustments(conn: sqlite3.Connection, before: float, limit: int) -> tuple[int, int]:
    ids = [r[0] for r in conn.execute(*pruning.prunable_adjustments(before, limit))]
    attempts = outbox = 0
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        attempts += conn.execute(
            f"DELETE FROM attempts WHERE outbox_id IN ({marks})", chunk
        ).rowcount
        outbox += conn.execute(f"DELETE FROM outbox WHERE id IN ({marks})", chunk).rowcount
    return outbox, attempts


def _payment_state(conn: sqlite3.Connection, ids: Sequence[str]) -> PaymentState:
    return payment_state(lambda sql, params: conn.execute(sql, params).fetchall(), SQLITE, ids)


def _join_ids(conn: sqlite3.Connection, ids: Sequence[str]) -> None:
    """Put `ids` in one class, merging the classes they were in."""
    if not ids:
        return
    classes = [r[0] for r in conn.execute(*statements.classes_of(ids))]
    target = min(classes) if classes else min(ids)
    others = [c for c in classes if c != target]
    if others:
        conn.execute(*statements.merge_classes(target, others))
    for statement in statements.add_ids(ids, target):
        conn.execute(*statement)


def _record_processing(conn: sqlite3.Connection, result: ProcessingResult, now: float) -> int:
    # Runs inside the writer's BEGIN IMMEDIATE: SQLite's write lock serialises it with
    # every other process's writes, so the decision's basis is re-read here, under it.
    ids = statements.payment_ids_of(
        result.payment_key, [*result.payment_ids, *(a.payment_key for a in result.adjustments)]
    )
    state = _payment_state(conn, ids) if result.basis is not None else None
    if state is not None and state.basis != result.basis:
        raise DecisionConflictError(f"payment {result.payment_key} was decided elsewhere meanwhile")
    new = 0
    for adj in result.adjustments:
        if adj.deliver:  # one recorded only for its units goes to `decided` alone
            new += conn.execute(*statements.insert_adjustment(adj, result, now)).rowcount
        conn.execute(*statements.insert_decided(adj, now))
    _join_ids(conn, ids)
    conn.execute(*statements.record_event_outcome(result, now))
    linked = sum(conn.execute(*link).rowcount for link in statements.insert_links(result))
    if (new or linked) and result.payment_key:
        # Reversals (and customer-less payments) held for this payment can go now,
        # whichever of its ids they name.
        # `_join_ids` merged exactly the classes `state` read: its ids are the class now.
        keys = (state or _payment_state(conn, ids)).ids
        marks = ", ".join("?" * len(keys))
        conn.execute(
            # `+status`: look the rows up by payment_key; the planner's choice of the
            # status index scanned every pending event, thousands during a burst.
            "UPDATE inbox SET next_attempt_at = ? WHERE +status = 'pending'"
            f" AND payment_key IN ({marks}) AND id != ?",
            (now, *keys, result.inbox_id),
        )
    return new


def _record_delivery(conn: sqlite3.Connection, outcome: DeliveryOutcome) -> None:
    conn.execute(*statements.record_delivery(outcome, time.time()))
    conn.execute(*statements.insert_attempt(outcome))
