"""The `alerts` and `alert_messages` tables (schema version 5), for both stores.

`alerts`: one row per thing that happened (an adjustment went dead, an event failed,
the breaker opened...), unique on `key`, so noticing it twice stores it once.
`grouped_at` is NULL until a message carries it. `alert_messages`: one row per
message and target, `pending` until the target answered 2xx (`sent`) or the retries
ran out (`failed`). Both live in the store, so a restart loses no alert.
"""

from __future__ import annotations

_ALERTS = (
    "CREATE TABLE alerts ({id}, condition TEXT NOT NULL, key TEXT NOT NULL UNIQUE,"
    " detail TEXT NOT NULL, observed_at {real}, detected_at {real} NOT NULL,"
    " grouped_at {real})"
)
_MESSAGES = (
    "CREATE TABLE alert_messages ({id}, condition TEXT NOT NULL, kind TEXT NOT NULL,"
    " target TEXT NOT NULL, payload TEXT NOT NULL, covers INTEGER NOT NULL,"
    " created_at {real} NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
    " next_attempt_at {real}, last_error TEXT, sent_at {real})"
)
_INDEXES = (
    "CREATE INDEX alerts_waiting ON alerts (condition, grouped_at)",
    "CREATE INDEX alerts_observed ON alerts (condition, observed_at)",
    "CREATE INDEX alert_messages_due ON alert_messages (status, next_attempt_at)",
    "CREATE INDEX alert_messages_condition ON alert_messages (condition, created_at)",
)


def _tables(id_column: str, real: str) -> tuple[str, ...]:
    return (
        _ALERTS.format(id=id_column, real=real),
        _MESSAGES.format(id=id_column, real=real),
        *_INDEXES,
    )


ALERT_TABLES_SQLITE = _tables("id INTEGER PRIMARY KEY AUTOINCREMENT", "REAL")
ALERT_TABLES_POSTGRES = _tables(
    "id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "double precision"
)
