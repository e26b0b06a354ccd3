"""When to try again, and when to give up: one backoff formula for every retry.

The deliverer retries a failed delivery with it (`delivery:` config, jittered, capped by
age and Retry-After); the processor retries an event it could not process yet
(`processing:` config, no jitter), times the holds of events waiting for another event
of their payment, and paces its tries to record an outcome the store refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.config.schema import DeliveryConfig, ProcessingConfig


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with a cap, optional jitter, and limits on tries and age."""

    initial: float = 1.0  # seconds before the second attempt
    multiplier: float = 2.0
    maximum: float = 600.0  # no backoff step longer than this
    jitter: float = 0.2  # +/- this fraction, so retries of a burst spread out
    max_attempts: int = 30
    max_age: float = 3 * 86400.0  # seconds since queued
    retry_after_max: float = 3600.0  # a Retry-After longer than this is capped

    @classmethod
    def from_config(cls, config: DeliveryConfig) -> RetryPolicy:
        """The deliverer's policy."""
        return cls(
            initial=config.backoff_initial,
            maximum=config.backoff_max,
            max_attempts=config.max_attempts,
            max_age=config.max_age,
            retry_after_max=config.retry_after_max,
        )

    @classmethod
    def for_processing(cls, config: ProcessingConfig) -> RetryPolicy:
        """The processor's policy for events it could not process yet: no jitter, no
        age limit; the event fails after `max_attempts` tries."""
        return cls(
            initial=config.backoff_initial,
            maximum=config.backoff_max,
            jitter=0.0,
            max_attempts=config.max_attempts,
            max_age=float("inf"),
        )

    def backoff(self, attempts: int) -> float:
        """The step after `attempts` failed tries, without jitter or limits: `initial`
        after the first, doubling (by `multiplier`) up to `maximum`."""
        # The exponent is bounded: a float power overflows long before max_attempts might.
        return float(
            min(self.maximum, self.initial * self.multiplier ** min(max(0, attempts - 1), 64))
        )

    def decide(
        self, attempts: int, age: float, retry_after: float | None = None, rand: float = 0.5
    ) -> float | None:
        """Seconds until the next try after `attempts` failed ones, or None to give up.

        `rand` in [0, 1) places the delay inside the jitter band (0.5: no jitter).
        """
        if attempts >= self.max_attempts:
            return None
        # Jitter spreads a burst of retries; capped again, so no step exceeds `maximum`.
        delay = min(self.maximum, self.backoff(attempts) * (1 + self.jitter * (2 * rand - 1)))
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_after_max))
        if age + delay > self.max_age:
            return None
        return delay
