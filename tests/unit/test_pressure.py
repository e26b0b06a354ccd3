"""The burst detector that makes the workers yield the CPU to the receiver."""

from __future__ import annotations

import asyncio
import time

from bridge.pressure import IngestPressure


def test_a_burst_is_busy_and_the_workers_get_a_trickle() -> None:
    pressure = IngestPressure(threshold=1000, window=0.05, trickle=3, pause=0.01)
    assert not pressure.busy()
    deadline = time.monotonic() + 0.12
    while time.monotonic() < deadline:  # far more than 1000/s
        pressure.note()
    assert pressure.busy()
    assert asyncio.run(pressure.admit()) == 3


def test_normal_traffic_and_a_finished_burst_are_not_busy() -> None:
    pressure = IngestPressure(threshold=1000, window=0.05)
    for _ in range(5):  # 100/s: normal traffic
        pressure.note()
        time.sleep(0.01)
    assert not pressure.busy()
    assert asyncio.run(pressure.admit()) is None
    deadline = time.monotonic() + 0.12
    while time.monotonic() < deadline:
        pressure.note()
    time.sleep(0.15)  # nothing arrives for three windows: the burst is over
    assert not pressure.busy()
