"""The outcomes one stored event can have, as the results the store records.

`processed` (with adjustments), `ignored` (with why), `failed` (with why), or `later`:
still `pending`, with a reason and a time to try again (a refund waiting for its
payment's credit, an event naming no customer waiting for another of its payment).
"""

from __future__ import annotations

import time

from bridge.delivery.retry import RetryPolicy
from bridge.events import PaymentEvent
from bridge.storage.records import EventStatus, InboxRow, NewAdjustment, ProcessingResult

# How long an event that can not be decided yet waits before it is looked at again:
# 2 s, doubling with each look, at most 10 minutes. A wait is no failure: no give-up.
HOLD_RETRY = RetryPolicy(initial=2.0, maximum=600.0, jitter=0.0)


def processed(
    row: InboxRow, event: PaymentEvent, customer: str, adjustments: tuple[NewAdjustment, ...]
) -> ProcessingResult:
    return ProcessingResult(
        row.id,
        EventStatus.PROCESSED,
        None,
        payment_key=event.payment_key,
        customer_id=customer,
        adjustments=adjustments,
    )


def ignored(row: InboxRow, reason: str, *, payment_key: str | None = None) -> ProcessingResult:
    return ProcessingResult(row.id, EventStatus.IGNORED, reason, payment_key=payment_key)


def failed(row: InboxRow, reason: str) -> ProcessingResult:
    return ProcessingResult(row.id, EventStatus.FAILED, reason)


def later(row: InboxRow, reason: str, *, payment_key: str | None = None) -> ProcessingResult:
    """Pending, looked at again after a delay that grows with the event's attempts."""
    return ProcessingResult(
        row.id,
        EventStatus.PENDING,
        reason,
        next_attempt_at=time.time() + HOLD_RETRY.backoff(row.attempts + 1),
        payment_key=payment_key,
    )
