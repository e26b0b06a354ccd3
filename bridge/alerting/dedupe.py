"""Deduplication and rate limiting: at most one message per condition and window.

After a quiet spell (no message of the condition for two windows) the first alert
goes out alone, at once. What arrives while a message is less than a window old waits;
when the window has passed, what waited goes out as one summary ("and 499 more
adjustments went dead"), or alone if it is a single alert. A storm therefore costs one
message a window, however many adjustments die.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    """What to send now for one condition: one alert alone, or a summary of several."""

    single: int | None = None  # the alert id sent alone
    summary: tuple[int, ...] = ()  # the alert ids one summary covers

    @property
    def empty(self) -> bool:
        return self.single is None and not self.summary


def plan(waiting: Sequence[int], last_sent: float | None, now: float, window: float) -> Plan:
    """`waiting`: ids of alerts no message carries yet, oldest first; `last_sent`: when
    the condition's last message was made (None: never)."""
    if not waiting:
        return Plan()
    if last_sent is not None and now - last_sent < window:
        return Plan()  # a message is less than a window old: wait
    quiet = last_sent is None or now - last_sent >= 2 * window
    if len(waiting) == 1 or quiet:
        return Plan(single=waiting[0])
    return Plan(summary=tuple(waiting))
