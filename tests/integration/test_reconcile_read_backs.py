"""Reconcile's read-backs from Credyt: bounded in rate, against the sandbox on loopback.

The clock and the sleep are injected, so the bound is checked on the waits it asks for,
not on how long the test took."""

from __future__ import annotations

import asyncio

import pytest

from bridge.credyt.client import CredytClient
from bridge.errors import ReconcileError
from bridge.operating.reconcile import ReadBacks
from bridge.operating.reconcile_report import ReconcileReport
from tests.conftest import API_KEY, Sandbox


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def read_many(sandbox: Sandbox, rate: float, count: int) -> tuple[FakeClock, ReconcileReport]:
    customer = sandbox.state.add_customer()
    clock = FakeClock()
    report = ReconcileReport("stripe", 0, 1)

    async def run() -> list[object]:
        client = CredytClient(sandbox.url, API_KEY)
        try:
            reads = ReadBacks(client, rate, report, clock=clock, sleep=clock.sleep)
            return [await reads.get(customer, f"tx-{n}") for n in range(count)]
        finally:
            await client.aclose()

    assert asyncio.run(run()) == [None] * count  # the sandbox knows none of them
    return clock, report


def test_read_backs_are_spaced_to_the_rate(sandbox: Sandbox) -> None:
    clock, report = read_many(sandbox, rate=4, count=9)
    assert report.read_backs == 9
    assert len(clock.waits) == 8  # the first read does not wait
    assert all(abs(w - 0.25) < 1e-9 for w in clock.waits)
    assert sandbox.state.request_count == 9


def test_rate_zero_reads_without_waiting(sandbox: Sandbox) -> None:
    clock, report = read_many(sandbox, rate=0, count=5)
    assert clock.waits == [] and report.read_backs == 5


def test_a_failing_read_back_is_tried_again_then_stops_the_run(sandbox: Sandbox) -> None:
    sandbox.state.inject(fail_next=2, fail_status=503, only="wallet")
    clock, report = read_many(sandbox, rate=0, count=1)
    assert clock.waits == [1.0, 2.0] and sandbox.state.request_count == 3

    sandbox.state.inject(fail_next=10, fail_status=503, only="wallet")
    with pytest.raises(ReconcileError, match="failed 4 times"):
        read_many(sandbox, rate=0, count=1)


def test_a_refused_read_back_stops_the_run_at_once(sandbox: Sandbox) -> None:
    sandbox.state.inject(fail_next=1, fail_status=400, only="wallet")
    before = sandbox.state.request_count
    with pytest.raises(ReconcileError, match="answered 400"):
        read_many(sandbox, rate=0, count=1)
    assert sandbox.state.request_count == before + 1
