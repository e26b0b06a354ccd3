"""Ingest pressure: while the receiver is short of CPU the workers yield it to it.

The PSP must get its answer fast; processing and delivery can wait a few seconds.
Two signs say the receiver is short of CPU, and either makes the workers take a few
rows at a time with a pause between (the backlog is safe in the store and drains at
full speed once the pressure eases):
- a burst: webhooks arrive faster than `threshold` per second;
- a late event loop: `watch` sleeps `tick` seconds over and over and measures how
  late it wakes. While the average lateness is over `lag_limit`, the loop is busy
  with more than it can run at once (processing and delivery beside the receiver, on
  a small or shared machine), and every answer waits behind that work. This is what
  made answers slower at 500/s than at 2,000/s: a machine that saturates below 1,000
  payments/s never saw a burst. It ends once the average is under half the limit.
Either counts only while webhooks arrive: with none for two windows, nothing changes.
"""

from __future__ import annotations

import asyncio
import time


class IngestPressure:
    def __init__(
        self,
        threshold: float = 1000.0,  # webhooks per second that count as a burst
        window: float = 0.2,  # seconds over which the arrival rate is measured
        trickle: int = 4,  # rows a worker takes per pause under pressure
        pause: float = 0.05,  # seconds a worker waits between trickles
        lag_limit: float = 0.010,  # seconds of average event loop lateness: pressure
        tick: float = 0.01,  # seconds between two wake-ups of `watch`
    ) -> None:
        self.threshold = threshold
        self.window = window
        self.trickle = trickle
        self.pause = pause
        self.lag_limit = lag_limit
        self.tick = tick
        self._count = 0
        self._started = time.monotonic()
        self._rate = 0.0
        self._lag = 0.0  # moving average of the loop's lateness, seconds
        self._lagging = False

    def note(self) -> None:
        """One webhook accepted."""
        self._count += 1
        now = time.monotonic()
        if now - self._started >= self.window:
            self._rate = self._count / (now - self._started)
            self._count = 0
            self._started = now

    def lagged(self, seconds: float) -> None:
        """The event loop woke `seconds` later than it was due."""
        self._lag += (max(0.0, seconds) - self._lag) * 0.2
        if self._lag > self.lag_limit:
            self._lagging = True
        elif self._lag < self.lag_limit / 2:
            self._lagging = False

    async def watch(self) -> None:
        """Measure the event loop's lateness for as long as the task runs."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.tick
            await asyncio.sleep(self.tick)
            self.lagged(loop.time() - due)

    def busy(self) -> bool:
        elapsed = time.monotonic() - self._started
        if elapsed >= 2 * self.window:  # nothing arrived lately: no pressure
            return False
        if self._lagging:
            return True
        current = self._count / elapsed if elapsed >= self.window / 4 else 0.0
        return max(self._rate if elapsed < self.window * 1.5 else 0.0, current) > self.threshold

    async def admit(self) -> int | None:
        """How many rows a worker may take now: None (no limit), or a trickle after a pause."""
        if not self.busy():
            return None
        await asyncio.sleep(self.pause)
        return self.trickle
