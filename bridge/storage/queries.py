"""The writes both stores make, as SQL with `?` placeholders and their parameters.

Storing a webhook, recording an event's adjustments and a delivery's outcome are the
money path; they are written once here, and each store runs these statements its own
way (SQLite as is, PostgreSQL through `for_psycopg`). What really differs per backend
(how held events are woken, notifications) stays in the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.events import Envelope
from bridge.storage.records import (
    AdjustmentStatus,
    DeliveryOutcome,
    NewAdjustment,
    ProcessingResult,
)
from bridge.storage.rows import DECIDED_COLUMNS

Statement = tuple[str, tuple[Any, ...]]

RESPONSE_KEEP = 2000  # characters of Credyt's answer kept per attempt


def for_psycopg(statement: Statement) -> Statement:
    """The same statement with psycopg's `%s` placeholders."""
    sql, params = statement
    return sql.replace("?", "%s"), params


INSERT_EVENT = (
    "INSERT INTO inbox (connector, event_id, event_type, livemode, received_at, body,"
    " status, attempts, next_attempt_at, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)"
    " ON CONFLICT (connector, event_id) DO NOTHING"
)


def insert_event(
    connector: str, envelope: Envelope, body: bytes, received_at: float, livemode: object
) -> Statement:
    """A verified webhook, pending and due now; nothing if (connector, event id) is
    already stored. `livemode` as the backend stores it (SQLite: 0/1, PostgreSQL: bool)."""
    return (
        INSERT_EVENT,
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


# Adjustments back to pending, due now (three times `now`), with a fresh attempt budget;
# each store adds the rows it applies to.
REQUEUE_ADJUSTMENTS = (
    "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?,"
    " queued_at = ?, lease_until = NULL, updated_at = ?"
)

# `reconcile --fix`: a delivered adjustment Credyt does not know is sent again, under
# its own transaction id (Credyt's idempotency makes a second arrival a 409, not a credit).
RESEND_DELIVERED = REQUEUE_ADJUSTMENTS + " WHERE id = ? AND status = 'delivered'"

INSERT_RECONCILE_RUN = (
    "INSERT INTO reconcile_runs (connector, finished_at, report) VALUES (?, ?, ?)"
)


def insert_adjustment(adj: NewAdjustment, result: ProcessingResult, now: float) -> Statement:
    """A new outbox row; an existing transaction_id keeps its first body, and one already
    decided (its row since pruned) is not queued again: one id never carries two bodies."""
    return (
        "INSERT INTO outbox (transaction_id, inbox_id, connector, rule, kind, payment_key,"
        " reversal_key, customer_id, asset, account, amount, payment_amount_minor, body,"
        " status, attempts, next_attempt_at, queued_at, received_at, created_at, updated_at,"
        " credyt_environment, credyt_account, last_error)"
        " SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?,"
        " (SELECT received_at FROM inbox WHERE id = ?), ?, ?, ?, ?, ?"
        " WHERE NOT EXISTS (SELECT 1 FROM decided WHERE transaction_id = ?)"
        " ON CONFLICT (transaction_id) DO NOTHING",
        (
            adj.transaction_id,
            result.inbox_id,
            adj.connector,
            adj.rule,
            adj.kind,
            adj.payment_key,
            adj.reversal_key,
            adj.customer_id,
            adj.asset,
            adj.account,
            adj.amount,
            adj.payment_amount_minor,
            adj.body,
            AdjustmentStatus.PENDING.value if adj.held is None else AdjustmentStatus.HELD.value,
            now,
            now,
            result.inbox_id,
            now,
            now,
            adj.credyt_environment,
            adj.credyt_account,
            adj.held,
            adj.transaction_id,
        ),
    )


def record_event_outcome(result: ProcessingResult, now: float) -> Statement:
    return (
        "UPDATE inbox SET status = ?, reason = ?, attempts = attempts + 1,"
        " next_attempt_at = ?, updated_at = ?, payment_key = COALESCE(?, payment_key),"
        " customer_id = COALESCE(?, customer_id) WHERE id = ?",
        (
            result.status.value,
            result.reason,
            result.next_attempt_at,
            now,
            result.payment_key,
            result.customer_id,
            result.inbox_id,
        ),
    )


def insert_links(result: ProcessingResult) -> list[Statement]:
    """Links from the payment's other ids to its key, in a fixed order (lock order)."""
    if not result.payment_key:
        return []
    return [
        (
            "INSERT INTO payment_links (id, payment_key) VALUES (?, ?)"
            " ON CONFLICT (id, payment_key) DO NOTHING",
            (other, result.payment_key),
        )
        for other in sorted(set(result.payment_ids) - {result.payment_key})
    ]


def record_delivery(outcome: DeliveryOutcome, now: float) -> Statement:
    """The outcome of one attempt. `delivered` is final: a late outcome from an attempt
    whose lease ran out while another delivered the row must not undo it."""
    delivered_at = outcome.started_at if outcome.status is AdjustmentStatus.DELIVERED else None
    return (
        "UPDATE outbox SET status = ?, attempts = attempts + ?, next_attempt_at = ?,"
        " lease_until = NULL, updated_at = ?, delivered_at = COALESCE(?, delivered_at),"
        " last_status = ?, last_error = ? WHERE id = ? AND status != 'delivered'",
        (
            outcome.status.value,
            int(outcome.counted),
            outcome.next_attempt_at,
            now,
            delivered_at,
            outcome.status_code,
            outcome.error,
            outcome.outbox_id,
        ),
    )


# An operator's decision on a held adjustment: approved goes pending (due now, delivered
# once under its transaction id), rejected is final. Only a row still held changes.
DECIDE_HELD = (
    "UPDATE outbox SET status = ?, last_error = ?, attempts = 0, next_attempt_at = ?,"
    " queued_at = ?, lease_until = NULL, updated_at = ? WHERE id = ? AND status = 'held'"
)
# ...and the decision kept in the row's attempt history (`events show`, `outbox list`).
INSERT_DECISION = (
    "INSERT INTO attempts (outbox_id, started_at, duration_ms, status_code, outcome,"
    " response) VALUES (?, ?, 0, NULL, ?, ?)"
)
# What a customer was credited in an asset since a time (amount limits): every credit
# sent or to be sent (held ones count once approved; rejected and dead ones never).
CREDITED_SINCE = (
    "SELECT amount FROM outbox WHERE customer_id = ? AND asset = ? AND kind = 'payment'"
    " AND created_at >= ? AND status IN ('pending', 'delivered')"
)


def decide_held(outbox_id: int, approve: bool, note: str, now: float) -> list[Statement]:
    status = AdjustmentStatus.PENDING if approve else AdjustmentStatus.REJECTED
    return [
        (DECIDE_HELD, (status.value, note, now, now, now, outbox_id)),
        (INSERT_DECISION, (outbox_id, now, "approved" if approve else "rejected", note)),
    ]


def insert_attempt(outcome: DeliveryOutcome) -> Statement:
    return (
        "INSERT INTO attempts (outbox_id, started_at, duration_ms, status_code, outcome,"
        " response) VALUES (?, ?, ?, ?, ?, ?)",
        (
            outcome.outbox_id,
            outcome.started_at,
            outcome.duration_ms,
            outcome.status_code,
            outcome.status.value,
            (outcome.error or "")[:RESPONSE_KEEP],
        ),
    )


# -- what was decided, kept forever -----------------------------------------------------
#
# `payment_ids` puts every PSP id of a payment (in_, pi_, ch_, cs_, txn_...) in one class,
# whichever id arrived first: an event naming several ids merges their classes. `decided`
# holds every adjustment ever decided, by the payment key it was recorded under; it is
# never pruned. A decision reads the decided rows of the whole class of its event's ids.


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))


def payment_ids_of(payment_key: str | None, payment_ids: Sequence[str]) -> list[str]:
    """The ids an event names for its payment, in one fixed order."""
    return sorted({i for i in (payment_key, *payment_ids) if i})


def class_members(ids: Sequence[str]) -> Statement:
    """Every id in the classes of `ids` (the ids themselves only once they are known)."""
    return (
        "SELECT id FROM payment_ids WHERE class IN"
        f" (SELECT class FROM payment_ids WHERE id IN ({_marks(ids)})) ORDER BY id",
        tuple(ids),
    )


def classes_of(ids: Sequence[str]) -> Statement:
    return (
        f"SELECT DISTINCT class FROM payment_ids WHERE id IN ({_marks(ids)}) ORDER BY class",
        tuple(ids),
    )


def merge_classes(target: str, others: Sequence[str]) -> Statement:
    return (
        f"UPDATE payment_ids SET class = ? WHERE class IN ({_marks(others)})",
        (target, *others),
    )


def add_ids(ids: Sequence[str], target: str) -> list[Statement]:
    return [
        (
            "INSERT INTO payment_ids (id, class) VALUES (?, ?) ON CONFLICT (id) DO NOTHING",
            (i, target),
        )
        for i in ids
    ]


def decided_for(ids: Sequence[str]) -> Statement:
    return (
        f"SELECT {DECIDED_COLUMNS} FROM decided WHERE payment_key IN ({_marks(ids)}) ORDER BY id",
        tuple(ids),
    )


def insert_decided(adj: NewAdjustment, now: float) -> Statement:
    return (
        f"INSERT INTO decided ({DECIDED_COLUMNS}, decided_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (transaction_id) DO NOTHING",
        (
            adj.transaction_id,
            adj.connector,
            adj.rule,
            adj.kind,
            adj.payment_key,
            adj.reversal_key,
            adj.original,
            adj.family,
            adj.customer_id,
            adj.asset,
            adj.account,
            adj.amount,
            adj.payment_amount_minor,
            adj.reversed_minor,
            adj.basis_minor,
            now,
        ),
    )
