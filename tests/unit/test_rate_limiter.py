"""The Credyt rate limiter's AIMD on a fake clock: the bucket's pace, the cut on a 429,
Retry-After for every request, the additive ramp back, and the restart after an outage."""

from __future__ import annotations

import asyncio
import math

import pytest

from bridge.delivery.limiter import (
    DECREASE,
    INCREASE_SHARE,
    PAUSE_MAX,
    CredytRateLimiter,
)


class FakeClock:
    """A clock that only moves when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def limiter(max_rate: float | None, clock: FakeClock) -> CredytRateLimiter:
    return CredytRateLimiter(max_rate, clock=clock, sleep=clock.sleep)


def send_times(rate_limiter: CredytRateLimiter, count: int) -> list[float]:
    async def sends() -> list[float]:
        return [await rate_limiter.acquire() for _ in range(count)]

    return asyncio.run(sends())


def test_max_rate_spaces_requests_at_the_rate() -> None:
    clock = FakeClock()
    times = send_times(limiter(100.0, clock), 1001)
    # 1,000 intervals at 100/s: 10 s, less the burst the bucket lets through at first.
    assert times[-1] - times[0] == pytest.approx(10.0, abs=0.06)
    # After the first few (the bucket's burst), one request per 1/rate seconds.
    gaps = [b - a for a, b in zip(times[10:], times[11:], strict=False)]
    assert min(gaps) == pytest.approx(0.01)


def test_concurrent_waiters_share_one_rate() -> None:
    clock = FakeClock()
    shared = limiter(50.0, clock)

    async def slot_worker(count: int) -> list[float]:
        return [await shared.acquire() for _ in range(count)]

    async def all_slots() -> list[float]:
        lists = await asyncio.gather(*(slot_worker(25) for _ in range(8)))
        return sorted(t for times in lists for t in times)

    times = asyncio.run(all_slots())
    assert len(times) == 200
    assert times[-1] - times[0] == pytest.approx(199 / 50, abs=0.06)


def test_a_429_cuts_the_rate_once_per_round() -> None:
    clock = FakeClock()
    rate_limiter = limiter(100.0, clock)
    sent = send_times(rate_limiter, 10)
    for sent_at in sent:  # ten requests in flight all meet the 429
        rate_limiter.record_rate_limited(sent_at, None)
    assert rate_limiter.rate == pytest.approx(100.0 * DECREASE)
    assert rate_limiter.rate_limited == 10
    # A request sent after the cut that meets a 429 cuts again.
    later = send_times(rate_limiter, 1)[0]
    rate_limiter.record_rate_limited(later, None)
    # (plus the little it grew back while that request waited for its slot)
    assert rate_limiter.rate == pytest.approx(100.0 * DECREASE * DECREASE, abs=0.1)


def test_the_rate_grows_back_additively_to_max_rate() -> None:
    clock = FakeClock()
    rate_limiter = limiter(200.0, clock)
    rate_limiter.record_rate_limited(send_times(rate_limiter, 1)[0], None)
    cut = 200.0 * DECREASE
    clock.now += 2.0
    assert rate_limiter.allowed_rate() == pytest.approx(cut + 2 * INCREASE_SHARE * 200.0)
    clock.now += 100.0
    assert rate_limiter.allowed_rate() == 200.0  # never above max_rate


def test_retry_after_pauses_every_request() -> None:
    clock = FakeClock()
    rate_limiter = limiter(None, clock)
    first = send_times(rate_limiter, 1)[0]
    rate_limiter.record_rate_limited(first, 3.0)
    assert rate_limiter.claimable(2.0, 0) == 0
    resumed = send_times(rate_limiter, 3)
    assert min(resumed) >= first + 3.0


@pytest.mark.parametrize("hostile", [1e9, math.inf, math.nan, -5.0])
def test_a_hostile_retry_after_is_capped_or_ignored(hostile: float) -> None:
    clock = FakeClock()
    rate_limiter = limiter(10.0, clock)
    rate_limiter.record_rate_limited(send_times(rate_limiter, 1)[0], hostile)
    assert rate_limiter.paused_for() <= PAUSE_MAX
    if not (math.isfinite(hostile) and hostile > 0):
        assert rate_limiter.paused_for() == 0


def test_unlimited_takes_its_first_rate_from_what_was_achieved() -> None:
    clock = FakeClock()
    rate_limiter = limiter(None, clock)
    assert rate_limiter.allowed_rate() == math.inf

    async def at_300_per_second() -> float:
        last = 0.0
        for _ in range(600):
            last = await rate_limiter.acquire()
            await clock.sleep(1 / 300)
        return last

    last = asyncio.run(at_300_per_second())
    rate_limiter.record_rate_limited(last, None)
    assert rate_limiter.rate == pytest.approx(300 * DECREASE, rel=0.02)


def test_restart_after_an_outage_ramps_from_below_the_last_rate() -> None:
    clock = FakeClock()
    rate_limiter = limiter(500.0, clock)
    rate_limiter.restart()
    assert rate_limiter.allowed_rate() == pytest.approx(500 * DECREASE)
    clock.now += 60
    assert rate_limiter.allowed_rate() == 500.0


def test_claims_are_bounded_by_what_the_rate_can_send_soon() -> None:
    clock = FakeClock()
    assert limiter(None, clock).claimable(2.0, 0) is None
    assert limiter(10.0, clock).claimable(2.0, 5) == 15


def test_max_rate_must_be_positive() -> None:
    with pytest.raises(ValueError):
        CredytRateLimiter(0)
