"""The store interface: everything the receiver, processor, deliverer and CLI ask of storage.

SQLite (`bridge.storage.sqlite`) is the embedded default. Another backend implements
this protocol and is chosen by the `database:` URL in `open_store`; connectors, rules
and workers never see which one they talk to.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, Protocol, TypeVar, runtime_checkable
from urllib.parse import parse_qsl, urlencode, urlsplit

from bridge.events import Envelope
from bridge.storage.records import (
    Decided,
    DeliveryOutcome,
    EventFilter,
    InboxRow,
    OutboxRow,
    PaymentState,
    ProcessingResult,
    ReconcileRun,
)

# Due times are wall-clock times, so a clock stepped back (NTP, a VM restored, a manual
# fix) would leave every row scheduled before the step waiting for as long as the step.
# A row last written more than this far in the future was written by a clock ahead of
# the current one: it is due now. (Larger than any clock skew between replicas, so one
# replica never takes another's lease.)
CLOCK_STEP_SLACK = 60.0


class Store(Protocol):
    # the webhook path
    async def accept(
        self, connector: str, envelope: Envelope, body: bytes, received_at: float
    ) -> bool: ...
    def due_events(self, now: float, limit: int) -> list[InboxRow]: ...
    def next_event_due(self) -> float | None: ...
    async def record_processing(self, result: ProcessingResult, now: float) -> int: ...
    def adjustments_for_payment(self, payment_key: str) -> list[OutboxRow]: ...
    # What a decision reads: every id of the payment `ids` belong to (one class, whichever
    # id arrived first) and every adjustment ever decided for it (never pruned).
    # `record_processing` re-checks `result.basis` against it in its write transaction
    # and raises DecisionConflictError if it changed.
    def payment_state(self, ids: Sequence[str]) -> PaymentState: ...

    # the delivery path
    async def claim_adjustments(self, now: float, limit: int, lease: float) -> list[OutboxRow]: ...
    def next_adjustment_due(self) -> float | None: ...
    async def record_delivery(self, outcome: DeliveryOutcome) -> None: ...
    async def release_adjustments(self, ids: Sequence[int]) -> None: ...

    # health
    async def check_writable(self) -> None: ...

    # operating
    def list_events(self, flt: EventFilter) -> list[InboxRow]: ...
    def get_event(self, event_ref: str) -> InboxRow | None: ...
    def adjustments_for_event(self, inbox_id: int) -> list[OutboxRow]: ...
    def list_adjustments(self, status: str | None = None, limit: int = 100) -> list[OutboxRow]: ...
    def get_adjustment(self, ref: str) -> OutboxRow | None: ...
    def attempts_for(self, outbox_id: int) -> list[dict[str, Any]]: ...
    def counts(self) -> dict[str, dict[str, int]]: ...
    def oldest_pending_adjustment(self) -> float | None: ...
    # webhooks and delivery attempts per `bucket` seconds from `since` (the console's chart)
    def activity(self, since: float, bucket: float, buckets: int) -> dict[str, list[int]]: ...
    async def retry_adjustments(self, ids: Sequence[int] = (), *, dead: bool = False) -> int: ...
    async def decide_held(self, outbox_id: int, approve: bool, note: str) -> bool: ...
    def credited_since(self, customer_id: str, asset: str, since: float) -> Decimal: ...
    async def reset_events(self, ids: Sequence[int]) -> int: ...
    async def prune_finished(
        self, before: float, progress: Callable[[dict[str, int]], None] | None = None
    ) -> dict[str, int]: ...

    # reconciling
    def decided_page(
        self, connector: str, since: float, until: float, after_id: int, limit: int
    ) -> list[tuple[int, Decided]]: ...
    async def resend_adjustments(self, ids: Sequence[int]) -> int: ...
    async def record_reconcile(self, connector: str, finished_at: float, report: str) -> None: ...
    def last_reconciles(self) -> list[ReconcileRun]: ...

    def close(self) -> None: ...


@runtime_checkable
class EventClaims(Protocol):
    """A store shared by several bridge processes leases the events it hands out.

    `claim_events` returns due pending events and hides them from the other replicas
    for `lease` seconds (or until their outcome is recorded), so two replicas do not
    process the same event at once. Processing stays idempotent either way.
    """

    async def claim_events(self, now: float, limit: int, lease: float) -> list[InboxRow]: ...


@runtime_checkable
class PaymentLinks(Protocol):
    """A store that keeps the other PSP ids of a payment (PaymentIntent, Charge...).

    `record_processing` stores `result.payment_ids` as links to `result.payment_key`;
    `linked_payment_keys` returns the payment keys any of `ids` is linked to, so a
    refund naming a PaymentIntent finds the credit keyed by its invoice.
    """

    def linked_payment_keys(self, ids: Sequence[str]) -> list[str]: ...


@runtime_checkable
class ChangeFeed(Protocol):
    """A store that tells this process when another one added work (PostgreSQL NOTIFY)."""

    def subscribe(
        self, *, events: Callable[[], None], adjustments: Callable[[], None]
    ) -> Callable[[], None]: ...


# One statement with `?` placeholders and its parameters -> the rows it returned (none for
# a statement without RESULT/RETURNING), run inside the transaction `alert_transaction` opened.
RunSQL = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]
T = TypeVar("T")


@runtime_checkable
class AlertTables(Protocol):
    """A store with the `alerts` tables (schema 5): `alert_transaction(fn)` runs `fn`
    over ONE write transaction, serialized with every other process's (SQLite's one
    writer; PostgreSQL: an advisory lock), so two replicas never send one alert twice;
    `alert_query` reads outside it."""

    async def alert_transaction(self, fn: Callable[[RunSQL], T]) -> T: ...

    # A read (`?` placeholders) on a read connection, outside any write transaction:
    # what the alert conditions look at, so the writer is not held while they scan.
    def alert_query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_store(database: str) -> Store:
    """`bridge.db` or `sqlite:///path/bridge.db` -> the SQLite store;
    `postgresql://user@host/db` -> the PostgreSQL store (several replicas can share it)."""
    if database.startswith(POSTGRES_SCHEMES):
        from bridge.storage.postgres import PostgresStore

        return PostgresStore(database)

    from bridge.storage.sqlite import SQLiteStore

    path = database.removeprefix("sqlite:///") if database.startswith("sqlite:///") else database
    return SQLiteStore(path)


def redact_database(database: str) -> str:
    """The database setting fit for logs: a URL's password becomes `***`."""
    if "://" not in database:
        return database
    parts = urlsplit(database)
    if parts.password is not None:
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    query = [
        (key, "***" if key == "password" else value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    text = f"{parts.scheme}://{parts.netloc}{parts.path}"
    return f"{text}?{urlencode(query, safe='/*:')}" if query else text
