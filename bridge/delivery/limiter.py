"""Credyt's rate limit, kept by the bridge: one token bucket for every Credyt request.

Every request the Credyt client sends (adjustments, their 409 read-backs, customer
look-ups, asset precisions, the key check) takes a send slot here first, so all the
deliverer's slots and the processor's look-ups share one allowed rate. Credyt's limit
is per account, so `credyt.max_rate` is per process: with several replicas, give each
`max_rate / replicas`.

The allowed rate follows AIMD (additive increase, multiplicative decrease), as TCP does:

    start      `max_rate`, or no limit when it is unset
    429        the rate drops to `decrease` x what it was (unset: x what was being
               achieved over the last seconds), at most once per round of requests:
               a 429 for a request sent before the last drop changes nothing more
    Retry-After  every request waits until then (capped at `pause_max`; a value that
               is not a number of seconds or an HTTP date is ignored)
    success    the rate grows by 5% of `max_rate` (unset: of the rate before the last
               429) every second, up to `max_rate`
    recovery   after the breaker closes (an outage ended), the rate starts at
               `decrease` x its last value and grows again, so a drained backlog
               does not meet a burst of 429s

The bucket lets a request through when its theoretical send time has come (GCRA,
"virtual scheduling"); `BURST_SECONDS` of slack lets a late event loop catch up, so the
long-run rate stays the allowed one. Waiters queue in order behind one lock: only the
first sleeps, so a deep backlog costs one timer, not one per delivery slot.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger("bridge.delivery.limiter")

BURST_SECONDS = 0.05  # how far behind schedule the bucket lets requests catch up
ACHIEVED_WINDOW = 2.0  # seconds of sends the achieved rate is measured over
PAUSE_MAX = 60.0  # no Retry-After stops every delivery for longer than this
MIN_RATE = 1.0  # requests/s: the allowed rate never drops below this
DECREASE = 0.7  # a 429 keeps this share of the rate
INCREASE_SHARE = 0.05  # each second without a 429 adds this share of the reference rate


class CredytRateLimiter:
    """The allowed rate of Credyt requests for this process, and the wait for a slot."""

    def __init__(
        self,
        max_rate: float | None = None,
        *,
        decrease: float = DECREASE,
        min_rate: float = MIN_RATE,
        pause_max: float = PAUSE_MAX,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_rate_limited: Callable[[], None] = lambda: None,
    ) -> None:
        if max_rate is not None and not max_rate > 0:
            raise ValueError("max_rate must be above 0")
        if not 0 < decrease < 1:
            raise ValueError("decrease must be between 0 and 1")
        self.max_rate = max_rate
        self.rate: float | None = max_rate  # None: no limit (until a 429 sets one)
        self.decrease = decrease
        self.min_rate = min_rate if max_rate is None else min(min_rate, max_rate)
        self.pause_max = pause_max
        self.rate_limited = 0  # 429s seen
        self.paused_until = 0.0  # clock time before which nothing is sent (Retry-After)
        self._clock = clock
        self._sleep = sleep
        self._on_rate_limited = on_rate_limited
        self._reference = max_rate or 0.0  # what each second's increase is a share of
        self._next_send = 0.0  # theoretical time of the next send (GCRA)
        self._grown_at = clock()
        self._dropped_at = -math.inf
        self._sent: deque[float] = deque()  # send times within ACHIEVED_WINDOW
        self._lock = asyncio.Lock()

    def allowed_rate(self) -> float:
        """The allowed rate now, requests/s; infinite when there is no limit."""
        self._grow(self._clock())
        return math.inf if self.rate is None else self.rate

    def achieved_rate(self, now: float | None = None) -> float:
        """Requests/s sent over the last ACHIEVED_WINDOW seconds."""
        now = self._clock() if now is None else now
        self._forget(now)
        if not self._sent:
            return 0.0
        # At least a second: a first burst of requests is not a rate it can keep up.
        span = min(ACHIEVED_WINDOW, max(now - self._sent[0], 1.0))
        return len(self._sent) / span

    def paused_for(self) -> float:
        """Seconds until Retry-After lets requests go again (0 when not paused)."""
        return max(0.0, self.paused_until - self._clock())

    def retry_in(self) -> float:
        """How soon a request turned away by a 429 may be tried again."""
        spacing = 0.0 if self.rate is None else 1.0 / self.rate
        return max(self.paused_for(), spacing, 0.01)

    def claimable(self, horizon: float, waiting: int) -> int | None:
        """How many more requests may be queued for a slot now, so that none waits
        longer than `horizon` seconds; None: no limit. `waiting`: already queued."""
        if self.paused_for() > 0:
            return 0
        rate = self.allowed_rate()
        if math.isinf(rate):
            return None
        return max(0, math.ceil(rate * horizon) - waiting)

    async def acquire(self) -> float:
        """Wait for a send slot; returns its clock time (pass it to `rate_limited`)."""
        if self.rate is None and self.paused_until <= self._clock():
            now = self._clock()  # no limit: no queue either
            self._note_sent(now)
            return now
        async with self._lock:
            while True:
                now = self._clock()
                wait = self._take(now)
                if wait <= 0:
                    return now
                await self._sleep(wait)

    def _take(self, now: float) -> float:
        """Take a slot at `now` (returns 0), or the seconds to wait for one."""
        if now < self.paused_until:
            return self.paused_until - now
        self._grow(now)
        if self.rate is None:
            self._note_sent(now)
            return 0.0
        slot = max(self._next_send, now - BURST_SECONDS)
        if slot > now:
            return slot - now
        self._next_send = slot + 1.0 / self.rate
        self._note_sent(now)
        return 0.0

    def record_rate_limited(self, sent_at: float, retry_after: float | None) -> None:
        """Credyt answered 429 to a request sent at `sent_at` (a time from `acquire`)."""
        now = self._clock()
        self.rate_limited += 1
        self._on_rate_limited()
        if retry_after is not None and math.isfinite(retry_after) and retry_after > 0:
            self.paused_until = max(self.paused_until, now + min(retry_after, self.pause_max))
        if sent_at <= self._dropped_at:
            return  # sent at the rate already cut: one round of requests, one cut
        self._grow(now)
        before = self.rate if self.rate is not None else self.achieved_rate(now)
        if self.max_rate is None:  # no max_rate: grow by a share of the rate before
            self._reference = max(before, self.min_rate)
        self.rate = max(self.min_rate, before * self.decrease)
        self._dropped_at = now
        self._grown_at = max(now, self.paused_until)
        log.warning(
            "credyt_rate_limited",
            allowed_rate=round(self.rate, 2),
            rate_before=round(before, 2),
            paused_for=round(max(0.0, self.paused_until - now), 3),
        )

    def restart(self) -> None:
        """An outage ended (the breaker closed): ramp up from part of the last rate."""
        if self.rate is None:
            return
        now = self._clock()
        self._grow(now)
        self.rate = max(self.min_rate, self.rate * self.decrease)
        self._dropped_at = now
        self._grown_at = now
        log.info("credyt_rate_restarted", allowed_rate=round(self.rate, 2))

    def _grow(self, now: float) -> None:
        """Additive increase: `INCREASE_SHARE` of the reference rate per second."""
        elapsed = now - self._grown_at
        if elapsed <= 0:
            return
        self._grown_at = now
        if self.rate is None:
            return
        ceiling = math.inf if self.max_rate is None else self.max_rate
        if self.rate >= ceiling:
            return
        step = max(self.min_rate, INCREASE_SHARE * self._reference)
        self.rate = min(ceiling, self.rate + step * elapsed)

    def _note_sent(self, now: float) -> None:
        self._sent.append(now)
        self._forget(now)

    def _forget(self, now: float) -> None:
        while self._sent and self._sent[0] < now - ACHIEVED_WINDOW:
            self._sent.popleft()
