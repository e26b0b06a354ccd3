"""The SQLite store's schema: its migrations, and the connection settings every
connection uses.

The schema is created and migrated with sqlite-utils and versioned with `PRAGMA
user_version`; each migration runs in one transaction, after a copy of a database
that holds data is taken (`<db>.backup-v<version>`).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable

import sqlite_utils

from bridge.errors import StoreError
from bridge.storage.alert_tables import ALERT_TABLES_SQLITE
from bridge.storage.decision_backfill import KNOWN_PAYMENT_IDS, fill_decisions
from bridge.storage.rows import OUTBOX_COLUMNS

SCHEMA_VERSION = 7

RECONCILE_RUNS_TABLE = (
    "CREATE TABLE reconcile_runs (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " connector TEXT NOT NULL, finished_at REAL NOT NULL, report TEXT NOT NULL)"
)
DECIDED_BASIS_COLUMN = "ALTER TABLE decided ADD COLUMN basis_minor INTEGER"


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
    for statement in fill_decisions(
        conn.execute(KNOWN_PAYMENT_IDS).fetchall(),
        conn.execute(f"SELECT {OUTBOX_COLUMNS} FROM outbox ORDER BY id").fetchall(),
    ):
        conn.execute(*statement)


def _migrate_v5(db: sqlite_utils.Database) -> None:
    # Alerts noticed (one row per thing that happened, unique per key) and the messages
    # that carry them to each target, so a restart loses none (see bridge.alerting).
    for statement in ALERT_TABLES_SQLITE:
        db.conn.execute(statement)


def _migrate_v6(db: sqlite_utils.Database) -> None:
    # What each `credyt-bridge reconcile` run found (its report as JSON): the admin API
    # and the metrics show the last one.
    db.conn.execute(RECONCILE_RUNS_TABLE)


def _migrate_v7(db: sqlite_utils.Database) -> None:
    # What a decision's reversals are measured against when it is not the payment's
    # gross: the net of a net or subtotal credit, so a refund's own tax split is used.
    # Rows from before stay NULL: measured by the gross, as they were.
    db.conn.execute(DECIDED_BASIS_COLUMN)


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


# Each migration brings the schema from version N-1 to N, inside one transaction.
MIGRATIONS: dict[int, Callable[[sqlite_utils.Database], None]] = {
    1: _migrate_v1,
    2: _migrate_v2,
    3: _migrate_v3,
    4: _migrate_v4,
    5: _migrate_v5,
    6: _migrate_v6,
    7: _migrate_v7,
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
