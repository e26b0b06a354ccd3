"""`credyt-bridge events list --follow`: each webhook and what became of it, as it happens.

`EventFollower.poll()` reads the store (the serving bridge's, as any read-only command
does) and returns what changed since the last poll: an event that arrived or changed
state, and each of its adjustments that was queued, delivered or died. It keeps a small
window of rows that may still change, so a poll costs the same however long it runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from bridge.storage.records import EventFilter, InboxRow, OutboxRow
from bridge.storage.store import Store

WINDOW = 1000  # rows one poll reads at most
FINAL_ADJUSTMENT = ("delivered", "dead")


@dataclass(frozen=True)
class Change:
    """One line of the live view: an event's state, or one of its adjustments'."""

    at: float
    event: InboxRow
    adjustment: OutboxRow | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "at": self.at,
            "event_id": self.event.event_id,
            "connector": self.event.connector,
            "event_type": self.event.event_type,
            "event_status": self.event.status.value,
            "reason": self.event.reason,
        }
        if self.adjustment is not None:
            a = self.adjustment
            data["adjustment"] = {
                "id": a.id,
                "kind": a.kind,
                "amount": str(a.amount),
                "asset": a.asset,
                "customer_id": a.customer_id,
                "status": a.status.value,
                "last_status": a.last_status,
            }
        return data

    def text(self) -> str:
        clock = time.strftime("%H:%M:%S", time.gmtime(self.at))
        event = self.event
        if self.adjustment is None:
            reason = f": {event.reason}" if event.reason else ""
            return (
                f"{clock}  {event.connector}  {event.event_type}  {event.event_id}  "
                f"{event.status.value}{reason}"
            )
        a = self.adjustment
        answer = f" (Credyt {a.last_status})" if a.last_status else ""
        return (
            f"{clock}    #{a.id} {a.kind} {a.amount} {a.asset} to {a.customer_id}: "
            f"{a.status.value}{answer}"
        )


class EventFollower:
    def __init__(self, store: Store, flt: EventFilter, since: float) -> None:
        self.store = store
        self.filter = replace(flt, limit=WINDOW)
        self.since = since  # events received before this are settled and shown
        self.events: dict[int, str] = {}  # id -> state shown
        self.adjustments: dict[int, str] = {}  # id -> state shown

    def poll(self) -> list[Change]:
        now = time.time()
        rows = self.store.list_events(replace(self.filter, since=self.since))
        changes: list[Change] = []
        open_rows: list[InboxRow] = []
        adjustments: dict[int, str] = {}
        for row in reversed(rows):  # oldest first
            if self.events.get(row.id) != row.status.value:
                self.events[row.id] = row.status.value
                changes.append(Change(now, row))
            settled = row.status.value != "pending"
            for adjustment in self.store.adjustments_for_event(row.id) if settled else ():
                state = adjustment.status.value
                adjustments[adjustment.id] = state
                if self.adjustments.get(adjustment.id) != state:
                    changes.append(Change(now, row, adjustment))
                settled = settled and state in FINAL_ADJUSTMENT
            if not settled:
                open_rows.append(row)
        self.adjustments = adjustments
        # Move `since` past the events that can no longer change what is shown.
        if open_rows:
            self.since = min(r.received_at for r in open_rows)
        elif rows:
            self.since = max(r.received_at for r in rows)
        kept = {r.id for r in rows if r.received_at >= self.since}
        self.events = {i: s for i, s in self.events.items() if i in kept}
        return changes
