"""A circuit breaker for the deliverer: stop hammering a Credyt that is down.

    closed     every due row is sent; `threshold` failures in a row open it
    open       nothing is sent until `probe_at`; then ONE row goes as a probe
    probing    that one probe is in flight: success closes the breaker, failure
               opens it again with a doubled cooldown (up to `cooldown_max`)

A failure is "Credyt unavailable" (network error, timeout, 408/425/429/5xx, 401/403);
any answer that shows Credyt is up and reading requests (2xx, 409, other 4xx) is a
success. Attempts made while the breaker is not closed do not count against a row's
`max_attempts`: the rows simply stay pending until Credyt is back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

import structlog

log = structlog.get_logger("bridge.delivery.breaker")


class BreakerState(StrEnum):
    CLOSED = "closed"  # deliveries flow
    OPEN = "open"  # waiting for the cooldown to pass
    PROBING = "probing"  # one probe in flight decides


class CircuitBreaker:
    def __init__(
        self,
        *,
        threshold: int = 5,
        cooldown: float = 1.0,
        cooldown_max: float = 30.0,
        probe_timeout: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] = lambda _open: None,
    ) -> None:
        if threshold < 1:
            raise ValueError("threshold must be 1 or more")
        self.threshold = threshold
        self.cooldown_initial = cooldown
        self.cooldown_max = cooldown_max
        self.probe_timeout = probe_timeout  # a probe never settled by then is given up
        self._clock = clock
        self.on_change = on_change  # told True on opening, False on closing
        self.state = BreakerState.CLOSED
        self.failures = 0  # consecutive failures while closed
        self.cooldown = cooldown
        self.probe_at = 0.0  # clock time from which a probe may go (state OPEN)
        self.probe_started = 0.0
        self.opened = 0  # how many times it opened, for tests and the log

    @property
    def closed(self) -> bool:
        return self.state is BreakerState.CLOSED

    def allowed(self) -> int | None:
        """How many requests may start now: None for no limit, else 0 or 1."""
        if self.state is BreakerState.CLOSED:
            return None
        now = self._clock()
        if self.state is BreakerState.PROBING and now - self.probe_started > self.probe_timeout:
            self.state = BreakerState.OPEN  # the probe was lost (cancelled, crashed)
        if self.state is BreakerState.OPEN and now >= self.probe_at:
            return 1
        return 0

    def seconds_to_probe(self) -> float:
        return max(0.0, self.probe_at - self._clock())

    def start_probe(self) -> None:
        """The deliverer sends the one probe the breaker allowed."""
        self.state = BreakerState.PROBING
        self.probe_started = self._clock()
        log.info("breaker_probing", cooldown=self.cooldown)

    def cancel_probe(self) -> None:
        """The probe never went (no row was due): stay open, probe again when one is."""
        if self.state is BreakerState.PROBING:
            self.state = BreakerState.OPEN

    def record_success(self) -> None:
        self.failures = 0
        if self.state is not BreakerState.CLOSED:
            self.state = BreakerState.CLOSED
            self.cooldown = self.cooldown_initial
            log.info("breaker_closed", opened_times=self.opened)
            self.on_change(False)

    def record_failure(self, retry_after: float | None = None, *, probe: bool = False) -> None:
        if self.state is BreakerState.CLOSED:
            self.failures += 1
            if self.failures >= self.threshold:
                self._open(retry_after, reason="failures")
        elif probe and self.state is BreakerState.PROBING:
            self.cooldown = min(self.cooldown_max, self.cooldown * 2)
            self._open(retry_after, reason="probe_failed")
        # A failure of a request sent before the breaker opened changes nothing.

    def _open(self, retry_after: float | None, *, reason: str) -> None:
        wait = max(self.cooldown, min(retry_after or 0.0, self.cooldown_max))
        was_closed = self.state is BreakerState.CLOSED
        self.state = BreakerState.OPEN
        self.probe_at = self._clock() + wait
        if was_closed:
            self.opened += 1
            log.warning(
                "breaker_opened",
                reason=reason,
                failures=self.failures,
                probe_in=round(wait, 3),
            )
            self.on_change(True)
        else:
            log.warning("breaker_reopened", reason=reason, probe_in=round(wait, 3))
