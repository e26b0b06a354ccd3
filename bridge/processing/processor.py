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
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import structlog

from bridge.config.schema import ConnectorConfig, ProcessingConfig, Rule
from bridge.credyt.assets import AssetPrecisions
from bridge.errors import CredytUnavailableError, DecisionConflictError, EventError, StoreError
from bridge.events import Ignored, Kind, PaymentEvent, Waiting
from bridge.metrics import Metrics
from bridge.money import encode_json, format_amount
from bridge.pressure import IngestPressure
from bridge.processing.customers import CustomerResolver
from bridge.processing.rules import (
    PSP_TITLES,
    adjustment_metadata,
    build_credit,
    credit_asset,
    matching_rules,
    proportional,
    transaction_id,
)
from bridge.storage.records import (
    Decided,
    EventStatus,
    InboxRow,
    NewAdjustment,
    PaymentState,
    ProcessingResult,
)
from bridge.storage.store import EventClaims, Store
from connectors import Connector

log = structlog.get_logger("bridge.processing.processor")

RETRY_INITIAL = 2.0  # seconds before an event that could not be processed yet is tried again
RETRY_MAX = 600.0
STORE_RETRY = 1.0  # seconds before an event whose outcome could not be stored is tried again
STORE_RETRY_MAX = 15.0  # ...doubling while the same event keeps failing to be recorded
# How long a payment event that names no customer (Stripe invoice_payment.paid) waits
# for another event of the same payment to credit it, before it is failed.
CUSTOMER_HOLD = 7 * 86400.0
# How many times an event is decided again at once when another process recorded a
# decision for the same payment between its decision and its recording. After that it
# stays pending (a StoreError) and is tried again later.
DECIDE_TRIES = 8


@dataclass(frozen=True)
class ConnectorRuntime:
    config: ConnectorConfig
    connector: Connector


def retry_delay(attempts: int, initial: float = RETRY_INITIAL, maximum: float = RETRY_MAX) -> float:
    return float(min(maximum, initial * 2 ** min(attempts, 20)))


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
        metrics: Metrics | None = None,
        lease: float = 60.0,
        pressure: IngestPressure | None = None,
        assets: AssetPrecisions | None = None,
        retries: ProcessingConfig | None = None,
    ) -> None:
        self.store = store
        self.assets = assets  # every credit is cut to its asset's precision
        self.retries = retries or ProcessingConfig()
        # consecutive failures to record each event's outcome (the store's pause grows)
        self._store_failures: dict[int, int] = {}
        self.metrics = metrics
        self.pressure = pressure
        self.connectors = connectors
        self.resolver = resolver
        self.on_adjustments = on_adjustments
        # (environment, account) of the Credyt API key, once Credyt has named them; the
        # bridge sets it from its start-up key check. See `for_credyt`.
        self.credyt_target: Callable[[], tuple[str | None, str | None]] = lambda: (None, None)
        self._wake = asyncio.Event()
        self._stopping = False
        self._concurrency = concurrency
        self._batch = batch
        self.lease = lease  # how long a claimed event is hidden from other replicas
        self._in_flight: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # One lock per payment id: events of one payment are applied one after the other
        # (a cumulative refund or a `match: first` check reads what the last one recorded).
        self._payment_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """One task per due event, at most `concurrency` at once: a slow customer lookup
        holds up no other event."""
        while not self._stopping:
            self._wake.clear()
            free = self._concurrency - len(self._in_flight)
            limit = await self.pressure.admit() if self.pressure is not None else None
            if limit is not None:  # a burst of webhooks: leave the CPU to the receiver
                free = min(free, limit)
            started = 0
            if free > 0:
                due = await self._due_rows(free)
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

    async def _due_rows(self, free: int) -> list[InboxRow]:
        if isinstance(self.store, EventClaims):
            # A store shared by replicas: lease only what this one starts now; the other
            # replicas take the rest, and a crash hides nothing longer than the lease.
            try:
                return await self.store.claim_events(time.time(), free, self.lease)
            except StoreError as exc:  # e.g. a database failover: keep the worker, poll again
                log.warning("event_claim_failed", error=str(exc))
                await self._wait(1.0)
                return []
        return self.store.due_events(time.time(), min(self._batch, free + len(self._in_flight)))

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
        """Process one event; whatever goes wrong, it is tried again later, never at once.

        An exception nobody expected (a connector bug, date arithmetic...) is recorded
        like any other retry: the event stays `pending` with the error as its reason and
        a growing delay, and after `max_attempts` it ends `failed`. An outcome the store
        could not record keeps the event in flight for a growing pause (the store is
        down or refuses this event), so nothing spins on it either."""
        try:
            try:
                await self.handle(row)
            except StoreError:
                raise
            except Exception as exc:  # never let one event stop the processor
                log.exception(
                    "event_processing_crashed",
                    event_id=row.event_id,
                    connector=row.connector,
                    attempts=row.attempts + 1,
                )
                await self.record(row, self.crashed(row, exc))
            self._store_failures.pop(row.id, None)
        except StoreError as exc:  # e.g. a full disk: it stays pending, tried again later
            failures = self._store_failures[row.id] = self._store_failures.get(row.id, 0) + 1
            pause = min(STORE_RETRY_MAX, STORE_RETRY * 2 ** min(failures - 1, 10))
            log.warning(
                "event_record_failed",
                event_id=row.event_id,
                connector=row.connector,
                error=str(exc),
                retry_in=pause,
            )
            await asyncio.sleep(pause)  # held in flight meanwhile, so no busy loop
        except Exception:  # recording the crash itself failed: pause, as above
            log.exception(
                "event_processing_crashed", event_id=row.event_id, connector=row.connector
            )
            await asyncio.sleep(STORE_RETRY_MAX)
        finally:
            self._in_flight.discard(row.id)

    def crashed(self, row: InboxRow, exc: Exception) -> ProcessingResult:
        """What an exception nobody expected while processing `row` makes of it: a retry
        with the error as its reason, or `failed` once its attempts are spent."""
        return self._retry(row, f"processing crashed: {type(exc).__name__}: {exc}")

    def _retry(self, row: InboxRow, reason: str) -> ProcessingResult:
        """Try `row` again after a growing delay, or fail it once its attempts are spent.

        `row.attempts` counts every earlier try of the event (holds included); this one
        is attempt `row.attempts + 1`."""
        attempt = row.attempts + 1
        if attempt >= self.retries.max_attempts:
            return _failed(row, f"{reason} (gave up after {attempt} attempts)")
        return ProcessingResult(
            row.id,
            EventStatus.PENDING,
            f"{reason} (attempt {attempt} of {self.retries.max_attempts})",
            next_attempt_at=time.time()
            + retry_delay(row.attempts, self.retries.backoff_initial, self.retries.backoff_max),
        )

    async def handle(
        self,
        row: InboxRow,
        *,
        dry_run: bool = False,
        decided: Callable[[ProcessingResult], None] = lambda result: None,
    ) -> ProcessingResult:
        """Process one stored event and record the outcome (unless `dry_run`).

        The decision is made outside any lock (customer look-ups are network calls) and
        recorded in one write transaction that re-checks what it was based on. If another
        process (a replica, a CLI replay) decided for the same payment meanwhile, nothing
        is recorded and the event is decided again at once, from what that one recorded.
        `decided` sees each result before it is recorded."""
        for attempt in range(1, DECIDE_TRIES + 1):
            held: list[asyncio.Lock] = []
            try:
                result = await self.process(row, held=held)
                decided(result)
                if not dry_run:
                    await self.record(row, result)
                return result
            except DecisionConflictError as exc:
                log.info(
                    "event_decision_conflict",
                    event_id=row.event_id,
                    connector=row.connector,
                    attempt=attempt,
                    error=str(exc),
                )
                if attempt == DECIDE_TRIES:
                    raise
            finally:
                for lock in reversed(held):
                    lock.release()
        raise AssertionError("unreachable")

    async def record(self, row: InboxRow, result: ProcessingResult) -> int:
        """Record what `process` made of `row`; returns how many adjustments were new."""
        result = self.for_credyt(row, result)
        new = await self.store.record_processing(result, time.time())
        if self.metrics is not None:
            self.metrics.events_processed.labels(row.connector, result.status.value).inc()
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
        return new

    def for_credyt(self, row: InboxRow, result: ProcessingResult) -> ProcessingResult:
        """Mark each new adjustment with the Credyt environment and account it is for:
        the connector's `mode` when it is `live` or `test`, else the key's environment
        (None while unknown: any); the key's account when known."""
        if not result.adjustments:
            return result
        runtime = self.connectors.get(row.connector)
        mode = runtime.config.mode if runtime is not None else "any"
        environment, account = self.credyt_target()
        if mode in ("live", "test"):
            environment = mode
        return replace(
            result,
            adjustments=tuple(
                replace(a, credyt_environment=environment, credyt_account=account)
                for a in result.adjustments
            ),
        )

    async def process(
        self, row: InboxRow, *, held: list[asyncio.Lock] | None = None
    ) -> ProcessingResult:
        """What the current rules make of a stored event. Records nothing.

        `held` (from `handle`): lock the payment's ids until the caller has recorded the
        result, and append the locks taken for the caller to release."""
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
            if held is not None:
                await self._lock_payment(normalized, held)
            state = self._state_for(normalized)
            result = await self._apply_rules(row, normalized, runtime.config, state)
            return replace(
                result,
                payment_key=result.payment_key or normalized.payment_key,
                payment_ids=normalized.payment_ids,
                basis=state.basis,
            )
        except CredytUnavailableError as exc:
            return self._retry(row, f"Credyt unavailable for the customer lookup: {exc}")
        except EventError as exc:
            return _failed(row, str(exc))
        except (ValueError, KeyError, TypeError, AttributeError, ArithmeticError) as exc:
            return _failed(row, f"payload could not be read: {type(exc).__name__}: {exc}")

    async def _apply_rules(
        self, row: InboxRow, event: PaymentEvent, config: ConnectorConfig, state: PaymentState
    ) -> ProcessingResult:
        rules = matching_rules(event, config)
        if not rules:
            why = f"no rule of connector {config.name} matches this {event.event_type}"
            if event.kind is Kind.PAYMENT and event.amount_minor <= 0:
                why = f"payment {event.payment_key} paid nothing; {why} with a fixed amount"
            return ProcessingResult(row.id, EventStatus.IGNORED, why, payment_key=event.payment_key)
        if event.kind is Kind.PAYMENT:
            return await self._credit(row, event, config, rules, list(state.decided))
        covering = next(
            (r for r in config.rules if r.reverse and set(r.on) & set(event.covered_by)), None
        )
        if event.cumulative and covering is not None:
            return ProcessingResult(
                row.id,
                EventStatus.IGNORED,
                f"{event.event_type} reports refunds cumulatively and rule {covering.name} "
                f"debits them one by one ({', '.join(event.covered_by)}): not applied twice",
                payment_key=event.payment_key,
            )
        return await self._reverse(row, event, config, rules[0], list(state.decided))

    def _lock_keys(self, event: PaymentEvent) -> list[str]:
        return sorted({event.payment_key, *event.payment_ids})

    async def _lock_payment(self, event: PaymentEvent, held: list[asyncio.Lock]) -> None:
        """Events of one payment one after the other within this process: fewer decision
        conflicts. Across processes the recording transaction re-checks the decision."""
        for key in self._lock_keys(event):  # one order: no deadlock
            lock = self._payment_locks.get(key)
            if lock is None:
                lock = self._payment_locks[key] = asyncio.Lock()
            await lock.acquire()
            held.append(lock)

    def _state_for(self, event: PaymentEvent) -> PaymentState:
        """Every id of the event's payment (whichever arrived first) and what was ever
        decided for it: the never-pruned record, not the prunable outbox."""
        return self.store.payment_state(self._lock_keys(event))

    async def _credit(
        self,
        row: InboxRow,
        event: PaymentEvent,
        config: ConnectorConfig,
        rules: list[Rule],
        recorded: list[Decided],
    ) -> ProcessingResult:
        """Credit a payment once: per rule (`match: all`) or once in all (`match: first`),
        whichever of the payment's events and ids it arrives under."""
        credits = [a for a in recorded if a.kind == Kind.PAYMENT.value]
        if config.match == "first":
            undone = _undo_duplicates(row, event, config, rules[0], recorded)
            if undone is not None:
                return undone
            mine = build_credit(rules[0], event, config, "")
            other = [a for a in credits if a.transaction_id != mine.transaction_id]
            if other:
                return ProcessingResult(
                    row.id,
                    EventStatus.IGNORED,
                    f"payment already credited by rule {other[0].rule} as "
                    f"{other[0].payment_key} (match: first credits a payment once)",
                    payment_key=event.payment_key,
                )
        else:
            rules = [
                r
                for r in rules
                if not any(a.rule == r.name and a.payment_key != event.payment_key for a in credits)
            ]
            if not rules:
                return ProcessingResult(
                    row.id,
                    EventStatus.IGNORED,
                    f"every matching rule already credited this payment as "
                    f"{credits[0].payment_key}",
                    payment_key=event.payment_key,
                )
        if event.customer_hint or event.psp_customer_id or not event.customer_later:
            customer = await self.resolver.resolve(event, config.customer_metadata_key)
        elif credits:
            customer = credits[0].customer_id
        elif time.time() - row.received_at < CUSTOMER_HOLD:
            return _later(
                row,
                f"held: {event.event_type} names no customer; waiting for another event of "
                f"payment {event.payment_key} (e.g. invoice.paid) to credit it",
                payment_key=event.payment_key,
            )
        else:
            return _failed(
                row,
                f"{event.event_type} names no customer and no other event of payment "
                f"{event.payment_key} credited it within {CUSTOMER_HOLD:g}s",
            )
        precisions: dict[str, int | None] = {}
        for rule in rules:
            asset = credit_asset(rule, event)
            try:
                precisions[rule.name] = await self._precision(asset)
            except CredytUnavailableError as exc:
                return _later(row, f"Credyt unavailable for the precision of asset {asset}: {exc}")
        adjustments = tuple(
            build_credit(rule, event, config, customer, precision=precisions[rule.name])
            for rule in rules
        )
        return _processed(row, event, customer, adjustments)

    async def _precision(self, asset: str) -> int | None:
        """The asset's decimal places (None: no look-up configured, amounts as computed)."""
        return None if self.assets is None else await self.assets.precision(asset)

    async def _reverse(
        self,
        row: InboxRow,
        event: PaymentEvent,
        config: ConnectorConfig,
        rule: Rule,
        recorded: list[Decided],
    ) -> ProcessingResult:
        """A refund, chargeback or its reinstatement, against the payment's own credits.

        Keyed by the PSP's refund (adjustment, dispute) and the credit it reverses, never
        by a rule's name: whichever rule, connector or event of the refund arrives, what
        was already reversed for it counts, and a credit is never reversed past zero."""
        credits = [a for a in recorded if a.kind == Kind.PAYMENT.value]
        ref = _reference(event)
        if not event.cumulative and any(
            a.reversal_key == ref and a.original is None for a in recorded
        ):
            # Applied before the credit was known (unknown_original: debit): a replay or
            # a later event of the same refund must not apply it again.
            return ProcessingResult(
                row.id,
                EventStatus.IGNORED,
                f"{ref} was already applied before the bridge had a credit for payment "
                f"{event.payment_key}",
                payment_key=event.payment_key,
            )
        if not credits:
            return await self._reverse_unknown(row, event, config, rule, recorded)
        adjustments = []
        for credit in credits:
            adjustment = _reversal_of(credit, rule, event, config, recorded)
            if adjustment is not None:
                adjustments.append(adjustment)
        if not adjustments:
            return ProcessingResult(
                row.id,
                EventStatus.IGNORED,
                f"nothing left to reverse on this payment for {ref}",
                payment_key=event.payment_key,
            )
        return _processed(row, event, credits[0].customer_id, tuple(adjustments))

    async def _reverse_unknown(
        self,
        row: InboxRow,
        event: PaymentEvent,
        config: ConnectorConfig,
        rule: Rule,
        recorded: list[Decided],
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
        family = _family(event)
        minor = event.amount_minor
        if event.cumulative:  # only what earlier debits of the same kind did not take
            minor -= sum(
                _signed_minor(a) for a in recorded if a.original is None and a.family == family
            )
            if minor <= 0:
                return ProcessingResult(
                    row.id,
                    EventStatus.IGNORED,
                    f"{what}; {event.event_type} adds nothing to what was already applied",
                    payment_key=event.payment_key,
                )
        customer = await self.resolver.resolve(event, config.customer_metadata_key)
        sign = -1 if event.kind is Kind.REVERSAL else 1
        amount = proportional(event.amount, minor, event.amount_minor) * sign
        body = _reversal_body(rule, event, config, event.currency, "default", amount, None)
        adjustment = _new_reversal(
            body, rule, event, config, customer, event.currency, "default", amount, minor
        )
        return replace(
            _processed(row, event, customer, (adjustment,)),
            reason=f"{what}; rule {rule.name} {'debits' if sign < 0 else 'credits back'} "
            f"{event.currency} {abs(amount)} without it (unknown_original: debit)",
        )


def _undo_duplicates(
    row: InboxRow, event: PaymentEvent, config: ConnectorConfig, rule: Rule, recorded: list[Decided]
) -> ProcessingResult | None:
    """Two `match: first` credits in one payment: each was made under an id that nothing
    linked to the other yet (invoice.paid naming no PaymentIntent, then the marked
    payment_intent.succeeded), and this event's ids joined them. Every credit after the
    first is taken back in full (what refunds left of it), once: its key names it."""
    ours = [a for a in recorded if a.kind == Kind.PAYMENT.value and a.connector == config.name]
    adjustments = []
    for credit in ours[1:]:
        key = f"duplicate:{credit.transaction_id}"
        if any(a.reversal_key == key for a in recorded):
            continue
        taken = -sum(
            (Decimal(a.amount) for a in recorded if a.original == credit.transaction_id),
            Decimal(0),
        )
        amount = -(Decimal(credit.amount) - taken)
        if amount >= 0:
            continue
        metadata = adjustment_metadata(rule, event, config, {})
        metadata["original_transaction_id"] = credit.transaction_id
        metadata["duplicate_of"] = ours[0].transaction_id
        body: dict[str, Any] = {
            "transaction_id": transaction_id(event.psp, key, "reversal"),
            "account_name": credit.account,
            "asset": credit.asset,
            "amount": amount,
            "reason": "external_refund",
            "description": f"{PSP_TITLES.get(event.psp, event.psp)} payment "
            f"{credit.payment_key} credited twice: it is {ours[0].payment_key}",
            "metadata": metadata,
        }
        adjustments.append(
            NewAdjustment(
                transaction_id=body["transaction_id"],
                connector=config.name,
                rule=rule.name,
                kind=Kind.REVERSAL.value,
                payment_key=credit.payment_key,
                reversal_key=key,
                customer_id=credit.customer_id,
                asset=credit.asset,
                account=credit.account,
                amount=format_amount(amount),
                payment_amount_minor=credit.payment_amount_minor,
                body=encode_json(body),
                original=credit.transaction_id,
                reversed_minor=credit.payment_amount_minor,
                family="duplicate",
            )
        )
    if not adjustments:
        return None
    return replace(
        _processed(row, event, ours[0].customer_id, tuple(adjustments)),
        reason=f"payment {ours[0].payment_key} was credited again as "
        f"{', '.join(a.payment_key for a in ours[1:])} before {event.event_type} linked "
        "their ids: the later credit is taken back (match: first credits a payment once)",
    )


def _reference(event: PaymentEvent) -> str:
    """The PSP's own name for a reversal: refund, adjustment or dispute id."""
    return event.reversal_key or event.event_id


def _family(event: PaymentEvent) -> str:
    """What a cumulative count includes: refunds (charge.refunded) or disputes."""
    return "dispute" if "dispute" in event.object_ids else "refund"


def _signed_minor(a: Decided) -> int:
    """The PSP minor units a decided reversal took (+) or gave back (-)."""
    return a.reversed_minor if a.kind == Kind.REVERSAL.value else -a.reversed_minor


def _reversal_of(
    credit: Decided,
    rule: Rule,
    event: PaymentEvent,
    config: ConnectorConfig,
    recorded: list[Decided],
) -> NewAdjustment | None:
    """The debit (or credit back) of one original credit, in proportion to the PSP amount.

    Computed as a target, not an increment: everything reversed of this credit so far
    (under any key, rule or connector, and a debit made before the credit was known) is
    counted in PSP minor units, the new total is capped at the whole payment, and the
    debit is the credit's proportion of that total minus what was already taken. So
    reversals never add up to more than the credit, and the last full refund takes
    exactly what remains, in the credit's own decimal places."""
    ref = _reference(event)
    if not event.cumulative and any(
        a.reversal_key == ref and a.original == credit.transaction_id for a in recorded
    ):
        return None  # this refund already reversed this credit
    original = Decimal(credit.amount)
    whole = credit.payment_amount_minor
    mine = [a for a in recorded if a.original == credit.transaction_id]
    # Debits made before the bridge knew any credit count against the first credit in
    # their asset.
    first = next(
        (c for c in recorded if c.kind == Kind.PAYMENT.value and c.asset == credit.asset), None
    )
    unknown = [
        a
        for a in recorded
        if a.original is None
        and a.kind != Kind.PAYMENT.value
        and first is not None
        and first.transaction_id == credit.transaction_id
        and a.asset == credit.asset
    ]
    places = max(0, -event.amount.as_tuple().exponent)  # type: ignore[operator]
    taken = -sum((Decimal(a.amount) for a in mine), Decimal(0)) + sum(
        (proportional(original, _signed_minor(a), whole, places) for a in unknown), Decimal(0)
    )
    family = _family(event)
    counted = [*mine, *unknown]
    same = sum(_signed_minor(a) for a in counted if a.family == family)
    others = sum(_signed_minor(a) for a in counted if a.family != family)
    if event.kind is Kind.REVERSAL:
        after = event.amount_minor if event.cumulative else same + event.amount_minor
        if after <= same:
            return None
        target = proportional(original, max(0, min(whole, after + others)), whole, places)
        amount = -(target - taken)
        minor = after - same
        if amount >= 0:
            return None  # nothing new; never turn a reversal into its opposite
    else:  # a reinstatement may arrive before its reversal: that one then counts it
        amount = proportional(original, event.amount_minor, whole, places)
        minor = event.amount_minor
        if amount <= 0:
            return None
    body = _reversal_body(rule, event, config, credit.asset, credit.account, amount, credit)
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
        minor,
        original=credit,
    )


def _reversal_body(
    rule: Rule,
    event: PaymentEvent,
    config: ConnectorConfig,
    asset: str,
    account: str,
    amount: Decimal,
    original: Decided | None,
) -> dict[str, Any]:
    spec = rule.reverse
    assert spec is not None
    title = PSP_TITLES.get(event.psp, event.psp)
    what = "reversal" if event.kind is Kind.REVERSAL else "reinstatement"
    return {
        "transaction_id": transaction_id(event.psp, _reversal_key(event, original), "reversal"),
        "account_name": account,
        "asset": asset,
        "amount": amount,
        "reason": spec.reason,
        "description": spec.description
        or f"{title} {what} {event.reversal_key} of {event.payment_key}",
        "metadata": adjustment_metadata(rule, event, config, spec.metadata),
    }


def _reversal_key(event: PaymentEvent, original: Decided | None) -> str:
    """The PSP reversal (with the cumulative total it reached) and the credit it
    reverses: what happened at the PSP, never a config label."""
    base = _reference(event)
    if event.cumulative:
        base = f"{base}:{event.amount_minor}"
    return f"{base}:{original.transaction_id if original is not None else 'unknown'}"


def _new_reversal(
    body: dict[str, Any],
    rule: Rule,
    event: PaymentEvent,
    config: ConnectorConfig,
    customer: str,
    asset: str,
    account: str,
    amount: Decimal,
    minor: int,
    *,
    original: Decided | None = None,
) -> NewAdjustment:
    return NewAdjustment(
        transaction_id=body["transaction_id"],
        connector=config.name,
        rule=rule.name,
        kind=event.kind.value,
        payment_key=original.payment_key if original is not None else event.payment_key,
        reversal_key=_reference(event),
        customer_id=customer,
        asset=asset,
        account=account,
        amount=format_amount(amount),
        payment_amount_minor=event.amount_minor,
        body=encode_json(body),
        original=original.transaction_id if original is not None else None,
        reversed_minor=minor,
        family=_family(event),
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
