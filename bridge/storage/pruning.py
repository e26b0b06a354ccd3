"""Pruning finished rows, the same for both stores: its SQL and its batches.

- adjustments: delivered ones, but only whole payments: while any adjustment of the
  same payment is younger or not delivered, all of them stay (a later refund is
  computed from the credit and the reversals already made);
- their delivery attempts;
- events `processed` or `ignored`, received before the cut-off, once no adjustment
  refers to them. `failed` and `pending` events and `dead` adjustments stay.
What was decided for a payment (table `decided`) is never pruned: a refund of a pruned
payment still finds its credit, and its other events do not credit it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bridge.storage.queries import Statement

PRUNE_BATCH = 2000  # rows deleted per transaction, so the other writes are never held up long

# Told the running counts (adjustments, attempts, events deleted) after each batch.
Progress = Callable[[dict[str, int]], None]


def prunable_adjustments(before: float, limit: int) -> Statement:
    """The ids of up to `limit` delivered adjustments whose whole payment is finished."""
    return (
        "SELECT o.id FROM outbox o WHERE o.status = 'delivered' AND o.delivered_at < ?"
        " AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.payment_key = o.payment_key"
        " AND (p.status != 'delivered' OR p.delivered_at >= ?)) LIMIT ?",
        (before, before, limit),
    )


def prune_events(before: float, limit: int) -> Statement:
    return (
        "DELETE FROM inbox WHERE id IN (SELECT i.id FROM inbox i"
        " WHERE i.status IN ('processed', 'ignored') AND i.received_at < ?"
        " AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.inbox_id = i.id) LIMIT ?)",
        (before, limit),
    )


async def prune_in_batches(
    adjustments: Callable[[], Awaitable[tuple[int, int]]],
    events: Callable[[], Awaitable[int]],
    progress: Progress | None = None,
) -> dict[str, int]:
    """Run each batch (one transaction: `adjustments` -> (adjustments, attempts) deleted,
    `events` -> events deleted) until one deletes less than PRUNE_BATCH; `progress`
    gets the running counts after each batch."""
    counts = {"adjustments": 0, "attempts": 0, "events": 0}
    while True:
        outbox, attempts = await adjustments()
        counts["adjustments"] += outbox
        counts["attempts"] += attempts
        if progress is not None:
            progress(dict(counts))
        if outbox < PRUNE_BATCH:
            break
    while True:
        inbox = await events()
        counts["events"] += inbox
        if progress is not None:
            progress(dict(counts))
        if inbox < PRUNE_BATCH:
            break
    return counts
