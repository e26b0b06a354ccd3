"""`GET /metrics` moves as webhooks, events and deliveries flow through a real bridge."""

from __future__ import annotations

import json

import httpx
from prometheus_client.parser import text_string_to_metric_families

from connectors import paddle, stripe
from tests.conftest import RunningBridge, Sandbox


def scrape(running: RunningBridge) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{running.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_move_as_events_flow(running: RunningBridge, sandbox: Sandbox) -> None:
    before = scrape(running)
    assert value(before, "bridge_webhooks_total", connector="stripe", outcome="accepted") == 0
    assert value(before, "bridge_oldest_pending_adjustment_seconds") == 0

    customer = sandbox.state.add_customer(external_id="cus_metrics")
    paid = stripe.sample_event(
        "invoice.paid",
        event_id="evt_metrics_1",
        object_id="in_metrics_1",
        psp_customer="cus_metrics",
        amount_minor=4999,
        currency="usd",
    )
    assert running.send_stripe(paid).status_code == 200
    assert running.send_stripe(paid).status_code == 200  # a duplicate
    forged = running.send_stripe(paid, secret="whsec_not_the_secret")
    assert forged.status_code == 400
    unsigned = running.post("paddle", json.dumps({"event_id": "evt_x"}).encode(), {})
    assert unsigned.status_code == 400
    unknown = stripe.sample_event(
        "invoice.paid",
        event_id="evt_metrics_2",
        object_id="in_metrics_2",
        psp_customer="cus_nobody",
        amount_minor=100,
        currency="usd",
    )
    assert running.send_stripe(unknown).status_code == 200
    txn = paddle.sample_event(
        "transaction.completed",
        event_id="evt_metrics_3",
        object_id="txn_metrics_3",
        customer=customer,
        amount_minor=1250,
        currency="EUR",
    )
    assert running.send_paddle(txn).status_code == 200
    running.settle()

    after = scrape(running)
    webhooks = "bridge_webhooks_total"
    assert value(after, webhooks, connector="stripe", outcome="accepted") == 2
    assert value(after, webhooks, connector="stripe", outcome="duplicate") == 1
    assert value(after, webhooks, connector="stripe", outcome="rejected") == 1
    assert value(after, webhooks, connector="paddle", outcome="accepted") == 1
    assert value(after, webhooks, connector="paddle", outcome="rejected") == 1
    failures = "bridge_signature_failures_total"
    assert value(after, failures, connector="stripe", reason="mismatch") == 1
    assert value(after, failures, connector="paddle", reason="missing") == 1
    processed = "bridge_events_processed_total"
    assert value(after, processed, connector="stripe", status="processed") == 1
    assert value(after, processed, connector="stripe", status="failed") == 1
    assert value(after, processed, connector="paddle", status="processed") == 1
    assert value(after, "bridge_deliveries_total", result="delivered") == 2
    amount = "bridge_adjusted_amount_total"
    assert value(after, amount, asset="USD", direction="credit") == 49.99
    assert value(after, amount, asset="EUR", direction="credit") == 12.5
    assert value(after, "bridge_outbox_adjustments", status="delivered") == 2
    assert value(after, "bridge_inbox_events", status="failed") == 1
    assert value(after, "bridge_receive_to_stored_seconds_count") == 4  # stored or duplicate
    assert value(after, "bridge_receive_to_delivered_seconds_count") == 2
    assert value(after, "bridge_oldest_pending_adjustment_seconds") == 0


def test_a_stuck_adjustment_shows_in_depth_and_age(
    running: RunningBridge, sandbox: Sandbox
) -> None:
    customer = sandbox.state.add_customer()
    sandbox.state.inject(fail_next=1000, fail_status=503, only="adjustments")
    paid = stripe.sample_event(
        "invoice.paid",
        event_id="evt_metrics_stuck",
        object_id="in_metrics_stuck",
        customer=customer,
        amount_minor=500,
        currency="usd",
    )
    assert running.send_stripe(paid).status_code == 200

    def retried() -> bool:
        return value(scrape(running), "bridge_deliveries_total", result="retry") >= 2

    from tests.conftest import wait_until

    wait_until(retried, what="two failed delivery attempts")
    samples = scrape(running)
    assert value(samples, "bridge_outbox_adjustments", status="pending") == 1
    assert value(samples, "bridge_oldest_pending_adjustment_seconds") > 0

    sandbox.state.inject()
    running.settle()
    samples = scrape(running)
    assert value(samples, "bridge_outbox_adjustments", status="pending") == 0
    assert value(samples, "bridge_oldest_pending_adjustment_seconds") == 0
    assert value(samples, "bridge_deliveries_total", result="delivered") == 1


def test_every_metric_is_in_the_readme() -> None:
    from pathlib import Path

    from bridge.metrics import Metrics

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("\n## Metrics\n")[1].split("\n## ")[0]
    for family in Metrics().registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        assert f"`{name}" in section, name
