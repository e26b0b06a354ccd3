"""Credyt rate-limits the bridge; every payment is still credited exactly once.

A real bridge (uvicorn on 127.0.0.1, SQLite in tmp_path) delivers to the sandbox, whose
`rate_limit` switch answers 429 with Retry-After above N API calls a second (its own
token bucket). Each test first builds a backlog behind a Credyt outage (every
adjustment answered 503 until the breaker opens), then brings Credyt back with a rate
limit, as after a real outage. The counts are the sandbox's own records; nothing here
is timed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

import httpx

from bridge.delivery.breaker import BreakerState
from bridge.storage.records import AdjustmentStatus
from tests.conftest import RunningBridge, Sandbox, wait_until
from tests.integration.reliability.conftest import (
    COUNTS,
    assert_exactly_once,
    reliability_config,
)
from tests.integration.reliability.test_credyt_faults import send_payments

MakeBridge = Callable[..., RunningBridge]


def start(
    make_bridge: MakeBridge, tmp_path: Path, url: str, max_rate: float | None
) -> RunningBridge:
    text = reliability_config(str(tmp_path / "bridge.db"), url)
    if max_rate is not None:
        text = text.replace("credyt:\n", f"credyt:\n  max_rate: {max_rate}\n", 1)
    running = make_bridge(text)
    assert running.bridge.limiter.max_rate == max_rate
    return running


def backlog_behind_an_outage(running: RunningBridge, sandbox: Sandbox, count: int) -> set[str]:
    """`count` payments processed while Credyt answers every adjustment 503, the
    breaker open: the backlog a recovering Credyt meets."""
    customer = sandbox.state.add_customer()
    sandbox.state.inject(fail_next=10**6, fail_status=503, only="adjustments")
    expected = send_payments(running, customer, count)

    def backed_up() -> bool:
        counts = running.bridge.store.counts()
        return (
            not counts["events"].get("pending")
            and counts["adjustments"].get("pending") == count
            and running.bridge.deliverer.breaker.state is not BreakerState.CLOSED
        )

    wait_until(backed_up, 60, "a backlog behind an open breaker")
    return expected


def test_after_an_outage_a_rate_limited_credyt_slows_the_whole_deliverer(
    make_bridge: MakeBridge, sandbox: Sandbox, tmp_path: Path
) -> None:
    """No max_rate: the first 429s set one, and the backlog drains near Credyt's pace.

    Without a shared rate every slot keeps sending: each row sent over the limit
    meets a 429 and so does its retry, hundreds of 429s for 150 payments at 30/s. With
    it: the first round in flight, then the odd probe of the sawtooth."""
    running = start(make_bridge, tmp_path, sandbox.url, None)
    expected = backlog_behind_an_outage(running, sandbox, 150)
    sandbox.state.inject(rate_limit=30, only="adjustments")
    running.settle(timeout=120)
    limited = sandbox.state.rate_limited
    COUNTS["rate limit: 429s answered"] += limited
    assert_exactly_once(sandbox.state, expected)
    assert 0 < limited <= 60, f"{limited} 429s for 150 payments"
    assert running.bridge.limiter.rate_limited == limited  # every one reached the limiter
    assert running.bridge.store.list_adjustments(AdjustmentStatus.DEAD) == []
    text = httpx.get(f"{running.url}/metrics").text
    assert f"bridge_credyt_rate_limited_total {float(limited)}" in text
    allowed = re.search(r"^bridge_credyt_allowed_rate (\S+)$", text, re.M)
    assert allowed is not None and math.isfinite(float(allowed.group(1)))


def test_max_rate_below_credyts_limit_drains_a_backlog_without_a_429(
    make_bridge: MakeBridge, sandbox: Sandbox, tmp_path: Path
) -> None:
    running = start(make_bridge, tmp_path, sandbox.url, 25)
    expected = backlog_behind_an_outage(running, sandbox, 100)
    sandbox.state.inject(rate_limit=40, only="adjustments")
    running.settle(timeout=120)
    COUNTS["rate limit: 429s answered"] += sandbox.state.rate_limited
    assert_exactly_once(sandbox.state, expected)
    assert sandbox.state.rate_limited == 0
