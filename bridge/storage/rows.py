"""The columns both stores select, and the records their rows decode to.

Both schemas have the same tables and column names; a row read by either store is
turned into an `InboxRow`, `OutboxRow` or `Decided` here, with no per-backend code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.storage.records import AdjustmentStatus, Decided, EventStatus, InboxRow, OutboxRow

INBOX_COLUMNS = (
    "id, connector, event_id, event_type, livemode, received_at, status, reason, attempts, "
    "next_attempt_at, updated_at, payment_key, customer_id"
)
# A row selected with `INBOX_COLUMNS, body` has its body at this index.
INBOX_BODY = 13
OUTBOX_COLUMNS = (
    "id, transaction_id, inbox_id, connector, rule, kind, payment_key, reversal_key, "
    "customer_id, asset, account, amount, payment_amount_minor, body, status, attempts, "
    "next_attempt_at, queued_at, received_at, created_at, updated_at, delivered_at, last_status,"
    " last_error, credyt_environment, credyt_account"
)
# The decided table's columns as schema 4 made them (its back-fill writes these), and
# all of them: schema 7 added basis_minor.
DECIDED_COLUMNS_V4 = (
    "transaction_id, connector, rule, kind, payment_key, reversal_key, original, family,"
    " customer_id, asset, account, amount, payment_amount_minor, reversed_minor"
)
DECIDED_COLUMNS = DECIDED_COLUMNS_V4 + ", basis_minor"
ATTEMPT_COLUMNS = "started_at, duration_ms, status_code, outcome, response"


def _names(columns: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in columns.split(","))


OUTBOX_FIELDS = _names(OUTBOX_COLUMNS)
DECIDED_FIELDS = _names(DECIDED_COLUMNS)
ATTEMPT_FIELDS = _names(ATTEMPT_COLUMNS)


def qualified(table: str, columns: str) -> str:
    """`columns` prefixed with `table.` (for a RETURNING beside a joined CTE)."""
    return ", ".join(f"{table}.{name}" for name in _names(columns))


def inbox_row(r: Sequence[Any], body: bytes | None = None) -> InboxRow:
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


def outbox_row(r: Sequence[Any]) -> OutboxRow:
    values = dict(zip(OUTBOX_FIELDS, r, strict=True))
    values["status"] = AdjustmentStatus(values["status"])
    return OutboxRow(**values)


def decided_row(r: Sequence[object]) -> Decided:
    return Decided(**dict(zip(DECIDED_FIELDS, r, strict=True)))  # type: ignore[arg-type]


def attempt_dict(r: Sequence[Any]) -> dict[str, Any]:
    return dict(zip(ATTEMPT_FIELDS, r, strict=True))
