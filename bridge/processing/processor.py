"""The processor: stored webhooks -> normalized events -> rules -> outbox rows.

Runs after the PSP has had its answer. Each due inbox event is normalized by its
connector, matched against the connector's rules, given a customer, and recorded with
its adjustments in ONE transaction. Every event ends `processed`, `ignored` (with
why), `failed` (with why), or stays `pending` with a reason and a time to try again
(Credyt unreachable for a customer lookup, a refund waiting for its payment's credit).

A stored row goes one way: this worker loop claims it, locks its payment and reads
what was decided for it; `rules` decides a payment's credits and `reversals` a
refund's debits (both ask `customers` whose payment it is); the outcome (`outcomes`)
is recorded here. Events that could not be processed yet are retried by a
`RetryPolicy` from the `processing:` config.
"""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import structlog

from bridge.config.schema import ConnectorConfig, ProcessingConfig
from bridge.credyt.assets import AssetPrecisions
from bridge.delivery.retry import RetryPolicy
from bridge.errors import CredytUnavailableError, DecisionConflictError, EventError, StoreError
from bridge.events import Ignored, Kind, PaymentEvent, Waiting
from bridge.metrics import Metrics
from bridge.pressure import IngestPressure
from bridge.processing.customers import CustomerResolver
from bridge.processing.duplicates import take_back_duplicates
from bridge.processing.limits import AmountLimits, reversible
from bridge.processing.outcomes import failed, ignored, later
from bridge.processing.reversals import reverse_payment
from bridge.processing.rules import credit_payment, matching_rules
from bridge.processing.tenants import (
    Unmapped,
    credyt_account_for,
    for_credyt_target,
    in_account,
)
from bridge.storage.records import EventStatus, InboxRow, PaymentState, ProcessingResult
from bridge.storage.store import EventClaims, Store
from connectors import Connector

log = structlog.get_logger("bridge.processing.processor")

# The pause before an event whose outcome could not be stored is tried again: 1 s,
# doubling while the same event keeps failing to be recorded, at most 15 s.
STORE_RETRY = RetryPolicy(initial=1.0, maximum=15.0, jitter=0.0)
# How many times an event is decided again at once when another process recorded a
# decision for the same payment between its decision and its recording. After that it
# stays pending (a StoreError) and is tried again later.
DECIDE_TRIES = 8


@dataclass(frozen=True)
class ConnectorRuntime:
    config: ConnectorConfig
    connector: Connector


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
        limits: AmountLimits | None = None,
    ) -> None:
        self.store = store
        self.limits = limits  # credits over an amount limit are held for an operator
        self.assets = assets  # every credit is cut to its asset's precision
        # when an event that could not be processed yet is tried again, and given up
        self.retry = RetryPolicy.for_processing(retries or ProcessingConfig())
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
                await self.handle(row, guess_new=True)
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
            pause = STORE_RETRY.backoff(failures)
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
            await asyncio.sleep(STORE_RETRY.maximum)
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
        delay = self.retry.decide(attempt, 0.0)
        if delay is None:
            return failed(row, f"{reason} (gave up after {attempt} attempts)")
        return ProcessingResult(
            row.id,
            EventStatus.PENDING,
            f"{reason} (attempt {attempt} of {self.retry.max_attempts})",
            next_attempt_at=time.time() + delay,
        )

    async def handle(
        self,
        row: InboxRow,
        *,
        dry_run: bool = False,
        decided: Callable[[ProcessingResult], None] = lambda result: None,
        guess_new: bool = False,
    ) -> ProcessingResult:
        """Process one stored event and record the outcome (unless `dry_run`).

        The decision is made outside any lock (customer look-ups are network calls) and
        recorded in one write transaction that re-checks what it was based on. If another
        process (a replica, a CLI replay) decided for the same payment meanwhile, nothing
        is recorded and the event is decided again at once, from what that one recorded.
        `decided` sees each result before it is recorded.

        `guess_new` (the worker): decide a payment as new without reading its state (a
        read after each write costs SQLite a fresh page cache); the re-check refuses the
        guess for a known payment, decided again from its state: no conflict, no attempt."""
        guess = guess_new and not dry_run
        attempt = 1
        while True:
            held: list[asyncio.Lock] = []
            guessed: list[bool] | None = [] if guess else None
            try:
                result = await self.process(row, held=held, guessed=guessed)
                decided(result)
                if not dry_run:
                    await self.record(row, result)
                return result
            except DecisionConflictError as exc:
                if guessed:  # the payment was known after all: decide from its state
                    guess = False
                    continue
                log.info(
                    "event_decision_conflict",
                    event_id=row.event_id,
                    connector=row.connector,
                    attempt=attempt,
                    error=str(exc),
                )
                if attempt == DECIDE_TRIES:
                    raise
                attempt += 1
            finally:
                for lock in reversed(held):
                    lock.release()

    async def record(self, row: InboxRow, result: ProcessingResult) -> int:
        """Record what `process` made of `row`; returns how many adjustments were new."""
        result = self.for_credyt(row, result)
        if self.limits is not None:
            result = self.limits.hold(result)
        new = await self.store.record_processing(result, time.time())
        if new and self.limits is not None:
            self.limits.held(result, row.connector, row.event_id)
        if self.metrics is not None:
            self.metrics.events_processed.labels(row.connector, result.status.value).inc()
        log.info(
            "event_" + result.status.value,
            connector=row.connector,
            event_id=row.event_id,
            event_type=row.event_type,
            reason=result.reason,
            adjustments=sum(a.deliver for a in result.adjustments),
            new_adjustments=new,
        )
        if new:
            self.on_adjustments()
        return new

    def for_credyt(self, row: InboxRow, result: ProcessingResult) -> ProcessingResult:
        """Mark each new adjustment with the Credyt environment and account it is for
        (see `tenants.for_credyt_target`)."""
        if not result.adjustments:
            return result
        runtime = self.connectors.get(row.connector)
        mode = runtime.config.mode if runtime is not None else "any"
        return for_credyt_target(result, mode, *self.credyt_target())

    async def process(
        self,
        row: InboxRow,
        *,
        held: list[asyncio.Lock] | None = None,
        guessed: list[bool] | None = None,
    ) -> ProcessingResult:
        """What the current rules make of a stored event. Records nothing.

        `held` (from `handle`): lock the payment's ids until the caller has recorded the
        result, and append the locks taken for the caller to release. `guessed` (from
        `handle`): decide a payment as new without reading its state, appending True."""
        runtime = self.connectors.get(row.connector)
        if runtime is None:
            return failed(row, f"connector {row.connector!r} is not in the config any more")
        try:
            raw = json.loads(row.body or b"{}")
            normalized = runtime.connector.normalize(raw)
            if isinstance(normalized, Ignored):
                return ignored(row, normalized.reason)
            if isinstance(normalized, Waiting):
                return later(row, normalized.reason)
            account = credyt_account_for(normalized, runtime.config)
            if isinstance(account, Unmapped):
                if account.ignore:
                    return ignored(row, account.reason)
                return failed(row, account.reason)
            normalized = in_account(normalized, account)
            if held is not None:
                await self._lock_payment(normalized, held)
            if guessed is not None and normalized.kind is Kind.PAYMENT:
                # what a read finds for a payment never seen: its own ids, nothing decided
                state = PaymentState(tuple(self._lock_keys(normalized)), ())
                guessed.append(True)
            else:
                state = self._state_for(normalized)
            result = await self._apply_rules(row, normalized, runtime.config, state)
            if account is not None:
                result = replace(
                    result,
                    adjustments=tuple(
                        replace(a, credyt_account=account) for a in result.adjustments
                    ),
                )
            return replace(
                result,
                payment_key=result.payment_key or normalized.payment_key,
                payment_ids=normalized.payment_ids,
                basis=state.basis,
            )
        except CredytUnavailableError as exc:
            return self._retry(row, f"Credyt unavailable for the customer lookup: {exc}")
        except EventError as exc:
            return failed(row, str(exc))
        except (ValueError, KeyError, TypeError, AttributeError, ArithmeticError) as exc:
            return failed(row, f"payload could not be read: {type(exc).__name__}: {exc}")

    async def _apply_rules(
        self, row: InboxRow, event: PaymentEvent, config: ConnectorConfig, state: PaymentState
    ) -> ProcessingResult:
        """The matching rules, then a payment's credits or a refund's reversals, decided
        against what was already decided for the payment (`state`)."""
        rules = matching_rules(event, config)
        if not rules:
            why = f"no rule of connector {config.name} matches this {event.event_type}"
            if event.kind is Kind.PAYMENT and event.amount_minor <= 0:
                why = f"payment {event.payment_key} paid nothing; {why} with a fixed amount"
            return ignored(row, why, payment_key=event.payment_key)
        recorded = list(state.decided)
        if event.kind is not Kind.PAYMENT:
            kept = reversible(self.store, row, event.event_type, event.payment_key, recorded)
            if isinstance(kept, ProcessingResult):  # a credit held, or every one rejected
                return kept
            return await reverse_payment(row, event, config, rules, kept, self.resolver)
        if config.match == "first":
            undone = take_back_duplicates(row, event, config, rules[0], recorded)
            if undone is not None:
                return undone
        return await credit_payment(row, event, config, rules, recorded, self.resolver, self.assets)

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
