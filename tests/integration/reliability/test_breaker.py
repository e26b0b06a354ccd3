"""The circuit breaker's state machine, on a clock the test turns by hand."""

from __future__ import annotations

from bridge.delivery.breaker import BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(threshold: int = 3) -> tuple[CircuitBreaker, Clock, list[bool]]:
    clock = Clock()
    changes: list[bool] = []
    breaker = CircuitBreaker(
        threshold=threshold, cooldown=1.0, cooldown_max=4.0, clock=clock, on_change=changes.append
    )
    return breaker, clock, changes


def test_opens_after_threshold_failures_in_a_row() -> None:
    breaker, _, changes = make()
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()  # the run is broken: counting starts again
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.allowed() is None
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and breaker.allowed() == 0
    assert changes == [True]


def test_one_probe_after_the_cooldown_then_closes_on_success() -> None:
    breaker, clock, changes = make(threshold=1)
    breaker.record_failure()
    clock.now += 0.99
    assert breaker.allowed() == 0
    clock.now += 0.01
    assert breaker.allowed() == 1
    breaker.start_probe()
    assert breaker.allowed() == 0  # one request at a time while probing
    breaker.record_success()
    assert breaker.closed and breaker.allowed() is None
    assert changes == [True, False]


def test_failed_probes_double_the_cooldown_up_to_the_cap() -> None:
    breaker, clock, _ = make(threshold=1)
    breaker.record_failure()
    waits = []
    for _ in range(4):
        clock.now += breaker.seconds_to_probe()
        assert breaker.allowed() == 1
        breaker.start_probe()
        breaker.record_failure(probe=True)
        waits.append(breaker.seconds_to_probe())
    assert waits == [2.0, 4.0, 4.0, 4.0]
    assert breaker.opened == 1


def test_retry_after_lengthens_the_pause_and_late_failures_change_nothing() -> None:
    breaker, clock, _ = make(threshold=1)
    breaker.record_failure(retry_after=3.0)
    assert breaker.seconds_to_probe() == 3.0
    breaker.record_failure()  # a request sent before it opened, failing late
    assert breaker.seconds_to_probe() == 3.0
    clock.now += 3.0
    breaker.start_probe()
    breaker.cancel_probe()  # no row was due: still open, a probe may go
    assert breaker.state is BreakerState.OPEN and breaker.allowed() == 1


def test_a_probe_that_never_settles_is_given_up() -> None:
    breaker, clock, _ = make(threshold=1)
    breaker.record_failure()
    clock.now += 1.0
    breaker.start_probe()
    clock.now += 60.0
    assert breaker.allowed() == 0
    clock.now += 0.01
    assert breaker.allowed() == 1
