"""The processor: stored webhooks -> normalized events -> rules -> outbox rows.

Runs after the PSP has had its answer. Each due inbox event is normalized by its
connector, matched against the connector's rules, given a customer, and recorded with
its adjustments in ONE transaction. Every event ends `processed`, `ignored` (with
why), `failed` (with why), or stays `pending` with a reason and a time to try again
(Credyt unreachable for a customer lookup, a refund waiting for its payment's credit).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import structlog

from bridge.config import ConnectorConfig, Rule
from bridge.customers import CustomerResolver
from bridge.errors import CredytUnavailableError, EventError
from bridge.events import Ignored, Kind, PaymentEvent, Waiting
from bridge.money import encode_json, format_amount
from bridge.records import EventStatus, InboxRow, NewAdjustment, OutboxRow, ProcessingResult
from bridge.rules import (
    PSP_TITLES,
    adjustment_metadata,
    build_credit,
    matching_rules,
    proportional,
    transaction_id,
)
from bridge.store import Store
from connectors import Connector

log = structlog.get_logger("bridge.processing")

RETRY_INITIAL = 2.0  # seconds before an event that could not be processed yet is tried again
RETRY_MAX = 600.0


@dataclass(frozen=True)
class ConnectorRuntime:
    config: ConnectorConfig
    connector: Connector


def retry_delay(attempts: int) -> float:
    return float(min(RETRY_MAX, RETRY_INITIAL * 2 ** min(attempts, 20)))


class Processor:
    def __init__(
        self,
        store: Store,
        connectors: Mapping[str, ConnectorRuntime],
        resolver: CustomerResolver,
        *,
        on_adjustments: Callable[[], None] = lambda: None,
        concurrency: int = 16,
        batch: int = 500,
    ) -> None:
        self.store = store
        self.connectors = connectors
        self.resolver = resolver
        self.on_adjustments = on_adjustments
        self._wake = asyncio.Event()
        self._stopping = False
        self._concurrency = concurrency
        self._batch = batch
        self._in_flight: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """One task per due event, at most `concurrency` at once: a slow customer lookup
        holds up no other event."""
        while not self._stopping:
            self._wake.clear()
            free = self._concurrency - len(self._in_flight)
            started = 0
            if free > 0:
                due = self.store.due_events(
                    time.time(), min(self._batch, free + len(self._in_flight))
                )
                for row in due:
                    if started == free:
                        break
                    if row.id not in self._in_flight:
                        self._start(row)
                        started += 1
            if started and started < free:
                continue  # there may be more due right now
            if self._in_flight:
                await self._wait(1.0)  # a finishing task wakes us
            else:
                due_at = self.store.next_event_due()
                await self._wait(
                    1.0 if due_at is None else min(1.0, max(0.01, due_at - time.time()))
                )

    async def stop(self, grace: float = 5.0) -> None:
        """Start nothing new; give events being processed `grace` seconds to finish."""
        self._stopping = True
        self._wake.set()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)

    def _start(self, row: InboxRow) -> None:
        self._in_flight.add(row.id)
        task = asyncio.create_task(self._guarded(row))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()

    async def _wait(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            pass

    async def _guarded(self, row: InboxRow) -> None:
        try:
            await self.handle(row)
        except Exception:  # never let one event stop the processor; it stays pending
            log.exception(
                "event_processing_crashed", event_id=row.event_id, connector=row.connector
            )
        finally:
            self._in_flight.discard(row.id)

    async def handle(self, row: InboxRow) -> ProcessingResult:
        """Process one stored event and record the outcome."""
        result = await self.process(row)
        new = await self.store.record_processing(result, time.time())
        log.info(
            "event_" + result.status.value,
            connector=row.connector,
            event_id=row.event_id,
            event_type=row.event_type,
            reason=result.reason,
            adjustments=len(result.adjustments),
            new_adjustments=new,
        )
        if new:
            self.on_adjustments()
        return result

    async def process(self, row: InboxRow) -> ProcessingResult:
        """What the current rules make of a stored event. Records nothing."""
        runtime = self.connectors.get(row.connector)
        if runtime is None:
            return _failed(row, f"connector {row.connector!r} is not in the config any more")
        try:
            raw = json.loads(row.body or b"{}")
            normalized = runtime.connector.normalize(raw)
            if isinstance(normalized, Ignored):
                return ProcessingResult(row.id, EventStatus.IGNORED, normalized.reason)
            if isinstance(normalized, Waiting):
                return _later(row, normalized.reason)
            return await self._apply_rules(row, normalized, runtime.config)
        except CredytUnavailableError as exc:
            return _later(row, f"Credyt unavailable for the customer lookup: {exc}")
        except EventError as exc:
            return _failed(row, str(exc))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return _failed(row, f"payload could not be read: {type(exc).__name__}: {exc}")

    async def _apply_rules(
        self, row: InboxRow, event: PaymentEvent, config: ConnectorConfig
    ) -> ProcessingResult:
        rules = matching_rules(event, config)
        if not rules:
            return ProcessingResult(
                row.id,
                EventStatus.IGNORED,
                f"no rule of connector {config.name} matches this {event.event_type}",
                payment_key=event.payment_key,
            )
        if event.kind is Kind.PAYMENT:
            customer = await self.resolver.resolve(event, config.customer_metadata_key)
            adjustments = tuple(build_credit(rule, event, config, customer) for rule in rules)
            return _processed(row, event, customer, adjustments)
        return await self._reverse(row, event, config, rules)

    async def _reverse(
        self, row: InboxRow, event: PaymentEvent, config: ConnectorConfig, rules: list[Rule]
    ) -> ProcessingResult:
        """A refund, chargeback or its reinstatement, against the payment's own credits."""
        recorded = self.store.adjustments_for_payment(event.payment_key)
        credits = [a for a in recorded if a.kind == Kind.PAYMENT.value]
        if not credits:
            return await self._reverse_unknown(row, event, config, rules[0])
        adjustments = []
        for rule in rules:
            for credit in credits:
                adjustment = _reversal_of(credit, rule, event, config, recorded)
                if adjustment is not None:
                    adjustments.append(adjustment)
        if not adjustments:
            return ProcessingResult(
                row.id,
                EventStatus.IGNORED,
                "nothing left to reverse on this payment",
                payment_key=event.payment_key,
            )
        return _processed(row, event, credits[0].customer_id, tuple(adjustments))

    async def _reverse_unknown(
        self, row: InboxRow, event: PaymentEvent, config: ConnectorConfig, rule: Rule
    ) -> ProcessingResult:
        spec = rule.reverse
        assert spec is not None
        what = f"the bridge has no credit for payment {event.payment_key}"
        if spec.unknown_original == "skip":
            return ProcessingResult(
                row.id,
                EventStatus.IGNORED,
                f"{what}; rule {rule.name} skips such reversals",
                payment_key=event.payment_key,
            )
        if spec.unknown_original == "hold":
            if time.time() - row.received_at < spec.hold_for:
                return _later(row, f"held: {what} yet", payment_key=event.payment_key)
            return _failed(row, f"{what} after holding the reversal {spec.hold_for:g}s")
        customer = await self.resolver.resolve(event, config.customer_metadata_key)
        sign = -1 if event.kind is Kind.REVERSAL else 1
        amount = event.amount * sign
        body = _reversal_body(rule, event, config, event.currency, "default", amount, "unknown")
        adjustment = _new_reversal(
            body, rule, event, config, customer, event.currency, "default", amount
        )
        return _processed(row, event, customer, (adjustment,))


def _reversal_of(
    credit: OutboxRow,
    rule: Rule,
    event: PaymentEvent,
    config: ConnectorConfig,
    recorded: list[OutboxRow],
) -> NewAdjustment | None:
    """The debit (or credit back) of one original credit, in proportion to the PSP amount."""
    sign = -1 if event.kind is Kind.REVERSAL else 1
    original = Decimal(credit.amount)
    if event.cumulative:
        # amount_minor is everything refunded so far: debit only what earlier reversals of
        # this credit did not.
        target = proportional(original, event.amount_minor, credit.payment_amount_minor)
        done = -sum(
            (
                Decimal(a.amount)
                for a in recorded
                if a.kind == Kind.REVERSAL.value
                and a.body
                and f'"{credit.transaction_id}"' in a.body
            ),
            Decimal(0),
        )
        amount = (target - done) * sign
    else:
        amount = proportional(original, event.amount_minor, credit.payment_amount_minor) * sign
    if amount == 0:
        return None
    body = _reversal_body(rule, event, config, credit.asset, credit.account, amount, credit.rule)
    body["metadata"]["original_transaction_id"] = credit.transaction_id
    return _new_reversal(
        body,
        rule,
        event,
        config,
        credit.customer_id,
        credit.asset,
        credit.account,
        amount,
        original_rule=credit.rule,
    )


def _reversal_body(
    rule: Rule,
    event: PaymentEvent,
    config: ConnectorConfig,
    asset: str,
    account: str,
    amount: Decimal,
    original_rule: str,
) -> dict[str, Any]:
    spec = rule.reverse
    assert spec is not None
    key = _reversal_key(event, original_rule)
    title = PSP_TITLES.get(event.psp, event.psp)
    what = "reversal" if event.kind is Kind.REVERSAL else "reinstatement"
    return {
        "transaction_id": transaction_id(event.psp, key, rule.name),
        "account_name": account,
        "asset": asset,
        "amount": amount,
        "reason": spec.reason,
        "description": spec.description
        or f"{title} {what} {event.reversal_key} of {event.payment_key}",
        "metadata": adjustment_metadata(rule, event, config, spec.metadata),
    }


def _reversal_key(event: PaymentEvent, original_rule: str) -> str:
    base = event.reversal_key or event.event_id
    if event.cumulative:
        base = f"{base}:{event.amount_minor}"
    return f"{base}:{original_rule}"


def _new_reversal(
    body: dict[str, Any],
    rule: Rule,
    event: PaymentEvent,
    config: ConnectorConfig,
    customer: str,
    asset: str,
    account: str,
    amount: Decimal,
    *,
    original_rule: str = "unknown",
) -> NewAdjustment:
    return NewAdjustment(
        transaction_id=body["transaction_id"],
        connector=config.name,
        rule=rule.name,
        kind=event.kind.value,
        payment_key=event.payment_key,
        reversal_key=_reversal_key(event, original_rule),
        customer_id=customer,
        asset=asset,
        account=account,
        amount=format_amount(amount),
        payment_amount_minor=event.amount_minor,
        body=encode_json(body),
    )


def _processed(
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


def _failed(row: InboxRow, reason: str) -> ProcessingResult:
    return ProcessingResult(row.id, EventStatus.FAILED, reason)


def _later(row: InboxRow, reason: str, *, payment_key: str | None = None) -> ProcessingResult:
    return ProcessingResult(
        row.id,
        EventStatus.PENDING,
        reason,
        next_attempt_at=time.time() + retry_delay(row.attempts),
        payment_key=payment_key,
    )
