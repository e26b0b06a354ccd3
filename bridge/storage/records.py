"""What the store holds: the inbox of webhooks, the outbox of adjustments, and their states."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any


class EventStatus(StrEnum):
    PENDING = "pending"  # stored; to be processed (again, at next_attempt_at)
    PROCESSED = "processed"  # its adjustments are in the outbox
    IGNORED = "ignored"  # nothing to do; `reason` says why
    FAILED = "failed"  # can not be processed as is; `reason` says why; replayable


class AdjustmentStatus(StrEnum):
    PENDING = "pending"  # waiting for a (further) delivery attempt at next_attempt_at
    DELIVERED = "delivered"  # Credyt has it (2xx, or 409: it already had it)
    DEAD = "dead"  # Credyt refused it or retries ran out; `last_error` has its answer
    HELD = "held"  # above an amount limit: not sent until an operator approves it
    REJECTED = "rejected"  # held, then rejected by an operator: never sent; final


@dataclass(frozen=True)
class InboxRow:
    id: int
    connector: str
    event_id: str
    event_type: str
    livemode: bool | None
    received_at: float
    status: EventStatus
    reason: str | None
    attempts: int
    next_attempt_at: float | None
    updated_at: float
    payment_key: str | None
    customer_id: str | None
    body: bytes | None = None  # loaded only where needed


@dataclass(frozen=True)
class NewAdjustment:
    """An adjustment to record in the outbox; `body` is exactly what Credyt receives."""

    transaction_id: str
    connector: str
    rule: str
    kind: str  # events.Kind value
    payment_key: str
    reversal_key: str | None
    customer_id: str
    asset: str
    account: str
    amount: str  # exact decimal text, major units, signed
    payment_amount_minor: int  # the PSP amount this adjustment stands for (proportions)
    body: str  # JSON
    # The Credyt environment (live/test) and account it is for; None: any. Set when the
    # processor records it; the deliverer never sends it with another environment's key.
    credyt_environment: str | None = None
    credyt_account: str | None = None
    # Reversals: the transaction id of the credit it reverses (None: applied without a
    # known credit, unknown_original: debit), how much of the PSP payment (minor units)
    # it reverses, and its family ("refund" or "dispute": what a cumulative count sums).
    original: str | None = None
    reversed_minor: int = 0
    family: str | None = None
    # What its reversals are measured against, when not the PSP payment's gross: a net
    # or subtotal credit records the payment's net (minor units of `payment_amount_minor`'s
    # currency), and a reversal measured by a refund's own net records that whole beside
    # `reversed_minor` (its net). None: the gross (bridge.processing.reversals).
    basis_minor: int | None = None
    # Why it is held for an operator (an amount limit), None: queued for delivery.
    held: str | None = None
    # False: a decision that moves no money but whose PSP units count (a dispute of a
    # refunded charge, its reinstatement): recorded in `decided` only, with amount 0,
    # so later targets count its `reversed_minor`; no outbox row, nothing sent to Credyt
    # (which refuses a zero adjustment).
    deliver: bool = True


@dataclass(frozen=True)
class Decided:
    """One adjustment as decided, kept forever (never pruned): what the next decision
    about the same payment reads, whatever `prune` removed from the outbox since."""

    transaction_id: str
    connector: str
    rule: str
    kind: str
    payment_key: str
    reversal_key: str | None  # the PSP refund / adjustment / dispute (reversals)
    original: str | None  # the credit a reversal reverses (its transaction id)
    family: str | None
    customer_id: str
    asset: str
    account: str
    amount: str
    payment_amount_minor: int
    reversed_minor: int
    # None: measured by the gross (every decision from before schema 7, too)
    basis_minor: int | None = None

    @property
    def delivers(self) -> bool:
        """False for a decision recorded only for its PSP units (NewAdjustment.deliver):
        its amount is 0, it has no outbox row and Credyt never hears of it."""
        return Decimal(self.amount) != 0


@dataclass(frozen=True)
class PaymentState:
    """What is decided for one payment: every PSP id known to belong to it (the union of
    every id any event linked to it, whichever arrived first) and its decided
    adjustments. `basis` is what a decision read; recording it re-checks it."""

    ids: tuple[str, ...]
    decided: tuple[Decided, ...]

    @property
    def basis(self) -> tuple[str, ...]:
        return tuple(sorted(d.transaction_id for d in self.decided))


@dataclass(frozen=True)
class OutboxRow:
    id: int
    transaction_id: str
    inbox_id: int | None
    connector: str
    rule: str
    kind: str
    payment_key: str
    reversal_key: str | None
    customer_id: str
    asset: str
    account: str
    amount: str
    payment_amount_minor: int
    body: str
    status: AdjustmentStatus
    attempts: int
    next_attempt_at: float | None
    queued_at: float
    received_at: float | None  # when the webhook that produced it arrived
    created_at: float
    updated_at: float
    delivered_at: float | None
    last_status: int | None
    last_error: str | None
    credyt_environment: str | None = None
    credyt_account: str | None = None


@dataclass(frozen=True)
class ProcessingResult:
    """The outcome of processing one inbox event, recorded in one transaction."""

    inbox_id: int
    status: EventStatus
    reason: str | None = None
    next_attempt_at: float | None = None
    payment_key: str | None = None
    customer_id: str | None = None
    adjustments: tuple[NewAdjustment, ...] = ()
    # Other PSP ids of the payment (PaymentIntent, Charge...), recorded as links to
    # payment_key whatever the status, so reversals naming them find the payment.
    payment_ids: tuple[str, ...] = ()
    # The decided adjustments the outcome was based on (PaymentState.basis), or None
    # when it read none. Recording re-checks it in the same transaction and refuses
    # with DecisionConflictError if another process decided for the payment meanwhile:
    # a credit, but also a hold ("no credit yet") or a skip made on what is now stale.
    basis: tuple[str, ...] | None = None


@dataclass(frozen=True)
class DeliveryOutcome:
    """The outcome of one delivery attempt."""

    outbox_id: int
    status: AdjustmentStatus
    started_at: float
    duration_ms: float
    next_attempt_at: float | None = None
    status_code: int | None = None
    error: str | None = None  # Credyt's answer or the network error, for the operator
    counted: bool = True  # False: a circuit-breaker probe, not held against max_attempts


@dataclass(frozen=True)
class ReconcileRun:
    """The last `credyt-bridge reconcile` run: its connector, when it ended, its report
    (JSON, as `reconcile --json` prints it)."""

    connector: str
    finished_at: float
    report: str


@dataclass(frozen=True)
class EventFilter:
    status: str | None = None
    connector: str | None = None
    event_type: str | None = None
    customer: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 100
    before_id: int | None = None  # only rows older than this one (the console's pages)
    # Credyt for Platforms: only events credited in this Credyt account (their payment
    # keys are scoped `<account>:...`, bridge.processing.tenants).
    credyt_account: str | None = None

    def where(self, mark: str) -> tuple[str, list[Any]]:
        """The SQL WHERE clause (empty if no filter) and its parameters; `mark` is the
        backend's placeholder (`?` for SQLite, `%s` for PostgreSQL)."""
        conditions: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("status", self.status),
            ("connector", self.connector),
            ("event_type", self.event_type),
            ("customer_id", self.customer),
        ):
            if value is not None:
                conditions.append(f"{column} = {mark}")
                params.append(value)
        if self.credyt_account is not None:
            prefix = f"{self.credyt_account}:"
            conditions.append(f"substr(payment_key, 1, CAST({mark} AS INTEGER)) = {mark}")
            params.extend((len(prefix), prefix))
        if self.since is not None:
            conditions.append(f"received_at >= {mark}")
            params.append(self.since)
        if self.until is not None:
            conditions.append(f"received_at < {mark}")
            params.append(self.until)
        if self.before_id is not None:
            conditions.append(f"id < {mark}")
            params.append(self.before_id)
        return (f"WHERE {' AND '.join(conditions)}" if conditions else ""), params


def row_dict(row: Any) -> dict[str, Any]:
    """A record as a plain dict (for --json and the admin API); bytes are decoded."""
    from dataclasses import asdict

    data = asdict(row)
    body = data.get("body")
    if isinstance(body, bytes):
        data["body"] = body.decode("utf-8", "replace")
    return data
