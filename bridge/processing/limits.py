"""Amount limits: a credit above its asset's limit is held for an operator, not sent.

`limits:` in the config gives, per asset, a maximum per adjustment and per customer per
day (24 hours: what the customer was credited in that asset, delivered or queued, plus
this credit; a held credit counts once approved). A held adjustment is recorded with
status `held` and the reason; `outbox approve` queues it (delivered once, under its
transaction id) and `outbox reject` ends it `rejected`. Only credits of payments are
held: reversals (refunds, chargebacks, disputes) and reinstatements are never held, so
money taken back at the PSP always comes off the wallet.

A refund of a credit still held waits for the decision; one of a rejected credit has
nothing to take back (the wallet never got it), so it is ignored with that reason.

Two events of one customer decided at the same moment may each see the other not yet
recorded: the daily limit is a safety rail, not a ledger.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal

import structlog

from bridge.config.schema import AmountLimit
from bridge.events import Kind
from bridge.metrics import Metrics
from bridge.processing.outcomes import ignored, later
from bridge.storage.records import (
    AdjustmentStatus,
    Decided,
    InboxRow,
    NewAdjustment,
    ProcessingResult,
)
from bridge.storage.store import Store

log = structlog.get_logger("bridge.processing.limits")

DAY = 86400.0


class AmountLimits:
    def __init__(
        self, limits: Mapping[str, AmountLimit], store: Store, metrics: Metrics | None = None
    ) -> None:
        self.limits = dict(limits)
        self.store = store
        self.metrics = metrics

    def hold(self, result: ProcessingResult, now: float | None = None) -> ProcessingResult:
        """`result` with each credit over a limit marked held (with why)."""
        if not self.limits or not result.adjustments:
            return result
        moment = time.time() if now is None else now
        earlier: dict[tuple[str, str], Decimal] = {}  # this result's credits so far
        adjustments = []
        for adj in result.adjustments:
            why = self._over(adj, moment, earlier)
            adjustments.append(adj if why is None else replace(adj, held=why))
        return replace(result, adjustments=tuple(adjustments))

    def held(self, result: ProcessingResult, connector: str, event_id: str) -> None:
        """Tell the operator (log line, metric) about each held adjustment just recorded."""
        for adj in result.adjustments:
            if adj.held is None:
                continue
            log.warning(
                "adjustment_held",
                connector=connector,
                event_id=event_id,
                transaction_id=adj.transaction_id,
                customer_id=adj.customer_id,
                asset=adj.asset,
                amount=adj.amount,
                reason=adj.held,
            )
            if self.metrics is not None:
                labels = (adj.asset, *self.metrics.account_labels(adj.credyt_account))
                self.metrics.adjustments_held.labels(*labels).inc()

    def _over(
        self, adj: NewAdjustment, now: float, earlier: dict[tuple[str, str], Decimal]
    ) -> str | None:
        limit = self.limits.get(adj.asset)
        amount = Decimal(adj.amount)
        if limit is None or adj.kind != Kind.PAYMENT.value or amount <= 0:
            return None
        key = (adj.customer_id, adj.asset)
        before = earlier.get(key, Decimal(0))
        earlier[key] = before + amount
        if limit.max_adjustment is not None and amount > limit.max_adjustment:
            return (
                f"held: {adj.amount} {adj.asset} is over the limit of {limit.max_adjustment} "
                "per adjustment (limits); approve or reject it: credyt-bridge outbox "
                "approve|reject ID"
            )
        if limit.max_per_customer_day is None:
            return None
        day = self.store.credited_since(adj.customer_id, adj.asset, now - DAY) + before
        if day + amount > limit.max_per_customer_day:
            return (
                f"held: {adj.amount} {adj.asset} would bring customer {adj.customer_id} to "
                f"{day + amount} {adj.asset} in 24 hours, over the limit of "
                f"{limit.max_per_customer_day} per customer per day (limits); approve or "
                "reject it: credyt-bridge outbox approve|reject ID"
            )
        return None


def reversible(
    store: Store, row: InboxRow, event_type: str, payment_key: str, recorded: list[Decided]
) -> ProcessingResult | list[Decided]:
    """What a reversal of the payment may reverse: `recorded` without rejected credits
    (and what reversed them), or the event's outcome while a credit is held or when
    every credit was rejected. A pruned credit was delivered: it stays."""
    statuses = {
        a.transaction_id: getattr(store.get_adjustment(a.transaction_id), "status", None)
        for a in recorded
        if a.kind == Kind.PAYMENT.value
    }
    held = [t for t, status in statuses.items() if status is AdjustmentStatus.HELD]
    if held:
        return later(
            row,
            f"held: credit {held[0]} of payment {payment_key} is held for an operator "
            f"(outbox approve|reject); this {event_type} waits for the decision",
            payment_key=payment_key,
        )
    rejected = {t for t, status in statuses.items() if status is AdjustmentStatus.REJECTED}
    if not rejected:
        return recorded
    kept = [a for a in recorded if a.transaction_id not in rejected and a.original not in rejected]
    if not any(a.kind == Kind.PAYMENT.value for a in kept):
        return ignored(
            row,
            f"every credit of payment {payment_key} was rejected by an operator: the wallet "
            "never got it, so there is nothing to reverse",
            payment_key=payment_key,
        )
    return kept
