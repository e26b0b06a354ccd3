"""RetryPolicy.decide: a pure function, tested on its formula."""

from __future__ import annotations

import dataclasses

import pytest

from bridge.config.schema import DeliveryConfig, ProcessingConfig
from bridge.delivery.retry import RetryPolicy

POLICY = RetryPolicy(
    initial=1.0,
    multiplier=2.0,
    maximum=60.0,
    jitter=0.2,
    max_attempts=10,
    max_age=3600.0,
    retry_after_max=300.0,
)


def decide(
    attempts: int, age: float = 0.0, retry_after: float | None = None, rand: float = 0.5
) -> float | None:
    return POLICY.decide(attempts, age, retry_after, rand)


@pytest.mark.parametrize(
    ("attempts", "delay"),
    [(0, 1.0), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 16.0), (6, 32.0), (7, 60.0), (9, 60.0)],
)
def test_exponential_backoff_without_jitter(attempts: int, delay: float) -> None:
    assert decide(attempts) == pytest.approx(delay)


def test_the_cap_holds_whatever_the_jitter() -> None:
    for rand in (0.0, 0.25, 0.5, 0.75, 0.999999):
        result = decide(9, rand=rand)
        assert result is not None and result <= 60.0
    assert decide(9, rand=0.0) == pytest.approx(48.0)  # jitter still spreads capped retries


@pytest.mark.parametrize("attempts", [1, 2, 3, 4, 5])
def test_jitter_band(attempts: int) -> None:
    base = 2.0 ** (attempts - 1)
    low, mid, high = (decide(attempts, rand=r) for r in (0.0, 0.5, 0.999999))
    assert low == pytest.approx(base * 0.8)
    assert mid == pytest.approx(base)
    assert high == pytest.approx(base * 1.2, rel=1e-5)
    for step in range(100):
        value = decide(attempts, rand=step / 100)
        assert value is not None and base * 0.8 - 1e-9 <= value <= base * 1.2 + 1e-9


def test_jitter_is_monotonic_in_rand() -> None:
    values = [decide(3, rand=r / 10) for r in range(10)]
    assert values == sorted(values)  # type: ignore[type-var]


def test_no_jitter_policy_is_exact() -> None:
    policy = dataclasses.replace(POLICY, jitter=0.0)
    assert [policy.decide(n, 0.0, None, 0.0) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]


def test_retry_after_is_honoured_when_longer() -> None:
    assert decide(1, retry_after=30.0) == pytest.approx(30.0)
    assert decide(1, retry_after=120.0) == pytest.approx(120.0)  # beyond the backoff cap


def test_retry_after_shorter_than_the_backoff_does_not_shorten_it() -> None:
    assert decide(5, retry_after=2.0) == pytest.approx(16.0)
    assert decide(5, retry_after=0.0) == pytest.approx(16.0)


def test_retry_after_is_capped() -> None:
    assert decide(1, retry_after=10_000.0) == pytest.approx(300.0)
    assert decide(1, retry_after=10_000.0, rand=0.0) == pytest.approx(300.0)


def test_max_attempts_gives_up() -> None:
    assert decide(9) is not None
    assert decide(10) is None
    assert decide(11) is None
    assert decide(10, retry_after=1.0) is None


def test_max_age_gives_up() -> None:
    assert decide(3, age=3600.0 - 4.0) == pytest.approx(4.0)  # lands exactly on the limit
    assert decide(3, age=3600.0 - 3.9) is None
    assert decide(1, age=3599.0, retry_after=5.0) is None  # a long Retry-After too
    assert decide(1, age=4000.0) is None


def test_huge_attempt_counts_do_not_overflow() -> None:
    policy = dataclasses.replace(POLICY, max_attempts=100_000, max_age=float("inf"))
    assert policy.decide(5000, 0.0, None, 0.5) == pytest.approx(60.0)


def test_defaults() -> None:
    policy = RetryPolicy()
    assert policy.decide(1, 0.0) == pytest.approx(1.0)
    assert policy.decide(30, 0.0) is None
    assert policy.decide(1, 3 * 86400.0) is None


def test_from_config() -> None:
    config = DeliveryConfig(
        max_attempts=4, max_age=100.0, backoff_initial=0.5, backoff_max=3.0, retry_after_max=9.0
    )
    policy = RetryPolicy.from_config(config)
    assert (policy.initial, policy.maximum, policy.max_attempts) == (0.5, 3.0, 4)
    assert (policy.max_age, policy.retry_after_max) == (100.0, 9.0)
    assert [policy.decide(n, 0.0) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, None]
    assert policy.decide(1, 0.0, retry_after=60.0) == 9.0


def test_policy_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        POLICY.initial = 5.0  # type: ignore[misc]


def test_the_processors_policy_doubles_from_its_config_without_jitter() -> None:
    policy = RetryPolicy.for_processing(ProcessingConfig())
    # attempt n (1-based) waits initial * 2**(n-1), at most backoff_max; 20 attempts
    assert [policy.decide(n, 0.0) for n in (1, 2, 3, 9, 10, 19)] == [
        2.0,
        4.0,
        8.0,
        512.0,
        600.0,
        600.0,
    ]
    assert policy.decide(20, 0.0) is None
    assert policy.decide(5, 10 * 86400.0, rand=0.0) == 32.0  # no jitter, no age limit


def test_backoff_is_the_step_without_jitter_or_limits() -> None:
    policy = RetryPolicy(initial=1.0, maximum=15.0, max_attempts=1)
    assert [policy.backoff(n) for n in (0, 1, 2, 3, 4, 5, 50)] == [1, 1, 2, 4, 8, 15, 15]
