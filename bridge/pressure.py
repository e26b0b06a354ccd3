"""Ingest pressure: during a burst of webhooks the workers yield the CPU to the receiver.

The PSP must get its answer fast; processing and delivery can wait a few seconds.
The receiver notes every accepted webhook. While they arrive faster than `threshold`
per second (faster than processing could keep up with anyway), the processor and the
deliverer take a few rows at a time with a pause between, so the receiver keeps the
core; the backlog is safe in the store and drains at full speed once the burst eases.
At normal rates nothing changes.
"""

from __future__ import annotations

import asyncio
import time


class IngestPressure:
    def __init__(
        self,
        threshold: float = 1000.0,  # webhooks per second that count as a burst
        window: float = 0.2,  # seconds over which the arrival rate is measured
        trickle: int = 4,  # rows a worker takes per pause during a burst
        pause: float = 0.05,  # seconds a worker waits between trickles
    ) -> None:
        self.threshold = threshold
        self.window = window
        self.trickle = trickle
        self.pause = pause
        self._count = 0
        self._started = time.monotonic()
        self._rate = 0.0

    def note(self) -> None:
        """One webhook accepted."""
        self._count += 1
        now = time.monotonic()
        if now - self._started >= self.window:
            self._rate = self._count / (now - self._started)
            self._count = 0
            self._started = now

    def busy(self) -> bool:
        elapsed = time.monotonic() - self._started
        if elapsed >= 2 * self.window:  # nothing arrived lately: the burst is over
            return False
        current = self._count / elapsed if elapsed >= self.window / 4 else 0.0
        return max(self._rate if elapsed < self.window * 1.5 else 0.0, current) > self.threshold

    async def admit(self) -> int | None:
        """How many rows a worker may take now: None (no limit), or a trickle after a pause."""
        if not self.busy():
            return None
        await asyncio.sleep(self.pause)
        return self.trickle
