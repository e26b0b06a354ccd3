"""The deliverer: claims due outbox rows and sends them to Credyt, with retries.

An async worker with a concurrency limit over one pooled httpx client. It wakes as
soon as the processor records work (and polls once a second for rows another process
put back), so delivery follows receipt within milliseconds.

A 409 is confirmed, not assumed: the deliverer reads the transaction back
(`GET /customers/{id}/wallet/transactions/{transaction_id}`). Same asset and amount:
`delivered` (already existed). None under that id: the 409 was about something else, so
the row is tried again with backoff (the attempt counts). A different one: a real
conflict under one transaction id; the row goes `dead` with both versions in its error,
and `bridge_adjustment_conflicts` counts it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

import structlog

from bridge.credyt.client import AccountContext, CredytClient, Delivered
from bridge.delivery.breaker import CircuitBreaker
from bridge.delivery.limiter import CredytRateLimiter
from bridge.delivery.retry import RetryPolicy
from bridge.errors import CredytError, CredytUnavailableError, StoreError
from bridge.metrics import Metrics
from bridge.pressure import IngestPressure
from bridge.storage.records import AdjustmentStatus, DeliveryOutcome, OutboxRow
from bridge.storage.store import Store

log = structlog.get_logger("bridge.delivery.deliverer")

POLL_SECONDS = 1.0
RATE_HORIZON = 2.0  # seconds of the allowed rate claimed ahead (leases stay far off)
KEY_WAIT = 5.0  # seconds a row for a named environment waits for the key check again


class Deliverer:
    def __init__(
        self,
        store: Store,
        client: CredytClient,
        policy: RetryPolicy,
        *,
        metrics: Metrics | None = None,
        concurrency: int = 32,
        lease: float = 60.0,
        breaker: CircuitBreaker | None = None,
        pressure: IngestPressure | None = None,
        environment: Callable[[], AccountContext | None] | None = None,
        tenants: frozenset[str] = frozenset(),
        limiter: CredytRateLimiter | None = None,
    ) -> None:
        # Credyt's rate limit, shared with the client that waits on it: the deliverer
        # claims no more than it may send soon, nothing while Retry-After pauses it, and
        # a 429 puts the row back uncounted. None: 429s are retried like any failure.
        self.limiter = limiter
        # Credyt accounts the config acts for (Credyt for Platforms): a row recorded for
        # one of them is sent with X-CREDYT-ACCOUNT naming it, whatever the key's own.
        self.tenants = tenants
        # The Credyt account and environment the API key is for, None until Credyt has
        # accepted the key. A row queued for another environment or account is never
        # sent; one queued for a named environment waits until the key's is known.
        self.environment = environment
        self.metrics = metrics or Metrics()
        self.pressure = pressure
        self.store = store
        self.client = client
        self.policy = policy
        self.concurrency = concurrency
        self.lease = lease
        self.breaker = breaker or CircuitBreaker()
        self.breaker.on_change = self._breaker_changed
        self.metrics.breaker_open.set(0)
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._rows: dict[asyncio.Task[None], int] = {}  # task -> the outbox row it delivers
        self._claim_batch = max(1, concurrency // 4)

    def wake(self) -> None:
        self._wake.set()

    def _breaker_changed(self, is_open: bool) -> None:
        self.metrics.breaker_open.set(int(is_open))
        if not is_open and self.limiter is not None:
            self.limiter.restart()  # an outage ended: ramp up, do not burst

    async def run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            free = self.concurrency - len(self._tasks)
            limit = await self.pressure.admit() if self.pressure is not None else None
            if limit is not None:  # a burst of webhooks: leave the CPU to the receiver
                free = min(free, limit)
            allowed = self.breaker.allowed()  # None while closed; open: 0, or 1 probe
            if allowed is not None:
                free = min(free, allowed)
                if free == 0:  # open: wait for the probe time; rows stay pending
                    wait = min(POLL_SECONDS, self.breaker.seconds_to_probe())
                    await self._wait(max(0.005, wait))
                    continue
            limiter = self.limiter
            room = limiter.claimable(RATE_HORIZON, len(self._tasks)) if limiter else None
            rate_bound = room is not None and room < free
            if limiter is not None and room is not None and rate_bound:
                if room == 0:  # paused by Retry-After, or the queue holds enough
                    await self._wait(max(0.005, min(POLL_SECONDS, limiter.retry_in())))
                    continue
                free = room
            claimed = 0
            if 0 < free < self._claim_batch and self._tasks and allowed is None and not rate_bound:
                # A claim is a committed write: take rows in batches, not one per slot
                # as each delivery finishes (that fsync-bound the drain at ~600/s).
                await self._wait(POLL_SECONDS)
                continue
            if free > 0:
                rows = await self._claim(free)
                claimed = len(rows)
                probe = allowed is not None
                if probe:
                    if rows:
                        self.breaker.start_probe()
                    else:
                        self.breaker.cancel_probe()
                for row in rows:
                    task = asyncio.create_task(self._deliver(row, probe=probe))
                    self._tasks.add(task)
                    self._rows[task] = row.id
                    task.add_done_callback(self._done)
            if claimed and claimed == free:
                await self._wait(POLL_SECONDS)  # full: the next free slot wakes us
            elif not claimed:
                due = self.store.next_adjustment_due()
                wait = (
                    POLL_SECONDS
                    if due is None
                    else min(POLL_SECONDS, max(0.005, due - time.time()))
                )
                await self._wait(wait)

    async def _claim(self, free: int) -> list[OutboxRow]:
        try:
            return await self.store.claim_adjustments(time.time(), free, self.lease)
        except StoreError as exc:  # e.g. a database failover: keep the worker, poll again
            log.warning("delivery_claim_failed", error=str(exc))
            await self._wait(POLL_SECONDS)
            return []

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; let in-flight deliveries finish for up to `grace` seconds."""
        self._stopping = True
        self._wake.set()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            unfinished = [self._rows[task] for task in pending]
            for task in pending:
                task.cancel()
            if unfinished:
                # Hand the rows back now rather than when their leases run out, so a
                # restart (or another replica) sends them at once. A cut-off request may
                # have reached Credyt: the resend carries the same transaction id.
                try:
                    await self.store.release_adjustments(unfinished)
                except StoreError as exc:
                    log.warning("delivery_release_failed", rows=len(unfinished), error=str(exc))
                log.info("delivery_stopped_with_rows_pending", rows=len(unfinished))

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._rows.pop(task, None)
        self._wake.set()

    async def _wait(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            pass

    async def _deliver(self, row: OutboxRow, *, probe: bool = False) -> None:
        bound = log.bind(
            connector=row.connector, transaction_id=row.transaction_id, attempt=row.attempts + 1
        )
        started = time.time()
        clock = time.perf_counter()
        if probe and (self._target_unknown(row) or self._wrong_target(row) is not None):
            self.breaker.cancel_probe()  # this row is not sent, so it proves nothing
        if self._target_unknown(row):
            outcome = DeliveryOutcome(
                row.id,
                AdjustmentStatus.PENDING,
                started,
                _ms(clock),
                next_attempt_at=started + KEY_WAIT,
                error=f"waiting: queued for Credyt {row.credyt_environment or 'any'} "
                "environment; Credyt has not yet confirmed which environment the API key "
                "is for",
                counted=False,
            )
            if await self._record(outcome, bound):
                self._observe(row, outcome)
            return
        elsewhere = self._wrong_target(row)
        if elsewhere is not None:
            bound.error(
                "delivery_wrong_environment",
                credyt_environment=row.credyt_environment,
                credyt_account=row.credyt_account,
                error=elsewhere,
            )
            outcome = DeliveryOutcome(
                row.id, AdjustmentStatus.DEAD, started, _ms(clock), error=elsewhere
            )
            if await self._record(outcome, bound):
                self._observe(row, outcome)
            return
        conflict: DeliveryOutcome | None = None
        try:
            answer = await self.client.create_adjustment(
                row.customer_id, row.body, account=self.acting_for(row)
            )
            if answer.already_existed:
                conflict = await self._confirm(row, answer, started, clock, bound)
        except CredytUnavailableError as exc:
            if exc.status_code == 429 and self.limiter is not None:
                self.breaker.record_success()  # Credyt is up; the limiter slows down
                outcome = self._rate_limited(row, started, clock, exc)
                retry_in = round((outcome.next_attempt_at or started) - started, 3)
                bound.warning("delivery_rate_limited", status_code=429, retry_in=retry_in)
            elif probe:
                self.breaker.record_failure(exc.retry_after, probe=True)
                outcome = self._probe_failed(row, started, clock, exc)
                bound.warning("delivery_probe_failed", status_code=exc.status_code, error=str(exc))
            else:
                self.breaker.record_failure(exc.retry_after)
                outcome = self._retry_or_die(row, started, clock, exc)
                if outcome.status is AdjustmentStatus.DEAD:
                    bound.error("delivery_dead", status_code=exc.status_code, error=str(exc))
                else:
                    bound.warning(
                        "delivery_retry_scheduled",
                        status_code=exc.status_code,
                        error=str(exc),
                        retry_in=round((outcome.next_attempt_at or started) - started, 3),
                    )
        except CredytError as exc:
            self.breaker.record_success()  # Credyt is up: it read the request and refused it
            outcome = DeliveryOutcome(
                row.id,
                AdjustmentStatus.DEAD,
                started,
                _ms(clock),
                status_code=exc.status_code,
                error=str(exc),
            )
            bound.error("delivery_refused", status_code=exc.status_code, error=str(exc))
        else:
            self.breaker.record_success()
            if answer.already_existed and conflict is not None:
                outcome = conflict
            else:
                outcome = DeliveryOutcome(
                    row.id,
                    AdjustmentStatus.DELIVERED,
                    started,
                    _ms(clock),
                    status_code=answer.status_code,
                    error=answer.body if answer.already_existed else None,
                )
                bound.info(
                    "delivery_succeeded",
                    status_code=answer.status_code,
                    already_existed=answer.already_existed,
                )
        if await self._record(outcome, bound):
            self._observe(row, outcome)

    def acting_for(self, row: OutboxRow) -> str | None:
        """The connected Credyt account `row` is sent for, None: the key's own."""
        return row.credyt_account if row.credyt_account in self.tenants else None

    def _target_unknown(self, row: OutboxRow) -> bool:
        """A row for a named environment or account, while the key's is not known."""
        if self.environment is None or self.environment() is not None:
            return False
        return row.credyt_environment is not None or row.credyt_account is not None

    def _wrong_target(self, row: OutboxRow) -> str | None:
        """Why `row` must not go to the Credyt the key is for, or None."""
        account = self.environment() if self.environment is not None else None
        if account is None:
            return None
        wrong_environment = row.credyt_environment not in (None, account.environment)
        wrong_account = row.credyt_account not in (None, account.account_id, *self.tenants)
        if not (wrong_environment or wrong_account):
            return None
        queued_for = f"Credyt {row.credyt_environment or 'any'} environment" + (
            f" (account {row.credyt_account})" if row.credyt_account else ""
        )
        return (
            f"held, not sent: queued for {queued_for}, but the API key is for the "
            f"{account.environment} environment (account {account.account_id}). Run with "
            "a key for that environment and account, then `credyt-bridge outbox retry`"
        )

    async def _confirm(
        self,
        row: OutboxRow,
        answer: Delivered,
        started: float,
        clock: float,
        bound: structlog.BoundLogger,
    ) -> DeliveryOutcome | None:
        """Read a 409's transaction back. None: Credyt holds this very adjustment (it is
        delivered); otherwise the outcome for a missing or a different one."""
        recorded = await self.client.get_transaction(
            row.customer_id, row.transaction_id, account=self.acting_for(row)
        )
        if recorded is None:
            unconfirmed = CredytUnavailableError(
                f"Credyt answered 409 but holds no transaction {row.transaction_id} for "
                f"customer {row.customer_id}; not counted as delivered: {answer.body}",
                status_code=409,
            )
            outcome = self._retry_or_die(row, started, clock, unconfirmed)
            bound.warning(
                "delivery_conflict_unconfirmed",
                status_code=409,
                status=outcome.status.value,
                retry_in=None
                if outcome.next_attempt_at is None
                else round(outcome.next_attempt_at - started, 3),
            )
            return outcome
        if recorded.asset == row.asset and _same_amount(row.amount, recorded.amount):
            return None
        self.metrics.adjustment_conflicts.inc()
        error = (
            f"conflict: Credyt holds a different adjustment under transaction_id "
            f"{row.transaction_id}. Credyt has {recorded.asset} {recorded.amount} "
            f"({recorded.body}); the bridge meant {row.asset} {row.amount} ({row.body})"
        )
        bound.error(
            "delivery_conflict",
            status_code=409,
            credyt_asset=recorded.asset,
            credyt_amount=str(recorded.amount),
            asset=row.asset,
            amount=row.amount,
        )
        return DeliveryOutcome(
            row.id, AdjustmentStatus.DEAD, started, _ms(clock), status_code=409, error=error
        )

    async def _record(self, outcome: DeliveryOutcome, bound: structlog.BoundLogger) -> bool:
        """Record an outcome, retrying while the store can not write (a full disk...).

        Gives up when half the lease is gone: the row is then claimed and sent again, and
        Credyt answers 409 for what it already has."""
        deadline = time.monotonic() + self.lease / 2
        wait = 0.1
        while True:
            try:
                await self.store.record_delivery(outcome)
                return True
            except StoreError as exc:
                if self._stopping or time.monotonic() + wait > deadline:
                    bound.error("delivery_record_failed", error=str(exc))
                    return False
                bound.warning("delivery_record_retry", error=str(exc), retry_in=wait)
                await asyncio.sleep(wait)
                wait = min(2 * wait, 2.0)

    def _observe(self, row: OutboxRow, outcome: DeliveryOutcome) -> None:
        if outcome.status is AdjustmentStatus.DELIVERED:
            already = outcome.status_code == 409
            self.metrics.deliveries.labels("already_existed" if already else "delivered").inc()
            if row.received_at is not None:
                self.metrics.receive_to_delivered.observe(time.time() - row.received_at)
            if not already:
                amount = float(row.amount)  # a monitoring figure; the ledger stays Decimal
                direction = "credit" if amount >= 0 else "debit"
                labels = (row.asset, direction, *self.metrics.account_labels(row.credyt_account))
                self.metrics.adjusted.labels(*labels).inc(abs(amount))
        elif outcome.status is AdjustmentStatus.DEAD:
            self.metrics.deliveries.labels("dead").inc()
        else:
            self.metrics.deliveries.labels("retry").inc()

    def _probe_failed(
        self, row: OutboxRow, started: float, clock: float, exc: CredytUnavailableError
    ) -> DeliveryOutcome:
        """A failed breaker probe: the row stays pending, due at the next probe time,
        and the attempt is recorded without counting against max_attempts."""
        return DeliveryOutcome(
            row.id,
            AdjustmentStatus.PENDING,
            started,
            _ms(clock),
            next_attempt_at=started + self.breaker.seconds_to_probe(),
            status_code=exc.status_code,
            error=f"breaker probe: {exc}",
            counted=False,
        )

    def _rate_limited(
        self, row: OutboxRow, started: float, clock: float, exc: CredytUnavailableError
    ) -> DeliveryOutcome:
        """A 429 is Credyt's pace, not the row's fault: pending again once the limiter
        lets requests go, without counting against max_attempts (max_age still holds)."""
        assert self.limiter is not None
        next_at = time.time() + self.limiter.retry_in()
        if next_at - row.queued_at > self.policy.max_age:
            return self._retry_or_die(row, started, clock, exc)
        return DeliveryOutcome(
            row.id,
            AdjustmentStatus.PENDING,
            started,
            _ms(clock),
            next_attempt_at=next_at,
            status_code=429,
            error=f"rate limited: {exc}",
            counted=False,
        )

    def _retry_or_die(
        self, row: OutboxRow, started: float, clock: float, exc: CredytUnavailableError
    ) -> DeliveryOutcome:
        delay = self.policy.decide(
            row.attempts + 1, started - row.queued_at, exc.retry_after, random.random()
        )
        if delay is None:
            status, next_at = AdjustmentStatus.DEAD, None
            error = f"gave up after {row.attempts + 1} attempts: {exc}"
        else:
            status, next_at, error = AdjustmentStatus.PENDING, started + delay, str(exc)
        return DeliveryOutcome(
            row.id,
            status,
            started,
            _ms(clock),
            next_attempt_at=next_at,
            status_code=exc.status_code,
            error=error,
        )


def _same_amount(meant: str, recorded: Decimal) -> bool:
    try:
        return Decimal(meant) == recorded
    except InvalidOperation:
        return False


def _ms(clock: float) -> float:
    return round((time.perf_counter() - clock) * 1000, 3)
