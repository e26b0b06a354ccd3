"""Injected failures: the settings a test or demo asks for, and their validation."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypedDict

from bridge.credyt.sandbox.wire import invalid

FAULT_GROUPS = frozenset({"adjustments", "customers", "wallet", "events", "accounts", "assets"})


class FaultSettings(TypedDict, total=False):
    """The keyword arguments of SandboxState.inject() and of POST /_sandbox/faults."""

    fail_next: int
    fail_status: int
    rate_limit_next: int
    retry_after: float | None
    delay: float
    drop_next: int
    only: str | None
    rate_limit: float | None


@dataclass
class Faults:
    """The injected failures still to fire; counters count down as they do."""

    fail_next: int = 0
    fail_status: int = 500
    rate_limit_next: int = 0
    retry_after: float | None = None
    delay: float = 0.0
    drop_next: int = 0
    only: str | None = None
    rate_limit: float | None = None  # requests/s above which requests are answered 429
    bucket: RequestBucket | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.rate_limit is not None and _is_seconds(self.rate_limit) and self.rate_limit > 0:
            self.bucket = RequestBucket(float(self.rate_limit))

    def settings(self) -> FaultSettings:
        """The settings as given (what GET /_sandbox/state shows), counters as they are."""
        return FaultSettings(
            fail_next=self.fail_next,
            fail_status=self.fail_status,
            rate_limit_next=self.rate_limit_next,
            retry_after=self.retry_after,
            delay=self.delay,
            drop_next=self.drop_next,
            only=self.only,
            rate_limit=self.rate_limit,
        )

    def applies_to(self, group: str) -> bool:
        return self.only is None or self.only == group


@dataclass(frozen=True, slots=True)
class FaultAction:
    """What the gate does with one admitted API request."""

    fail_status: int | None = None
    rate_limited: bool = False
    retry_after: float | None = None
    drop: bool = False


BURST_SECONDS = 0.25  # the sandbox's bucket holds this many seconds of its rate


class RequestBucket:
    """A token bucket: `rate` tokens a second, at most a quarter second's worth held."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate * BURST_SECONDS)
        self.tokens = self.capacity
        self._clock = clock
        self._at = clock()

    def take(self) -> float | None:
        """Take a token: None when there was one, else the seconds until there is."""
        now = self._clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._at) * self.rate)
        self._at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return (1.0 - self.tokens) / self.rate


def retry_after_for(wait: float) -> float:
    """Retry-After for a request over the rate: whole seconds, as APIs send it (>= 1)."""
    return float(max(1, math.ceil(wait)))


def check_faults(faults: Faults) -> None:
    counts = {
        "fail_next": faults.fail_next,
        "rate_limit_next": faults.rate_limit_next,
        "drop_next": faults.drop_next,
    }
    for name, count in counts.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise invalid(name, f"{name} must be a whole number, 0 or more.")
    if not isinstance(faults.fail_status, int) or not 100 <= faults.fail_status <= 599:
        raise invalid("fail_status", "fail_status must be an HTTP status code.")
    if not _is_seconds(faults.delay):
        raise invalid("delay", "delay must be a number of seconds, 0 or more.")
    if faults.retry_after is not None and not _is_seconds(faults.retry_after):
        raise invalid("retry_after", "retry_after must be a number of seconds, 0 or more.")
    if faults.rate_limit is not None and not (
        _is_seconds(faults.rate_limit) and 0 < faults.rate_limit <= 1_000_000
    ):
        raise invalid("rate_limit", "rate_limit must be a number of requests per second above 0.")
    if faults.only is not None and faults.only not in FAULT_GROUPS:
        raise invalid("only", f"only must be one of: {', '.join(sorted(FAULT_GROUPS))}.")


def _is_seconds(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def seconds_text(seconds: float) -> str:
    """Retry-After text: whole seconds as an integer, anything finer as a decimal."""
    return str(int(seconds)) if seconds == int(seconds) else str(seconds)
