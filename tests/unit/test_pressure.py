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


def test_a_late_event_loop_is_pressure_while_webhooks_arrive() -> None:
    pressure = IngestPressure(threshold=1000, window=0.05, trickle=2, lag_limit=0.01)
    pressure.note()  # 1 webhook: far from a burst
    for _ in range(3):
        pressure.lagged(0.001)
    assert not pressure.busy()
    for _ in range(10):  # the loop wakes 40 ms late, again and again
        pressure.lagged(0.04)
    assert pressure.busy()
    assert asyncio.run(pressure.admit()) == 2
    for _ in range(3):  # a little better, still over half the limit: still pressure
        pressure.lagged(0.008)
    assert pressure.busy()
    for _ in range(30):
        pressure.lagged(0.0)
    assert not pressure.busy()


def test_a_late_loop_without_webhooks_is_no_pressure() -> None:
    pressure = IngestPressure(window=0.02, lag_limit=0.01)
    pressure.note()
    for _ in range(10):
        pressure.lagged(0.05)
    time.sleep(0.05)  # no webhook for two windows: nothing to make room for
    assert not pressure.busy()


def test_watch_sees_a_loop_that_is_blocked() -> None:
    pressure = IngestPressure(window=10.0, lag_limit=0.01, tick=0.002)

    async def blocked() -> bool:
        watching = asyncio.create_task(pressure.watch())
        pressure.note()
        for _ in range(15):  # work that holds the loop 30 ms at a time
            time.sleep(0.03)
            await asyncio.sleep(0)
        seen = pressure.busy()
        watching.cancel()
        return seen

    assert asyncio.run(blocked())
