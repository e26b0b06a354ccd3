"""Amount limits end to end: a credit over its asset's limit is held (logged and
counted for alerts), `outbox approve` delivers it exactly once, `outbox reject` leaves
the wallet untouched with the decision on record, and refunds are never held.

The bridge runs on loopback against the sandbox; the decisions are the real
`credyt-bridge outbox approve|reject` commands on the same database.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from bridge.storage.records import AdjustmentStatus
from connectors import stripe
from tests.conftest import STRIPE_SECRET, RunningBridge, Sandbox, bridge_config, wait_until
from tests.helpers.logs import LogBuffer
from tests.helpers.operator import run_cli
from tests.integration.test_metrics import scrape, value

CONNECTORS = """
  stripe:
    type: stripe
    secrets: ["{secret}"]
    rules:
      - name: topup
        on: payment_intent.succeeded
        when: {{metadata: {{credyt_topup: "true"}}}}
        credit: {{amount: paid}}
      - name: refunds
        on: [refund.created, refund.updated]
        reverse: {{}}
"""
LIMITS = """limits:
  USD: {max_adjustment: "100", max_per_customer_day: "150"}
"""


def start(
    tmp_path: Path, sandbox: Sandbox, make_bridge: Callable[..., RunningBridge]
) -> tuple[RunningBridge, Path]:
    text = bridge_config(
        str(tmp_path / "bridge.db"), sandbox.url, CONNECTORS.format(secret=STRIPE_SECRET)
    )
    text = text.replace("connectors:\n", LIMITS + "connectors:\n", 1)
    config = tmp_path / "config.yaml"
    config.write_text(text)
    return make_bridge(config=text), config


def topup(n: int, customer: str, amount_minor: int) -> dict[str, Any]:
    return stripe.sample_event(
        "payment_intent.succeeded",
        event_id=f"evt_{n}",
        object_id=f"pi_{n}",
        customer=customer,
        amount_minor=amount_minor,
        metadata={"credyt_topup": "true"},
    )


def outbox(config: Path, status: str) -> list[dict[str, Any]]:
    listed = run_cli(config, "outbox", "list", "--status", status, "--json").stdout
    rows: list[dict[str, Any]] = json.loads(listed)
    return rows


def test_a_credit_over_the_limit_is_held_then_delivered_once_after_approve(
    tmp_path: Path,
    sandbox: Sandbox,
    make_bridge: Callable[..., RunningBridge],
    logs: LogBuffer,
) -> None:
    customer = sandbox.state.add_customer()
    bridge, config = start(tmp_path, sandbox, make_bridge)
    assert bridge.send_stripe(topup(1, customer, 50_000)).status_code == 200  # 500 > 100
    assert bridge.send_stripe(topup(2, customer, 4_000)).status_code == 200  # 40: fine
    bridge.settle()

    assert sandbox.state.balance(customer, "USD") == Decimal("40.00")
    (held,) = outbox(config, "held")
    assert Decimal(held["amount"]) == 500 and "over the limit of 100" in held["last_error"]
    alerts = [e for e in logs.events() if e.get("event") == "adjustment_held"]
    assert [a["transaction_id"] for a in alerts] == [held["transaction_id"]]
    assert value(scrape(bridge), "bridge_adjustments_held_total", asset="USD") == 1
    assert value(scrape(bridge), "bridge_outbox_adjustments", status="held") == 1

    # `outbox retry` does not send a held credit; only approve does
    run_cli(config, "outbox", "retry", str(held["id"]))
    approved = run_cli(config, "outbox", "approve", str(held["id"]), "--note", "checked")
    assert "approved by" in approved.stdout and "checked" in approved.stdout
    wait_until(lambda: sandbox.state.balance(customer, "USD") == Decimal("540.00"), 10)
    bridge.settle()
    again = run_cli(config, "outbox", "approve", str(held["id"]), ok=False)
    assert again.returncode != 0 and "not held" in again.stderr
    assert len(sandbox.state.adjustments) == 2  # exactly once
    row = bridge.bridge.store.get_adjustment(str(held["id"]))
    assert row is not None and row.status is AdjustmentStatus.DELIVERED
    decisions = [a["outcome"] for a in bridge.bridge.store.attempts_for(row.id)]
    assert decisions[0] == "approved"


def test_reject_leaves_the_wallet_untouched_with_the_decision_on_record(
    tmp_path: Path, sandbox: Sandbox, make_bridge: Callable[..., RunningBridge]
) -> None:
    customer = sandbox.state.add_customer()
    bridge, config = start(tmp_path, sandbox, make_bridge)
    for n in (1, 2):  # 80 + 80 in a day is over 150: the second is held
        assert bridge.send_stripe(topup(n, customer, 8_000)).status_code == 200
        bridge.settle()
    (held,) = outbox(config, "held")
    assert "per customer per day" in held["last_error"]

    run_cli(config, "outbox", "reject", held["transaction_id"], "--note", "card testing")
    (rejected,) = outbox(config, "rejected")
    assert rejected["id"] == held["id"]
    assert "rejected by" in rejected["last_error"] and "card testing" in rejected["last_error"]
    # replaying the event does not credit the payment again
    run_cli(config, "replay", "evt_2")
    bridge.settle()
    assert sandbox.state.balance(customer, "USD") == Decimal("80.00")
    assert outbox(config, "held") == []


def test_refunds_are_never_held(
    tmp_path: Path, sandbox: Sandbox, make_bridge: Callable[..., RunningBridge]
) -> None:
    customer = sandbox.state.add_customer()
    bridge, config = start(tmp_path, sandbox, make_bridge)
    assert bridge.send_stripe(topup(1, customer, 9_000)).status_code == 200
    bridge.settle()
    refund = stripe.sample_event(
        "refund.created", event_id="evt_r", object_id="re_1", payment="pi_1", amount_minor=9_000
    )
    assert bridge.send_stripe(refund).status_code == 200
    bridge.settle()
    assert sandbox.state.balance(customer, "USD") == Decimal("0.00")
    assert outbox(config, "held") == []


def test_the_admin_api_decides_held_adjustments_behind_its_token(
    tmp_path: Path, sandbox: Sandbox, make_bridge: Callable[..., RunningBridge]
) -> None:
    token = "admin-token-for-tests-0123456789"
    customer = sandbox.state.add_customer()
    text = bridge_config(
        str(tmp_path / "bridge.db"), sandbox.url, CONNECTORS.format(secret=STRIPE_SECRET)
    )
    text = text.replace("connectors:\n", LIMITS + "connectors:\n", 1)
    bridge = make_bridge(config=text + f"server:\n  admin_token: {token}\n")
    for n in (1, 2):
        assert bridge.send_stripe(topup(n, customer, 20_000)).status_code == 200
    bridge.settle()
    held = sorted(r.id for r in bridge.bridge.store.list_adjustments("held"))
    assert len(held) == 2
    auth = {"Authorization": f"Bearer {token}"}
    url = f"{bridge.url}/admin/adjustments"
    assert httpx.post(f"{url}/{held[0]}/approve").status_code == 401
    approved = httpx.post(f"{url}/{held[0]}/approve", headers=auth, json={"note": "ok"})
    assert approved.status_code == 200 and "approved by" in approved.json()["decision"]
    rejected = httpx.post(f"{url}/{held[1]}/reject", headers=auth, json={"note": "no"})
    assert rejected.status_code == 200
    assert httpx.post(f"{url}/{held[1]}/approve", headers=auth).status_code == 400
    wait_until(lambda: sandbox.state.balance(customer, "USD") == Decimal("200.00"), 10)
    bridge.settle()
    assert len(sandbox.state.adjustments) == 1


def test_a_refund_waits_for_a_held_credit_and_takes_nothing_after_reject(
    tmp_path: Path, sandbox: Sandbox, make_bridge: Callable[..., RunningBridge]
) -> None:
    customer = sandbox.state.add_customer()
    bridge, config = start(tmp_path, sandbox, make_bridge)
    assert bridge.send_stripe(topup(1, customer, 30_000)).status_code == 200  # held
    wait_until(lambda: len(bridge.bridge.store.list_adjustments("held")) == 1, 10)
    refund = stripe.sample_event(
        "refund.created", event_id="evt_r", object_id="re_1", payment="pi_1", amount_minor=30_000
    )
    assert bridge.send_stripe(refund).status_code == 200
    wait_until(lambda: "held for an operator" in (_reason(bridge, "evt_r") or ""), 10)
    (held,) = outbox(config, "held")
    run_cli(config, "outbox", "reject", str(held["id"]))
    run_cli(config, "replay", "evt_r")
    event = bridge.bridge.store.get_event("evt_r")
    assert event is not None and event.status.value == "ignored"
    assert "rejected by an operator" in (event.reason or "")
    assert sandbox.state.adjustments == []  # neither the credit nor a debit was sent
    assert sandbox.state.balance(customer, "USD") == Decimal("0")


def _reason(bridge: RunningBridge, event_id: str) -> str | None:
    event = bridge.bridge.store.get_event(event_id)
    return None if event is None else event.reason
