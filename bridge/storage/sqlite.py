"""The SQLite store: inbox, outbox and delivery attempts in one file.

WAL mode with `synchronous=FULL`: a webhook answered 2xx is on disk. All writes go
through one `Writer` (group commit); reads use a connection per thread, which WAL
lets run beside the writer. The schema is created and migrated with sqlite-utils and
versioned with `PRAGMA user_version`; every claim and list query has an index.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any

import sqlite_utils

from bridge.errors import DecisionConflictError, StoreError
from bridge.events import Envelope
from bridge.storage import queries as statements
from bridge.storage.records import (
    AdjustmentStatus,
    DeliveryOutcome,
    EventFilter,
    EventStatus,
    InboxRow,
    OutboxRow,
    PaymentState,
    ProcessingResult,
)
from bridge.storage.sqlite_writer import Writer
from bridge.storage.store import CLOCK_STEP_SLACK

SCHEMA_VERSION = 4
PRUNE_BATCH = 2000  # rows deleted per transaction, so serve's writes are never held up long

INBOX_COLUMNS = (
    "id, connector, event_id, event_type, livemode, received_at, status, reason, attempts, "
    "next_attempt_at, updated_at, payment_key, customer_id"
)
OUTBOX_COLUMNS = (
    "id, transaction_id, inbox_id, connector, rule, kind, payment_key, reversal_key, "
    "customer_id, asset, account, amount, payment_amount_minor, body, status, attempts, "
    "next_attempt_at, queued_at, received_at, created_at, updated_at, delivered_at, last_status,"
    " last_error, credyt_environment, credyt_account"
)


def _migrate_v1(db: sqlite_utils.Database) -> None:
    inbox, outbox, attempts = db.table("inbox"), db.table("outbox"), db.table("attempts")
    inbox.create(
        {
            "id": int,
            "connector": str,
            "event_id": str,
            "event_type": str,
            "livemode": int,
            "received_at": float,
            "body": bytes,
            "status": str,
            "reason": str,
            "attempts": int,
            "next_attempt_at": float,
            "updated_at": float,
            "payment_key": str,
            "customer_id": str,
        },
        pk="id",
        not_null={"connector", "event_id", "event_type", "received_at", "body", "status"},
        defaults={"attempts": 0},
    )
    inbox.create_index(["connector", "event_id"], unique=True)
    inbox.create_index(["status", "next_attempt_at"], index_name="inbox_due")
    inbox.create_index(["received_at"], index_name="inbox_received")
    inbox.create_index(["status", "id"], index_name="inbox_status_id")
    inbox.create_index(["payment_key"], index_name="inbox_payment")
    inbox.create_index(["customer_id"], index_name="inbox_customer")
    outbox.create(
        {
            "id": int,
            "transaction_id": str,
            "inbox_id": int,
            "connector": str,
            "rule": str,
            "kind": str,
            "payment_key": str,
            "reversal_key": str,
            "customer_id": str,
            "asset": str,
            "account": str,
            "amount": str,
            "payment_amount_minor": int,
            "body": str,
            "status": str,
            "attempts": int,
            "next_attempt_at": float,
            "lease_until": float,
            "queued_at": float,
            "received_at": float,
            "created_at": float,
            "updated_at": float,
            "delivered_at": float,
            "last_status": int,
            "last_error": str,
        },
        pk="id",
        not_null={"transaction_id", "customer_id", "body", "status"},
        defaults={"attempts": 0},
    )
    outbox.create_index(["transaction_id"], unique=True)
    outbox.create_index(["status", "next_attempt_at"], index_name="outbox_due")
    outbox.create_index(["status", "id"], index_name="outbox_status_id")
    outbox.create_index(["payment_key"], index_name="outbox_payment")
    outbox.create_index(["inbox_id"], index_name="outbox_inbox")
    attempts.create(
        {
            "id": int,
            "outbox_id": int,
            "started_at": float,
            "duration_ms": float,
            "status_code": int,
            "outcome": str,
            "response": str,
        },
        pk="id",
    )
    attempts.create_index(["outbox_id"], index_name="attempts_outbox")
    db.table("heartbeat").create({"id": int, "at": float}, pk="id")


def _migrate_v2(db: sqlite_utils.Database) -> None:
    # Other PSP ids of a payment (PaymentIntent, Charge, Checkout Session) -> the payment
    # key its credit is recorded under, so a refund naming them finds that credit.
    links = db.table("payment_links")
    links.create({"id": str, "payment_key": str}, pk=("id", "payment_key"))
    # `events show evt_...` looks an event up by its PSP id alone; `events list
    # --connector C` reads one connector's events newest first.
    db.table("inbox").create_index(["event_id"], index_name="inbox_event_id")
    db.table("inbox").create_index(["connector", "id"], index_name="inbox_connector_id")


def _migrate_v3(db: sqlite_utils.Database) -> None:
    # Which Credyt environment (live/test) and account an adjustment is for, so it is
    # never sent with another environment's key. NULL (rows from before): any.
    db.execute("ALTER TABLE outbox ADD COLUMN credyt_environment TEXT")
    db.execute("ALTER TABLE outbox ADD COLUMN credyt_account TEXT")


def _migrate_v4(db: sqlite_utils.Database) -> None:
    conn = db.conn
    # Row ids never come back after prune: an id in an old log or ticket keeps naming
    # the same event (AUTOINCREMENT; the tables are rebuilt with their rows and indexes).
    for table in ("inbox", "outbox", "attempts"):
        _autoincrement(conn, table)
    # Every PSP id of a payment in one class, and every adjustment ever decided: what a
    # decision reads, never pruned (see bridge.storage.queries).
    conn.execute("CREATE TABLE payment_ids (id TEXT PRIMARY KEY, class TEXT NOT NULL)")
    conn.execute("CREATE INDEX payment_ids_class ON payment_ids (class)")
    conn.execute(
        "CREATE TABLE decided (id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " transaction_id TEXT NOT NULL UNIQUE, connector TEXT, rule TEXT, kind TEXT,"
        " payment_key TEXT NOT NULL, reversal_key TEXT, original TEXT, family TEXT,"
        " customer_id TEXT, asset TEXT, account TEXT, amount TEXT,"
        " payment_amount_minor INTEGER, reversed_minor INTEGER, decided_at REAL)"
    )
    conn.execute("CREATE INDEX decided_payment ON decided (payment_key)")
    _fill_decisions(
        conn.execute(statements.KNOWN_PAYMENT_IDS).fetchall(),
        conn.execute(f"SELECT {OUTBOX_COLUMNS} FROM outbox ORDER BY id").fetchall(),
        lambda sql, params: conn.execute(sql, params),
    )


def _autoincrement(conn: sqlite3.Connection, table: str) -> None:
    (create,) = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    if "AUTOINCREMENT" in create.upper():
        return
    indexes = [
        r[0]
        for r in conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?"
            " AND sql IS NOT NULL",
            (table,),
        )
    ]
    rebuilt = create.replace(
        '"id" INTEGER PRIMARY KEY', '"id" INTEGER PRIMARY KEY AUTOINCREMENT', 1
    )
    if rebuilt == create:
        raise StoreError(f"cannot migrate table {table}: unexpected schema {create!r}")
    rebuilt = rebuilt.replace(f'"{table}"', f'"{table}_v4"', 1)
    conn.execute(rebuilt)
    conn.execute(f'INSERT INTO "{table}_v4" SELECT * FROM "{table}"')
    conn.execute(f'DROP TABLE "{table}"')
    conn.execute(f'ALTER TABLE "{table}_v4" RENAME TO "{table}"')
    for index in indexes:
        conn.execute(index)


def _fill_decisions(
    pairs: Sequence[Sequence[Any]],
    outbox: Sequence[Sequence[Any]],
    execute: Callable[[str, tuple[Any, ...]], Any],
) -> None:
    """The classes of the ids already linked, and the adjustments already recorded, as
    decisions (a migration step, the same for both stores; `?` placeholders)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        if a and b:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    for x in sorted(parent):
        execute("INSERT INTO payment_ids (id, class) VALUES (?, ?)", (x, find(x)))
    rows = [_outbox_row(r) for r in outbox]
    credits = {r.transaction_id: r for r in rows if r.kind == "payment"}
    for r in rows:
        original = family = None
        reversed_minor = 0
        reference = r.reversal_key
        if reference is not None:
            # recorded as "<refund>[:<cumulative total>]:<rule>": the refund alone
            reference = re.sub(r":\d+$", "", reference.rsplit(":", 1)[0])
        if r.kind != "payment":
            metadata = json.loads(r.body).get("metadata") or {}
            original = metadata.get("original_transaction_id")
            family = "dispute" if "dispute" in metadata else "refund"
            credit = credits.get(original or "")
            if credit is not None and Decimal(credit.amount):
                reversed_minor = int(
                    (
                        abs(Decimal(r.amount))
                        * credit.payment_amount_minor
                        / Decimal(credit.amount)
                    ).to_integral_value()
                )
            else:
                reversed_minor = r.payment_amount_minor
        execute(
            f"INSERT INTO decided ({statements.DECIDED_COLUMNS}, decided_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                r.transaction_id,
                r.connector,
                r.rule,
                r.kind,
                r.payment_key,
                reference,
                original,
                family,
                r.customer_id,
                r.asset,
                r.account,
                r.amount,
                r.payment_amount_minor,
                reversed_minor,
                r.created_at,
            ),
        )


# Each migration brings the schema from version N-1 to N, inside one transaction.
MIGRATIONS: dict[int, Callable[[sqlite_utils.Database], None]] = {
    1: _migrate_v1,
    2: _migrate_v2,
    3: _migrate_v3,
    4: _migrate_v4,
}


def connect(path: str, *, readonly: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA busy_timeout = 30000")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to SCHEMA_VERSION; returns the version found before."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the database has schema version {version}, newer than this bridge "
            f"({SCHEMA_VERSION}): upgrade credyt-bridge"
        )
    db = sqlite_utils.Database(conn)
    if version < SCHEMA_VERSION:
        backup_before_migrating(conn, version)
    for target in range(version + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process (serve and a CLI command starting together) may have
            # migrated since we looked: the version is read again under the write lock.
            if int(conn.execute("PRAGMA user_version").fetchone()[0]) < target:
                MIGRATIONS[target](db)
                conn.execute(f"PRAGMA user_version = {target}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return version


def backup_before_migrating(conn: sqlite3.Connection, version: int) -> str | None:
    """Copy a database that holds data to `<db>.backup-v<version>` before its schema changes.

    sqlite3's online backup API takes a consistent copy even while another process
    writes (WAL included). A fresh, empty database has nothing to keep: no copy. An
    earlier copy of the same version is replaced: the database is at least as recent.
    Returns the copy's path, or None.
    """
    tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()
    files = [row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main"]
    if not tables[0] or not files or not files[0]:  # empty, or an in-memory database
        return None
    target = f"{files[0]}.backup-v{version}"
    partial = f"{target}.partial"
    try:
        copy = sqlite3.connect(partial)
        try:
            conn.backup(copy)
            copy.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
        finally:
            copy.close()
        os.replace(partial, target)
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(
            f"could not back up {files[0]} to {target} before migrating its schema from "
            f"version {version} to {SCHEMA_VERSION}: {exc}"
        ) from exc
    return target


def _inbox_row(r: Sequence[Any], body: bytes | None = None) -> InboxRow:
    return InboxRow(
        id=r[0],
        connector=r[1],
        event_id=r[2],
        event_type=r[3],
        livemode=None if r[4] is None else bool(r[4]),
        received_at=r[5],
        status=EventStatus(r[6]),
        reason=r[7],
        attempts=r[8],
        next_attempt_at=r[9],
        updated_at=r[10],
        payment_key=r[11],
        customer_id=r[12],
        body=body,
    )


_OUTBOX_FIELDS = tuple(name.strip() for name in OUTBOX_COLUMNS.split(","))


def _outbox_row(r: Sequence[Any]) -> OutboxRow:
    values = dict(zip(_OUTBOX_FIELDS, r, strict=True))
    values["status"] = AdjustmentStatus(values["status"])
    return OutboxRow(**values)


def file_identity(path: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the file at `path`, None if there is none: one stat call."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


class SQLiteStore:
    """The embedded store. Safe to open from several processes (serve and the CLI)."""

    def __init__(self, path: str) -> None:
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise StoreError(f"the database folder {directory} does not exist")
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

        def insert(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "INSERT INTO inbox (connector, event_id, event_type, livemode, received_at, body,"
                " status, attempts, next_attempt_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)"
                " ON CONFLICT (connector, event_id) DO NOTHING",
                (
                    connector,
                    envelope.event_id,
                    envelope.event_type,
                    livemode,
                    received_at,
                    body,
                    received_at,
                    received_at,
                ),
            )
            return cursor.rowcount == 1

        return await self.writer.run(insert)

    def due_events(self, now: float, limit: int) -> list[InboxRow]:
        rows = self._query(
            f"SELECT {INBOX_COLUMNS}, body FROM inbox WHERE status = 'pending'"
            " AND (next_attempt_at <= ? OR updated_at > ?)"
            " ORDER BY next_attempt_at, id LIMIT ?",
            (now, now + CLOCK_STEP_SLACK, limit),
        )
        return [_inbox_row(r, r[13]) for r in rows]

    def next_event_due(self) -> float | None:
        rows = self._query("SELECT MIN(next_attempt_at) FROM inbox WHERE status = 'pending'")
        return rows[0][0] if rows else None

    async def record_processing(self, result: ProcessingResult, now: float) -> int:
        """Record one event's outcome and its adjustments in one transaction.

        Returns how many adjustments were new (an existing transaction_id keeps its
        first body: one transaction id never carries two bodies).
        """
        return await self.writer.run(lambda conn: _record_processing(conn, result, now))

    def adjustments_for_payment(self, payment_key: str) -> list[OutboxRow]:
        rows = self._query(
            f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE payment_key = ? ORDER BY id", (payment_key,)
        )
        return [_outbox_row(r) for r in rows]

    def payment_state(self, ids: Sequence[str]) -> PaymentState:
        """Every id of the payment `ids` belong to, and what was decided for it."""
        try:
            return _payment_state(self._read, ids)
        except sqlite3.Error as exc:
            raise StoreError(f"the database could not be read: {exc}") from exc

    def linked_payment_keys(self, ids: Sequence[str]) -> list[str]:
        if not ids:
            return []
        marks = ", ".join("?" * len(ids))
        rows = self._query(
            f"SELECT DISTINCT payment_key FROM payment_links WHERE id IN ({marks})"
            " ORDER BY payment_key",
            ids,
        )
        return [r[0] for r in rows]

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
            return [_outbox_row(r) for r in rows]

        return await self.writer.run(claim)

    def next_adjustment_due(self) -> float | None:
        rows = self._query("SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'pending'")
        return rows[0][0] if rows else None

    async def record_delivery(self, outcome: DeliveryOutcome) -> None:
        await self.writer.run(lambda conn: _record_delivery(conn, outcome))

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

    def list_events(self, flt: EventFilter) -> list[InboxRow]:
        clause, params = flt.where("?")
        rows = self._query(
            f"SELECT {INBOX_COLUMNS} FROM inbox {clause} ORDER BY id DESC LIMIT ?",
            (*params, flt.limit),
        )
        return [_inbox_row(r) for r in rows]

    def get_event(self, event_ref: str) -> InboxRow | None:
        """By row id, or by the PSP event id."""
        if event_ref.isdigit():
            rows = self._query(
                f"SELECT {INBOX_COLUMNS}, body FROM inbox WHERE id = ?", (int(event_ref),)
            )
        else:
            rows = self._query(
                f"SELECT {INBOX_COLUMNS}, body FROM inbox WHERE event_id = ? ORDER BY id",
                (event_ref,),
            )
        return _inbox_row(rows[0], rows[0][13]) if rows else None

    def adjustments_for_event(self, inbox_id: int) -> list[OutboxRow]:
        rows = self._query(
            f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE inbox_id = ? ORDER BY id", (inbox_id,)
        )
        return [_outbox_row(r) for r in rows]

    def list_adjustments(self, status: str | None = None, limit: int = 100) -> list[OutboxRow]:
        if status is None:
            rows = self._query(
                f"SELECT {OUTBOX_COLUMNS} FROM outbox ORDER BY id DESC LIMIT ?", (limit,)
            )
        else:
            rows = self._query(
                f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE status = ? ORDER BY id DESC LIMIT ?",
                (status, limit),
            )
        return [_outbox_row(r) for r in rows]

    def get_adjustment(self, ref: str) -> OutboxRow | None:
        column = "id" if ref.isdigit() else "transaction_id"
        rows = self._query(f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE {column} = ?", (ref,))
        return _outbox_row(rows[0]) if rows else None

    def attempts_for(self, outbox_id: int) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT started_at, duration_ms, status_code, outcome, response FROM attempts"
            " WHERE outbox_id = ? ORDER BY id",
            (outbox_id,),
        )
        keys = ("started_at", "duration_ms", "status_code", "outcome", "response")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def counts(self) -> dict[str, dict[str, int]]:
        events = dict(self._query("SELECT status, COUNT(*) FROM inbox GROUP BY status"))
        adjustments = dict(self._query("SELECT status, COUNT(*) FROM outbox GROUP BY status"))
        return {"events": events, "adjustments": adjustments}

    def oldest_pending_adjustment(self) -> float | None:
        rows = self._query("SELECT MIN(queued_at) FROM outbox WHERE status = 'pending'")
        return rows[0][0] if rows else None

    async def retry_adjustments(self, ids: Sequence[int] = (), *, dead: bool = False) -> int:
        """Put adjustments back to pending, due now, with a fresh attempt budget."""
        now = time.time()

        def retry(conn: sqlite3.Connection) -> int:
            sql = (
                "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?,"
                " queued_at = ?, lease_until = NULL, updated_at = ?"
            )
            if dead:
                return conn.execute(sql + " WHERE status = 'dead'", (now, now, now)).rowcount
            return sum(
                conn.execute(
                    sql + " WHERE id = ? AND status != 'delivered'", (now, now, now, i)
                ).rowcount
                for i in ids
            )

        return await self.writer.run(retry)

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

    async def prune_finished(self, before: float) -> dict[str, int]:
        """Delete finished rows last touched before `before`, in small transactions.

        - adjustments: delivered ones, but only whole payments: while any adjustment of
          the same payment is younger or not delivered, all of them stay (a later refund
          is computed from the credit and the reversals already made);
        - their delivery attempts;
        - events `processed` or `ignored`, received before `before`, once no adjustment
          refers to them. `failed` and `pending` events and `dead` adjustments stay.
        What was decided for a payment (table `decided`) is never pruned: a refund of a
        pruned payment still finds its credit, and its other events do not credit it.
        """
        counts = {"adjustments": 0, "attempts": 0, "events": 0}
        while True:
            adjustments, attempts = await self.writer.run(
                lambda conn: _prune_adjustments(conn, before, PRUNE_BATCH)
            )
            counts["adjustments"] += adjustments
            counts["attempts"] += attempts
            if adjustments < PRUNE_BATCH:
                break
        while True:
            events = await self.writer.run(lambda conn: _prune_events(conn, before, PRUNE_BATCH))
            counts["events"] += events
            if events < PRUNE_BATCH:
                break
        return counts


def _prune_adjustments(conn: sqlite3.Connection, before: float, limit: int) -> tuple[int, int]:
    ids = [
        r[0]
        for r in conn.execute(
            "SELECT o.id FROM outbox o WHERE o.status = 'delivered' AND o.delivered_at < ?"
            " AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.payment_key = o.payment_key"
            " AND (p.status != 'delivered' OR p.delivered_at >= ?)) LIMIT ?",
            (before, before, limit),
        )
    ]
    attempts = outbox = 0
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        attempts += conn.execute(
            f"DELETE FROM attempts WHERE outbox_id IN ({marks})", chunk
        ).rowcount
        outbox += conn.execute(f"DELETE FROM outbox WHERE id IN ({marks})", chunk).rowcount
    return outbox, attempts


def _prune_events(conn: sqlite3.Connection, before: float, limit: int) -> int:
    return conn.execute(
        "DELETE FROM inbox WHERE id IN (SELECT i.id FROM inbox i"
        " WHERE i.status IN ('processed', 'ignored') AND i.received_at < ?"
        " AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.inbox_id = i.id) LIMIT ?)",
        (before, limit),
    ).rowcount


def _payment_state(conn: sqlite3.Connection, ids: Sequence[str]) -> PaymentState:
    ids = sorted(set(ids))
    if not ids:
        return PaymentState((), ())
    members = sorted({*ids, *(r[0] for r in conn.execute(*statements.class_members(ids)))})
    decided = conn.execute(*statements.decided_for(members)).fetchall()
    return PaymentState(tuple(members), tuple(statements.decided_row(r) for r in decided))


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
    if result.basis is not None:
        if _payment_state(conn, ids).basis != result.basis:
            raise DecisionConflictError(
                f"payment {result.payment_key} was decided elsewhere meanwhile"
            )
    new = 0
    for adj in result.adjustments:
        new += conn.execute(*statements.insert_adjustment(adj, result, now)).rowcount
        conn.execute(*statements.insert_decided(adj, now))
    _join_ids(conn, ids)
    conn.execute(*statements.record_event_outcome(result, now))
    linked = sum(conn.execute(*link).rowcount for link in statements.insert_links(result))
    if (new or linked) and result.payment_key:
        # Reversals (and customer-less payments) held for this payment can go now,
        # whichever of its ids they name.
        keys = tuple(_payment_state(conn, ids).ids)
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
