"""The PostgreSQL store's schema: the same tables as SQLite's, versioned in
`schema_version`; migrations run in one transaction under an advisory lock, so
replicas starting together migrate once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import structlog

from bridge.errors import StoreError
from bridge.storage.alert_tables import ALERT_TABLES_POSTGRES
from bridge.storage.decision_backfill import KNOWN_PAYMENT_IDS, fill_decisions
from bridge.storage.queries import for_psycopg
from bridge.storage.rows import OUTBOX_COLUMNS

log = structlog.get_logger("bridge.storage.postgres")

SCHEMA_VERSION = 7
MIGRATION_LOCK = 0x637265647974  # pg_advisory_xact_lock key: "credyt"

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

# Alerts noticed and the messages that carry them to each target (see bridge.alerting).
_MIGRATION_V5 = ALERT_TABLES_POSTGRES
# What each `credyt-bridge reconcile` run found (its report as JSON).
_MIGRATION_V6 = (
    """CREATE TABLE reconcile_runs (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        connector text NOT NULL,
        finished_at double precision NOT NULL,
        report text NOT NULL
    )""",
)
# What a decision's reversals are measured against when not the payment's gross (the
# net of a net or subtotal credit); NULL, as every row from before: the gross.
_MIGRATION_V7 = ("ALTER TABLE decided ADD COLUMN basis_minor bigint",)

# Each migration brings the schema from version N-1 to N (the same steps as the SQLite
# store's); all run in one transaction. A step is SQL, or a function of the connection.
MIGRATIONS: dict[int, tuple[str | Callable[[psycopg.Connection[Any]], None], ...]] = {
    1: _MIGRATION_V1,
    2: _MIGRATION_V2,
    3: _MIGRATION_V3,
    4: _MIGRATION_V4,
    5: _MIGRATION_V5,
    6: _MIGRATION_V6,
    7: _MIGRATION_V7,
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
