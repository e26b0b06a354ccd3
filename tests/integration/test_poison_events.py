"""One bad event never loops the processor, and poison dates end `failed` with a reason.

Everything runs through a real bridge (uvicorn on 127.0.0.1, SQLite file, the Credyt
sandbox): a signed event that makes processing raise, a Credyt that keeps answering 500
to the customer look-up, and signed events whose dates no datetime can hold. Each must
be tried a bounded number of times with a growing delay, have its attempts counted, and
end `failed` with the error as its reason; meanwhile it costs a handful of log lines.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.processing.processor import ConnectorRuntime
from bridge.storage.records import EventStatus
from connectors import paddle, stripe
from connectors.stripe import StripeConnector
from tests.conftest import RunningBridge, Sandbox, config_text, wait_until
from tests.helpers.logs import LogBuffer
from tests.helpers.operator import run_cli

CUSTOMER = "cust_poison_1"
ADMIN_TOKEN = "admin_tok_" + "p" * 24
FAST_RETRIES = """
processing:
  max_attempts: 3
  backoff_initial: 50ms
  backoff_max: 100ms
"""
ADMIN = f"""
server:
  admin_token: {ADMIN_TOKEN}
"""
PADDLE_RULE = "        on: transaction.completed\n        credit:\n          amount: paid\n"
STRIPE_RULE = "        credit:\n          amount: paid\n"


class ExplodingConnector(StripeConnector):
    """The Stripe connector, except that reading one chosen event raises, as a bug would."""

    def normalize(self, raw: Any) -> Any:
        if raw.get("id") == "evt_explodes":
            raise RuntimeError("connector bug while reading the event")
        return super().normalize(raw)


def explode_on_one_event(running: RunningBridge) -> None:
    """Swap the running bridge's Stripe connector for one that raises on `evt_explodes`."""
    connectors = running.bridge.processor.connectors
    assert isinstance(connectors, dict)
    config = connectors["stripe"].config
    connectors["stripe"] = ConnectorRuntime(
        config,
        ExplodingConnector(
            secrets=config.secrets,
            tolerance=config.tolerance,
            customer_metadata_key=config.customer_metadata_key,
            mode=config.mode,
        ),
    )


def lines_for(logs: LogBuffer, event_id: str) -> list[dict[str, Any]]:
    return [e for e in logs.events() if e.get("event_id") == event_id]


def status_of(running: RunningBridge, event_id: str) -> EventStatus | None:
    row = running.bridge.store.get_event(event_id)
    return None if row is None else row.status


def failed(running: RunningBridge, event_id: str) -> Callable[[], bool]:
    return lambda: status_of(running, event_id) is EventStatus.FAILED


def test_an_event_that_crashes_processing_backs_off_and_fails_after_max_attempts(
    make_bridge: Callable[..., RunningBridge],
    sandbox: Sandbox,
    tmp_path: Path,
    logs: LogBuffer,
) -> None:
    text = config_text(str(tmp_path / "bridge.db"), sandbox.url, FAST_RETRIES + ADMIN)
    running = start(make_bridge, tmp_path, text)
    explode_on_one_event(running)
    event = stripe.sample_event(
        "invoice.paid", event_id="evt_explodes", object_id="in_explodes", customer=CUSTOMER
    )
    assert running.send_stripe(event).status_code == 200
    wait_until(failed(running, "evt_explodes"), 15, "the crashing event to fail")
    row = running.bridge.store.get_event("evt_explodes")
    assert row is not None
    assert row.attempts == 3
    assert row.reason is not None and "RuntimeError" in row.reason
    assert "connector bug while reading the event" in row.reason
    time.sleep(0.5)  # a failed event is never picked up again
    crashes = [
        e for e in lines_for(logs, "evt_explodes") if e["event"] == "event_processing_crashed"
    ]
    assert len(crashes) == 3
    # the attempts are shown to the operator: admin API and `events show`
    answer = httpx.get(
        f"{running.url}/admin/events/evt_explodes",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert answer.status_code == 200 and answer.json()["event"]["attempts"] == 3
    shown = run_cli(tmp_path / "config.yaml", "events", "show", "evt_explodes").stdout
    assert "3 time(s)" in shown and "gave up after 3 attempts" in shown
    # a replay through the admin API meets the same bug: a reason, not a 500
    replayed = httpx.post(
        f"{running.url}/admin/events/evt_explodes/replay",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["status"] == "failed"
    assert "RuntimeError" in replayed.json()["reason"]
    # and the other events are unaffected
    good = stripe.sample_event(
        "invoice.paid", event_id="evt_fine", object_id="in_fine", customer=CUSTOMER
    )
    assert running.send_stripe(good).status_code == 200
    wait_until(lambda: status_of(running, "evt_fine") is EventStatus.PROCESSED, 10, "a good event")


def test_a_credyt_that_keeps_failing_the_lookup_costs_max_attempts_lookups(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = make_bridge(config_text(str(tmp_path / "bridge.db"), sandbox.url, FAST_RETRIES))
    sandbox.state.inject(fail_next=10_000, fail_status=500, only="customers")
    # no credyt_customer_id: the customer is looked up by the PSP customer id
    event = stripe.sample_event(
        "invoice.paid", event_id="evt_lookup", object_id="in_lookup", customer=""
    )
    assert running.send_stripe(event).status_code == 200
    wait_until(failed(running, "evt_lookup"), 15, "the event to fail")
    time.sleep(0.5)
    # each look-up met the fault, which counts down as it fires
    assert 10_000 - sandbox.state.faults.fail_next == 3
    row = running.bridge.store.get_event("evt_lookup")
    assert row is not None and row.attempts == 3
    assert row.reason is not None and "Credyt unavailable" in row.reason
    assert "after 3 attempts" in row.reason


def test_a_crashing_event_is_not_retried_in_a_hot_loop_with_default_settings(
    running: RunningBridge,
    logs: LogBuffer,
) -> None:
    explode_on_one_event(running)
    event = stripe.sample_event(
        "invoice.paid", event_id="evt_explodes", object_id="in_explodes", customer=CUSTOMER
    )
    assert running.send_stripe(event).status_code == 200
    wait_until(lambda: bool(lines_for(logs, "evt_explodes")), 10, "the first attempt")
    time.sleep(3)  # the default first delay is 2 s, then 4 s: at most two attempts
    crashes = [
        e for e in lines_for(logs, "evt_explodes") if e["event"] == "event_processing_crashed"
    ]
    assert 1 <= len(crashes) <= 2
    assert len(lines_for(logs, "evt_explodes")) <= 6
    row = running.bridge.store.get_event("evt_explodes")
    assert row is not None and row.status is EventStatus.PENDING
    assert row.attempts == len(crashes)
    assert row.reason is not None and "RuntimeError" in row.reason


# -- poison dates -------------------------------------------------------------------------


def stripe_poison(kind: str) -> dict[str, Any]:
    event: dict[str, Any] = stripe.sample_event(
        "invoice.paid", event_id=f"evt_poison_{kind}", object_id=f"in_{kind}", customer=CUSTOMER
    )
    if kind == "created":
        event["created"] = 10**17
    else:
        event["data"]["object"]["lines"]["data"][0]["period"]["end"] = 10**17
    return event


@pytest.mark.parametrize("kind", ["created", "period_end"])
def test_a_stripe_event_with_an_impossible_date_fails_with_a_reason(
    make_bridge: Callable[..., RunningBridge],
    sandbox: Sandbox,
    tmp_path: Path,
    logs: LogBuffer,
    kind: str,
) -> None:
    text = config_text(str(tmp_path / "bridge.db"), sandbox.url, ADMIN)
    text = text.replace(STRIPE_RULE, STRIPE_RULE + "          expires: period_end\n", 1)
    running = start(make_bridge, tmp_path, text)
    event = stripe_poison(kind)
    assert running.send_stripe(event).status_code == 200
    wait_until(failed(running, event["id"]), 10, "the poison event to fail")
    time.sleep(0.3)
    row = running.bridge.store.get_event(event["id"])
    assert row is not None and row.reason is not None
    assert "out of range" in row.reason, row.reason
    assert row.attempts == 1
    assert not [e for e in logs.events() if e["event"] == "event_processing_crashed"]
    assert_renders(running, event["id"], tmp_path)


def test_a_paddle_event_in_year_9999_with_a_30_day_expiry_fails_with_a_reason(
    make_bridge: Callable[..., RunningBridge],
    sandbox: Sandbox,
    tmp_path: Path,
    logs: LogBuffer,
) -> None:
    text = config_text(str(tmp_path / "bridge.db"), sandbox.url, ADMIN)
    text = text.replace(PADDLE_RULE, PADDLE_RULE + "          expires: 30d\n", 1)
    running = start(make_bridge, tmp_path, text)
    event = paddle.sample_event(
        "transaction.completed", event_id="evt_poison_9999", object_id="txn_9999", customer=CUSTOMER
    )
    event["occurred_at"] = "9999-12-31T23:59:59.000000Z"
    assert running.send_paddle(event).status_code == 200
    wait_until(failed(running, "evt_poison_9999"), 10, "the poison event to fail")
    row = running.bridge.store.get_event("evt_poison_9999")
    assert row is not None and row.reason is not None
    assert "out of range" in row.reason, row.reason
    assert not [e for e in logs.events() if e["event"] == "event_processing_crashed"]
    assert_renders(running, "evt_poison_9999", tmp_path)


def start(make_bridge: Callable[..., RunningBridge], tmp_path: Path, text: str) -> RunningBridge:
    (tmp_path / "config.yaml").write_text(text, encoding="utf-8")  # for the CLI
    return make_bridge(text)


def assert_renders(running: RunningBridge, event_id: str, tmp_path: Path) -> None:
    """The admin API and `events show` show the event and its reason, no traceback."""
    answer = httpx.get(
        f"{running.url}/admin/events/{event_id}",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert answer.status_code == 200, answer.text
    assert "out of range" in json.dumps(answer.json())
    shown = run_cli(tmp_path / "config.yaml", "events", "show", event_id, ok=False)
    assert "Traceback" not in shown.stderr + shown.stdout, shown.stderr
    assert shown.returncode == 0, shown.stderr
    assert event_id in shown.stdout
    assert "out of range" in shown.stdout
