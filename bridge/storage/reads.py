"""The reads both stores make: named SQL per placeholder style, and the read methods.

Each query is written once, with `?` placeholders, and built for a backend's
`Dialect` when the module loads (`SQLITE` / `POSTGRES`), so a read costs no string
work. `StoreReads` implements the Store protocol's reads over these queries; a store
only supplies `_query` (its connection) and `_dialect`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bridge.storage import queries as statements
from bridge.storage.queries import CREDITED_SINCE, Statement
from bridge.storage.records import (
    Decided,
    EventFilter,
    InboxRow,
    OutboxRow,
    PaymentState,
    ReconcileRun,
)
from bridge.storage.rows import (
    ATTEMPT_COLUMNS,
    DECIDED_COLUMNS,
    INBOX_BODY,
    INBOX_COLUMNS,
    OUTBOX_COLUMNS,
    attempt_dict,
    decided_row,
    inbox_row,
    outbox_row,
)
from bridge.storage.store import CLOCK_STEP_SLACK

Rows = Sequence[Sequence[Any]]
ACTIVITY_ATTEMPTS = 100_000  # delivery attempts `activity` looks through at most
RunQuery = Callable[[str, Sequence[Any]], Rows]


@dataclass(frozen=True)
class Dialect:
    """How a backend writes a placeholder, and a test against a list of values."""

    mark: str  # `?` (SQLite) or `%s` (PostgreSQL)
    arrays: bool  # True: `column = ANY(%s)` with one list parameter

    def sql(self, text: str) -> str:
        """`text`, written with `?` placeholders, for this backend."""
        return text if self.mark == "?" else text.replace("?", self.mark)

    def statement(self, statement: Statement) -> Statement:
        sql, params = statement
        return self.sql(sql), params

    def any_of(self, column: str, values: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
        """`column` is one of `values` (not empty), and the parameters that says it with."""
        if self.arrays:
            return f"{column} = ANY({self.mark})", (list(values),)
        return f"{column} IN ({', '.join([self.mark] * len(values))})", tuple(values)


@dataclass(frozen=True)
class ReadSQL:
    """Every fixed read query, for one dialect."""

    due_events: str
    next_event_due: str
    next_adjustment_due: str
    adjustments_for_payment: str
    list_events: str  # formatted with the filter's WHERE clause
    event_by_id: str
    event_by_event_id: str
    adjustments_for_event: str
    adjustments: str
    adjustments_by_status: str
    adjustment_by_id: str
    adjustment_by_transaction_id: str
    attempts_for: str
    count_events: str
    count_adjustments: str
    oldest_pending_adjustment: str
    webhooks_per_bucket: str  # (since, bucket seconds, since)
    attempts_per_bucket: str  # (since, bucket seconds, since)
    decided_page: str
    last_reconcile_run: str

    @classmethod
    def build(cls, dialect: Dialect) -> ReadSQL:
        sql = dialect.sql
        # Which bucket a time at or after `since` falls in. SQLite's CAST truncates (the
        # value is never negative); PostgreSQL's rounds, so it floors first.
        bucket = (
            "CAST(({column} - ?) / ? AS INTEGER)"
            if dialect.mark == "?"
            else "CAST(FLOOR(({column} - ?) / ?) AS BIGINT)"
        )
        return cls(
            due_events=sql(
                f"SELECT {INBOX_COLUMNS}, body FROM inbox WHERE status = 'pending'"
                " AND (next_attempt_at <= ? OR updated_at > ?)"
                " ORDER BY next_attempt_at, id LIMIT ?"
            ),
            next_event_due="SELECT MIN(next_attempt_at) FROM inbox WHERE status = 'pending'",
            next_adjustment_due="SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'pending'",
            adjustments_for_payment=sql(
                f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE payment_key = ? ORDER BY id"
            ),
            list_events=(
                f"SELECT {INBOX_COLUMNS} FROM inbox {{where}} ORDER BY id DESC LIMIT {dialect.mark}"
            ),
            event_by_id=sql(f"SELECT {INBOX_COLUMNS}, body FROM inbox WHERE id = ?"),
            event_by_event_id=sql(
                f"SELECT {INBOX_COLUMNS}, body FROM inbox WHERE event_id = ? ORDER BY id LIMIT 1"
            ),
            adjustments_for_event=sql(
                f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE inbox_id = ? ORDER BY id"
            ),
            adjustments=sql(f"SELECT {OUTBOX_COLUMNS} FROM outbox ORDER BY id DESC LIMIT ?"),
            adjustments_by_status=sql(
                f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE status = ? ORDER BY id DESC LIMIT ?"
            ),
            adjustment_by_id=sql(f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = ?"),
            adjustment_by_transaction_id=sql(
                f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE transaction_id = ?"
            ),
            attempts_for=sql(
                f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE outbox_id = ? ORDER BY id"
            ),
            count_events="SELECT status, COUNT(*) FROM inbox GROUP BY status",
            count_adjustments="SELECT status, COUNT(*) FROM outbox GROUP BY status",
            oldest_pending_adjustment=(
                "SELECT MIN(queued_at) FROM outbox WHERE status = 'pending'"
            ),
            webhooks_per_bucket=sql(
                f"SELECT {bucket.format(column='received_at')}, COUNT(*) FROM inbox"
                " WHERE received_at >= ? GROUP BY 1"
            ),
            # attempts has no index on started_at: the newest ACTIVITY_ATTEMPTS rows by
            # primary key bound the scan, whatever the table's size.
            attempts_per_bucket=sql(
                f"SELECT {bucket.format(column='started_at')}, COUNT(*) FROM attempts"
                f" WHERE id > (SELECT COALESCE(MAX(id), 0) - {ACTIVITY_ATTEMPTS} FROM attempts)"
                " AND started_at >= ? GROUP BY 1"
            ),
            decided_page=sql(
                f"SELECT id, decided_at, {DECIDED_COLUMNS} FROM decided WHERE id > ?"
                " AND connector = ? AND decided_at >= ? AND decided_at < ? ORDER BY id LIMIT ?"
            ),
            last_reconcile_run=(
                "SELECT connector, finished_at, report FROM reconcile_runs WHERE id IN"
                " (SELECT MAX(id) FROM reconcile_runs GROUP BY connector) ORDER BY connector"
            ),
        )


SQLITE = Dialect("?", arrays=False)
POSTGRES = Dialect("%s", arrays=True)
SQLITE_READS = ReadSQL.build(SQLITE)
POSTGRES_READS = ReadSQL.build(POSTGRES)


def payment_state(run: RunQuery, dialect: Dialect, ids: Sequence[str]) -> PaymentState:
    """Every id of the payment `ids` belong to, and what was decided for it, read
    through `run` (a store's reads, or the connection of a write transaction)."""
    wanted = sorted(set(ids))
    if not wanted:
        return PaymentState((), ())
    members = run(*dialect.statement(statements.class_members(wanted)))
    every = sorted({*wanted, *(r[0] for r in members)})
    decided = run(*dialect.statement(statements.decided_for(every)))
    return PaymentState(tuple(every), tuple(decided_row(r) for r in decided))


class StoreReads:
    """The Store protocol's reads (and PaymentLinks'), the same for every backend.

    A store sets `_dialect` and `_sql` and implements `_query`; `_body` turns a
    selected body into bytes where the driver does not already.
    """

    _dialect: Dialect
    _sql: ReadSQL

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        raise NotImplementedError

    def _body(self, value: Any) -> bytes:
        return value  # type: ignore[no-any-return]

    def _event(self, r: Sequence[Any]) -> InboxRow:
        return inbox_row(r, self._body(r[INBOX_BODY]))

    # -- the webhook path -----------------------------------------------------------

    def due_events(self, now: float, limit: int) -> list[InboxRow]:
        rows = self._query(self._sql.due_events, (now, now + CLOCK_STEP_SLACK, limit))
        return [self._event(r) for r in rows]

    def adjustments_for_payment(self, payment_key: str) -> list[OutboxRow]:
        return [
            outbox_row(r) for r in self._query(self._sql.adjustments_for_payment, (payment_key,))
        ]

    def payment_state(self, ids: Sequence[str]) -> PaymentState:
        """Every id of the payment `ids` belong to, and what was decided for it."""
        return payment_state(self._query, self._dialect, ids)

    def linked_payment_keys(self, ids: Sequence[str]) -> list[str]:
        """The payment keys any of `ids` (PaymentIntent, Charge...) is linked to."""
        if not ids:
            return []
        where, params = self._dialect.any_of("id", ids)
        rows = self._query(
            f"SELECT DISTINCT payment_key FROM payment_links WHERE {where} ORDER BY payment_key",
            params,
        )
        return [r[0] for r in rows]

    # -- operating ----------------------------------------------------------------------

    def list_events(self, flt: EventFilter) -> list[InboxRow]:
        where, params = flt.where(self._dialect.mark)
        rows = self._query(self._sql.list_events.format(where=where), (*params, flt.limit))
        return [inbox_row(r) for r in rows]

    def get_event(self, event_ref: str) -> InboxRow | None:
        """By row id, or by the PSP event id."""
        if event_ref.isdigit():
            rows = self._query(self._sql.event_by_id, (int(event_ref),))
        else:
            rows = self._query(self._sql.event_by_event_id, (event_ref,))
        return self._event(rows[0]) if rows else None

    def adjustments_for_event(self, inbox_id: int) -> list[OutboxRow]:
        return [outbox_row(r) for r in self._query(self._sql.adjustments_for_event, (inbox_id,))]

    def list_adjustments(self, status: str | None = None, limit: int = 100) -> list[OutboxRow]:
        if status is None:
            rows = self._query(self._sql.adjustments, (limit,))
        else:
            rows = self._query(self._sql.adjustments_by_status, (status, limit))
        return [outbox_row(r) for r in rows]

    def get_adjustment(self, ref: str) -> OutboxRow | None:
        """By row id, or by transaction id."""
        if ref.isdigit():
            rows = self._query(self._sql.adjustment_by_id, (int(ref),))
        else:
            rows = self._query(self._sql.adjustment_by_transaction_id, (ref,))
        return outbox_row(rows[0]) if rows else None

    def attempts_for(self, outbox_id: int) -> list[dict[str, Any]]:
        return [attempt_dict(r) for r in self._query(self._sql.attempts_for, (outbox_id,))]

    def counts(self) -> dict[str, dict[str, int]]:
        events = {s: int(n) for s, n in self._query(self._sql.count_events)}
        adjustments = {s: int(n) for s, n in self._query(self._sql.count_adjustments)}
        return {"events": events, "adjustments": adjustments}

    def credited_since(self, customer_id: str, asset: str, since: float) -> Decimal:
        """What `customer_id` was credited in `asset` since `since` (amount limits)."""
        rows = self._query(self._dialect.sql(CREDITED_SINCE), (customer_id, asset, since))
        return sum((Decimal(r[0]) for r in rows), Decimal(0))

    def oldest_pending_adjustment(self) -> float | None:
        rows = self._query(self._sql.oldest_pending_adjustment)
        return rows[0][0] if rows else None

    def activity(self, since: float, bucket: float, buckets: int) -> dict[str, list[int]]:
        """Webhooks received and delivery attempts made in each of `buckets` windows of
        `bucket` seconds from `since` (attempts: among the newest ACTIVITY_ATTEMPTS)."""
        result: dict[str, list[int]] = {}
        for name, query in (
            ("webhooks", self._sql.webhooks_per_bucket),
            ("deliveries", self._sql.attempts_per_bucket),
        ):
            counts = [0] * buckets
            for index, number in self._query(query, (since, bucket, since)):
                if 0 <= int(index) < buckets:
                    counts[int(index)] += int(number)
            result[name] = counts
        return result

    # -- reconciling ---------------------------------------------------------------------

    def decided_page(
        self, connector: str, since: float, until: float, after_id: int, limit: int
    ) -> list[tuple[int, Decided]]:
        """Adjustments decided for `connector` in [since, until), by row id after
        `after_id`, `limit` at a time (what `reconcile` checks for `unexpected`)."""
        rows = self._query(self._sql.decided_page, (after_id, connector, since, until, limit))
        return [(int(r[0]), decided_row(r[2:])) for r in rows]

    def last_reconciles(self) -> list[ReconcileRun]:
        """The last reconcile run of each connector, by connector name."""
        rows = self._query(self._sql.last_reconcile_run)
        return [ReconcileRun(str(c), float(at), str(report)) for c, at, report in rows]
