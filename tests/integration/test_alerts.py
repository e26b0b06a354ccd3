"""Alerts through the real parts: a bridge on uvicorn with a SQLite file, the sandbox
failing adjustments with 422 (so they go dead), and an alert receiver on its own
loopback port (`tests/helpers/alert_receiver.py`).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bridge.config.loading import parse_config
from bridge.receiving.servers import serve_in_thread
from bridge.service import Bridge
from bridge.storage.records import AdjustmentStatus, EventStatus
from connectors import stripe
from tests.conftest import (
    API_KEY,
    STRIPE_SECRET,
    RunningBridge,
    Sandbox,
    config_text,
    wait_until,
)
from tests.helpers.alert_receiver import alert_receiver
from tests.helpers.processes import MODULE_COMMAND, free_port

ALERTS = """
alerts:
  targets:
    - {{type: webhook, url: "{url}", name: hook}}
  on: {{adjustment_dead: true, event_failed: true}}
  window: {window}
"""


def alerting_config(db: str, sandbox: Sandbox, url: str, window: str = "3s") -> str:
    return config_text(db, sandbox.url, ALERTS.format(url=url, window=window))


def invoice(event_id: str, customer: str, amount_minor: int = 1000) -> dict[str, Any]:
    return stripe.sample_event(
        "invoice.paid",
        event_id=event_id,
        object_id=f"in_{event_id}",
        customer=customer,
        amount_minor=amount_minor,
    )


def dead_count(bridge: RunningBridge | Bridge) -> int:
    store = bridge.bridge.store if isinstance(bridge, RunningBridge) else bridge.store
    return store.counts()["adjustments"].get(AdjustmentStatus.DEAD.value, 0)


def sample(bridge: Bridge, name: str, **labels: str) -> float:
    return bridge.metrics.registry.get_sample_value(name, labels) or 0.0


def quiet_for(seconds: float) -> None:
    """Let the alert worker run for `seconds` (no alert should arrive meanwhile)."""
    time.sleep(seconds)


@contextmanager
def bridge_on(config: str, tmp_path: Path) -> Iterator[tuple[Bridge, str]]:
    """A bridge that can be stopped in the middle of a test (a restart), and its URL."""
    bridge = Bridge(parse_config(config, str(tmp_path / "config.yaml")))
    with serve_in_thread(bridge.app) as url:
        yield bridge, url


def test_one_dead_adjustment_gives_exactly_one_message(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    customer = sandbox.state.add_customer()
    sandbox.state.inject(fail_next=1, fail_status=422, only="adjustments")
    with alert_receiver() as receiver:
        running = make_bridge(alerting_config(str(tmp_path / "b.db"), sandbox, receiver.url))
        assert running.send_stripe(invoice("evt_dead_1", customer, 4999)).status_code == 200
        running.settle()
        [row] = running.bridge.store.list_adjustments()
        assert row.status is AdjustmentStatus.DEAD
        wait_until(lambda: len(receiver.received) >= 1, 15, "the alert")
        quiet_for(2 * 3 + 1)  # past two windows: nothing more comes
        assert len(receiver.received) == 1
    [message] = receiver.received
    assert message["condition"] == "adjustment_dead" and message["kind"] == "alert"
    text = message["text"]
    assert f"Adjustment {row.id} went dead" in text
    assert customer in text and "in_evt_dead_1" in text and "stripe" in text
    assert f"credyt-bridge outbox retry {row.id}" in text
    assert "credit of 49.99 USD" in text and "422" in text
    [detail] = message["alerts"]
    assert detail["adjustment_id"] == row.id and detail["customer_id"] == customer
    assert detail["amount"] == "49.99" and detail["psp_event_id"] == "evt_dead_1"
    whole = json.dumps(message)
    assert API_KEY not in whole and STRIPE_SECRET not in whole
    assert '"lines"' not in whole and "hosted_invoice_url" not in whole  # no raw body
    metrics = running.bridge
    assert (
        sample(metrics, "bridge_alerts_sent_total", target="hook", condition="adjustment_dead") == 1
    )


def test_500_dead_adjustments_give_one_message_and_one_summary(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    customer = sandbox.state.add_customer()
    sandbox.state.inject(fail_next=500, fail_status=422, only="adjustments")
    with alert_receiver() as receiver:
        config = alerting_config(str(tmp_path / "b.db"), sandbox, receiver.url, window="15s")
        running = make_bridge(config)
        with httpx.Client() as client:
            for n in range(500):
                body = json.dumps(invoice(f"evt_storm_{n}", customer)).encode()
                answer = client.post(
                    f"{running.url}/webhooks/stripe",
                    content=body,
                    headers=stripe.sign(body, STRIPE_SECRET),
                )
                assert answer.status_code == 200
        running.settle(60)
        assert dead_count(running) == 500
        wait_until(lambda: len(receiver.received) >= 2, 40, "the alert and the summary")
        quiet_for(3)
        assert len(receiver.received) == 2
    first, second = receiver.received
    assert first["kind"] == "alert" and first["count"] == 1
    assert second["kind"] == "summary" and second["count"] == 499
    assert second["text"].startswith("And 499 more adjustments went dead")
    assert "credyt-bridge outbox retry --dead" in second["text"]
    assert len(second["alerts"]) == 5  # a few examples, not 499 details


def alert_rows(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT status, attempts FROM alert_messages").fetchall()


def test_a_restart_between_the_failure_and_the_send_loses_no_alert(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    customer = sandbox.state.add_customer()
    sandbox.state.inject(fail_next=1, fail_status=422, only="adjustments")
    port = free_port()  # the receiver is down: nothing listens here yet
    db = tmp_path / "b.db"
    config = alerting_config(str(db), sandbox, f"http://127.0.0.1:{port}/hook")
    with bridge_on(config, tmp_path) as (first, first_url):
        body = json.dumps(invoice("evt_restart", customer)).encode()
        posted = httpx.post(
            f"{first_url}/webhooks/stripe",
            content=body,
            headers=stripe.sign(body, STRIPE_SECRET),
        )
        assert posted.status_code == 200
        wait_until(lambda: dead_count(first) == 1, 15, "the dead adjustment")
        # The message was made and tried: the receiver was down.
        wait_until(lambda: any(a >= 1 for _, a in alert_rows(db)), 15, "a failed send")
        # The metric is counted once the send's outcome is known, a moment after the
        # attempt is recorded: wait for it rather than read it once.
        wait_until(
            lambda: (
                sample(
                    first, "bridge_alerts_failed_total", target="hook", condition="adjustment_dead"
                )
                >= 1
            ),
            15,
            "the failed send counted",
        )
    assert [s for s, _ in alert_rows(db)] == ["pending"]
    with alert_receiver(port) as receiver, bridge_on(config, tmp_path):
        wait_until(lambda: len(receiver.received) >= 1, 15, "the alert after the restart")
        quiet_for(3 * 2 + 1)
        assert len(receiver.received) == 1
    assert receiver.received[0]["condition"] == "adjustment_dead"
    assert [s for s, _ in alert_rows(db)] == ["sent"]


def test_a_receiver_failing_then_recovering_gets_the_alert_once(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    with alert_receiver() as receiver:
        receiver.answer = 503
        running = make_bridge(alerting_config(str(tmp_path / "b.db"), sandbox, receiver.url))
        unknown = stripe.sample_event(
            "invoice.paid",
            event_id="evt_nobody",
            object_id="in_nobody",
            psp_customer="cus_nobody",
            amount_minor=100,
            currency="usd",
        )
        assert running.send_stripe(unknown).status_code == 200
        running.settle()
        event = running.bridge.store.get_event("evt_nobody")
        assert event is not None and event.status is EventStatus.FAILED
        wait_until(lambda: receiver.refused >= 2, 20, "two refused sends")
        receiver.answer = 200
        wait_until(lambda: len(receiver.received) >= 1, 20, "the alert once recovered")
        quiet_for(3 * 2 + 1)
        assert len(receiver.received) == 1
    [message] = receiver.received
    assert message["condition"] == "event_failed"
    assert f"credyt-bridge replay {event.id}" in message["text"]
    assert f"credyt-bridge events show {event.id}" in message["text"]
    assert "cus_nobody" in message["text"]
    bridge = running.bridge
    assert sample(bridge, "bridge_alerts_sent_total", target="hook", condition="event_failed") == 1
    assert (
        sample(bridge, "bridge_alerts_failed_total", target="hook", condition="event_failed") >= 2
    )


def run_alerts_test(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MODULE_COMMAND, "alerts", "test", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_alerts_test_sends_to_every_target_and_reports_each(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    dead_port = free_port()
    with alert_receiver() as receiver:
        good = tmp_path / "good.yaml"
        good.write_text(alerting_config(str(tmp_path / "b.db"), sandbox, receiver.url))
        ok = run_alerts_test(good)
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.strip() == "hook (webhook): sent"
        assert [m["kind"] for m in receiver.received] == ["test"]

        both = tmp_path / "both.yaml"
        both.write_text(
            config_text(str(tmp_path / "b.db"), sandbox.url)
            + "alerts:\n  targets:\n"
            + f'    - {{type: slack, url: "{receiver.url}", name: ops}}\n'
            + f'    - {{type: webhook, url: "http://127.0.0.1:{dead_port}/x", name: pager}}\n'
        )
        mixed = run_alerts_test(both)
    assert mixed.returncode == 1
    lines = mixed.stdout.strip().splitlines()
    assert lines[0] == "ops (slack): sent"
    assert lines[1].startswith("pager (webhook): FAILED: could not connect")
    assert str(dead_port) not in mixed.stdout  # the URL is not printed
    assert set(receiver.received[-1]) == {"text"}  # Slack's format


def test_a_failing_credyt_raises_the_backlog_and_breaker_alerts(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    customer = sandbox.state.add_customer()
    sandbox.state.inject(fail_next=100_000, fail_status=503, only="adjustments")
    with alert_receiver() as receiver:
        alerts = (
            f'alerts:\n  targets: [{{type: webhook, url: "{receiver.url}", name: hook}}]\n'
            "  on: {backlog_age: 1s, breaker_opened: true}\n  window: 30s\n"
        )
        running = make_bridge(config_text(str(tmp_path / "b.db"), sandbox.url, alerts))
        assert running.send_stripe(invoice("evt_slow", customer)).status_code == 200
        wait_until(lambda: len(receiver.of("breaker_opened")) == 1, 30, "the breaker alert")
        wait_until(lambda: len(receiver.of("backlog_age")) == 1, 30, "the backlog alert")
    [row] = running.bridge.store.list_adjustments()
    assert row.status is AdjustmentStatus.PENDING
    [backlog] = receiver.of("backlog_age")
    assert backlog["alerts"][0]["adjustment_id"] == row.id
    assert customer in backlog["text"] and "credyt-bridge outbox list" in backlog["text"]
    [breaker] = receiver.of("breaker_opened")
    assert "circuit breaker opened" in breaker["text"]


def test_a_rejected_credyt_key_raises_one_alert(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    with alert_receiver() as receiver:
        alerts = (
            f'alerts:\n  targets: [{{type: webhook, url: "{receiver.url}", name: hook}}]\n'
            "  on: {credyt_key_rejected: true}\n  window: 2s\n"
        )
        config = config_text(str(tmp_path / "b.db"), sandbox.url, alerts)
        wrong = "key_test_not_the_sandbox_key"
        running = make_bridge(config.replace(API_KEY, wrong))
        wait_until(lambda: len(receiver.received) >= 1, 20, "the key alert")
        wait_until(lambda: running.bridge.key_check.attempts >= 3, 20, "more key checks")
        quiet_for(2 * 2 + 1)
        assert len(receiver.received) == 1  # one per spell, not one per check
    [message] = receiver.received
    assert message["condition"] == "credyt_key_rejected"
    assert "Credyt rejected the API key" in message["text"]
    assert wrong not in json.dumps(message) and API_KEY not in json.dumps(message)
