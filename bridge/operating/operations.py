"""What an operator does to stored events and adjustments: inspect, replay, retry, prune.

The CLI and the admin API are thin layers over these functions; neither holds logic
of its own. Replay runs the *current* rules on the stored raw event through the
normal `Processor`, so it produces the same transaction ids as the first run and what
was delivered is not delivered again (Credyt's idempotency stands behind that too).
A dry run calls `Processor.process`, which records nothing.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from bridge.config.yamlsource import parse_duration
from bridge.errors import NotFoundError, OperationError, StoreError
from bridge.events import Ignored, PaymentEvent, Waiting
from bridge.processing.processor import ConnectorRuntime, Processor
from bridge.storage.records import EventFilter, InboxRow, ProcessingResult, row_dict
from bridge.storage.store import Store, open_store

MAX_REPLAY = 10_000  # events one `replay --status` picks up at most


# -- times ------------------------------------------------------------------------------


def parse_moment(text: str, now: float | None = None) -> float:
    """'2h', '30m', '7d' (that long ago) or an ISO 8601 time (UTC unless it says) -> epoch."""
    now = time.time() if now is None else now
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise OperationError(
            f"{text!r} is neither a duration (90s, 15m, 2h, 7d) nor an ISO time "
            "(2026-11-24T09:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_age(text: str) -> float:
    """A duration such as 30d -> seconds."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise OperationError(str(exc)) from None


# -- plain data for --json and the admin API ----------------------------------------------


def plain(value: Any) -> Any:
    """Records, Decimals, datetimes and enums as JSON-ready values."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    return value


def event_summary(row: InboxRow) -> dict[str, Any]:
    data = row_dict(row)
    data.pop("body", None)
    return plain(data)  # type: ignore[no-any-return]


def normalized_view(row: InboxRow, runtime: ConnectorRuntime | None) -> dict[str, Any]:
    """What the connector makes of the stored event now (without the raw payload)."""
    if runtime is None:
        return {"error": f"connector {row.connector!r} is not in the config"}
    try:
        normalized = runtime.connector.normalize(json.loads(row.body or b"{}"))
    except Exception as exc:  # a view: whatever the connector makes of it is shown, no crash
        return {"error": f"{type(exc).__name__}: {exc}"}
    if isinstance(normalized, Ignored):
        return {"ignored": normalized.reason}
    if isinstance(normalized, Waiting):
        return {"waiting": normalized.reason}
    assert isinstance(normalized, PaymentEvent)
    return {
        f.name: plain(getattr(normalized, f.name))
        for f in fields(normalized)
        if f.name != "raw" and getattr(normalized, f.name) not in (None, {}, ())
    }


def event_detail(
    store: Store, connectors: Mapping[str, ConnectorRuntime], ref: str
) -> dict[str, Any]:
    """Everything about one event: raw body, normalized form, adjustments, attempts."""
    row = find_event(store, ref)
    try:
        raw: Any = json.loads(row.body or b"{}")
    except ValueError:
        raw = (row.body or b"").decode("utf-8", "replace")
    runtime = connectors.get(row.connector)
    bases = {
        rule.name: rule.credit.describe_amount()
        for rule in (runtime.config.rules if runtime is not None else ())
        if rule.credit is not None
    }
    adjustments = []
    for adjustment in store.adjustments_for_event(row.id):
        data = plain(row_dict(adjustment))
        if adjustment.kind == "payment" and adjustment.rule in bases:
            data["credited"] = bases[adjustment.rule]  # the rule's amount: paid, net...
        data["body"] = json.loads(adjustment.body)
        data["attempts_made"] = plain(store.attempts_for(adjustment.id))
        adjustments.append(data)
    return {
        "event": event_summary(row),
        "raw": raw,
        "normalized": normalized_view(row, runtime),
        "adjustments": adjustments,
    }


MAX_ROW_ID = 2**63 - 1  # the largest SQLite / PostgreSQL bigint row id


def open_existing_store(database: str) -> Store:
    """The serving bridge's store; a missing SQLite file is an error, not a new database."""
    if "://" not in database or database.startswith("sqlite:///"):
        path = database.removeprefix("sqlite:///")
        if not os.path.exists(path):
            raise OperationError(
                f"no database at {path}: run the command with the serving bridge's config "
                "(and from its directory when the path is relative)"
            )
    return open_store(database)


def _row_ref(ref: str) -> bool:
    """False for a ref no row can have: digits that are not ASCII (`²`) or beyond MAX_ROW_ID
    (the stores would raise on them, and no PSP id looks like that either)."""
    return not ref.isdigit() or (ref.isascii() and len(ref) <= 19 and int(ref) <= MAX_ROW_ID)


def find_event(store: Store, ref: str) -> InboxRow:
    row = store.get_event(ref) if _row_ref(ref) else None
    if row is None:
        raise NotFoundError(f"no stored event {ref!r} (give a row id or the PSP event id)")
    return row


def adjustment_detail(store: Store, ref: str) -> dict[str, Any]:
    adjustment = store.get_adjustment(ref) if _row_ref(ref) else None
    if adjustment is None:
        raise NotFoundError(f"no adjustment {ref!r} (give a row id or the transaction id)")
    data = plain(row_dict(adjustment))
    data["body"] = json.loads(adjustment.body)
    data["attempts_made"] = plain(store.attempts_for(adjustment.id))
    return data  # type: ignore[no-any-return]


# -- replay ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayOutcome:
    """One replayed event: its status before, what the rules made of it, what was new."""

    event: InboxRow
    result: ProcessingResult
    dry_run: bool
    new_transaction_ids: frozenset[str]  # adjustments not in the outbox before the replay

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.event.id,
            "connector": self.event.connector,
            "event_id": self.event.event_id,
            "event_type": self.event.event_type,
            "dry_run": self.dry_run,
            "status_before": self.event.status.value,
            "status": self.result.status.value,
            "reason": self.result.reason,
            "customer_id": self.result.customer_id,
            "adjustments": [
                {
                    "transaction_id": a.transaction_id,
                    "rule": a.rule,
                    "kind": a.kind,
                    "customer_id": a.customer_id,
                    "asset": a.asset,
                    "amount": a.amount,
                    "new": a.transaction_id in self.new_transaction_ids,
                }
                for a in self.result.adjustments
            ],
        }

    def describe(self) -> str:
        verb = "would be" if self.dry_run else "now"
        head = (
            f"{self.event.id} {self.event.connector} {self.event.event_type} "
            f"{self.event.event_id}: {self.event.status.value} -> {verb} {self.result.status.value}"
        )
        lines = [head + (f" ({self.result.reason})" if self.result.reason else "")]
        for a in self.result.adjustments:
            new = a.transaction_id in self.new_transaction_ids
            state = (
                ("new" if new else "already in the outbox")
                if self.dry_run
                else ("queued for delivery" if new else "already in the outbox, not sent again")
            )
            lines.append(
                f"    {a.kind} {a.amount} {a.asset} to {a.customer_id}"
                f" (rule {a.rule}, transaction {a.transaction_id}): {state}"
            )
        return "\n".join(lines)


def events_to_replay(
    store: Store,
    refs: Sequence[str] = (),
    *,
    status: str | None = None,
    connector: str | None = None,
    since: float | None = None,
    until: float | None = None,
) -> list[InboxRow]:
    """The events named by id, or those matching the filter (oldest first)."""
    if refs and status is not None:
        raise OperationError("name events by id or choose them with --status, not both")
    if refs:
        return [find_event(store, ref) for ref in refs]
    if status is None:
        raise OperationError("name the events to replay (IDs) or choose them with --status")
    listed = store.list_events(
        EventFilter(status=status, connector=connector, since=since, until=until, limit=MAX_REPLAY)
    )
    # list_events leaves the raw body out; get_event loads it.
    return [find_event(store, str(row.id)) for row in reversed(listed)]


async def replay_event(processor: Processor, row: InboxRow, *, dry_run: bool) -> ReplayOutcome:
    """Run the current rules on one stored event; record the result unless `dry_run`.

    Through `Processor.handle`: a replay (inside `serve`, or the CLI beside it) whose
    payment was decided elsewhere meanwhile is decided again, never recorded twice."""
    new: frozenset[str] = frozenset()

    def decided(result: ProcessingResult) -> None:
        nonlocal new
        new = frozenset(
            a.transaction_id
            for a in result.adjustments
            if a.deliver and processor.store.get_adjustment(a.transaction_id) is None
        )

    try:
        result = await processor.handle(row, dry_run=dry_run, decided=decided)
    except StoreError:
        raise
    except Exception as exc:  # a bug reading this event: its reason, not a traceback
        result = processor.crashed(row, exc)
        if not dry_run:
            await processor.record(row, result)
    return ReplayOutcome(row, result, dry_run, new)


async def replay_events(
    processor: Processor, rows: Sequence[InboxRow], *, dry_run: bool
) -> list[ReplayOutcome]:
    return [await replay_event(processor, row, dry_run=dry_run) for row in rows]


# -- retry and prune -------------------------------------------------------------------------


async def retry_adjustments(store: Store, refs: Sequence[str] = (), *, dead: bool = False) -> int:
    """Put dead (or pending) adjustments back in the queue, due now, with fresh attempts."""
    if refs and dead:
        raise OperationError("give adjustment ids or --dead, not both")
    if not refs and not dead:
        raise OperationError("name the adjustments to retry (IDs) or pass --dead")
    ids = []
    for ref in refs:
        adjustment = store.get_adjustment(ref) if _row_ref(ref) else None
        if adjustment is None:
            raise NotFoundError(f"no adjustment {ref!r} (give a row id or the transaction id)")
        ids.append(adjustment.id)
    return await store.retry_adjustments(ids, dead=dead)


async def prune(
    store: Store,
    older_than: float,
    now: float | None = None,
    progress: Callable[[dict[str, int]], None] | None = None,
) -> dict[str, int]:
    """Delete finished rows older than `older_than` seconds; see `Store.prune_finished`
    (`progress` gets the running counts after each batch)."""
    if older_than <= 0:
        raise OperationError("--older-than must be a positive duration")
    before = (time.time() if now is None else now) - older_than
    return await store.prune_finished(before, progress)
