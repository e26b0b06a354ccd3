"""Beside Credyt's own top-up rails: the example config's top-up rules credit only
payments the integrator marks, and none a Connect application (Credyt's rails) made.

The bridge runs on the embedded config.example.yaml, unchanged, against the sandbox.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bridge.cli import cli
from bridge.config import EXAMPLE_CONFIG
from bridge.storage.records import EventFilter
from connectors import stripe
from tests.conftest import API_KEY, PADDLE_SECRET, STRIPE_SECRET, RunningBridge, Sandbox


@pytest.fixture
def example_bridge(
    tmp_path: Path,
    sandbox: Sandbox,
    make_bridge: Callable[..., RunningBridge],
    monkeypatch: pytest.MonkeyPatch,
) -> RunningBridge:
    for name, value in {
        "CREDYT_API_URL": sandbox.url,
        "CREDYT_API_KEY": API_KEY,
        "STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
        "PADDLE_WEBHOOK_SECRET": PADDLE_SECRET,
        "BRIDGE_DATABASE": str(tmp_path / "bridge.db"),
    }.items():
        monkeypatch.setenv(name, value)
    return make_bridge(config=EXAMPLE_CONFIG.read_text())


def session(suffix: str, customer: str, **metadata: str) -> dict[str, Any]:
    return stripe.sample_event(
        "checkout.session.completed",
        event_id=f"evt_{suffix}",
        object_id=f"cs_{suffix}",
        customer=customer,
        amount_minor=5000,
        metadata=metadata,
    )


def test_only_marked_top_ups_of_the_account_itself_are_credited(
    example_bridge: RunningBridge, sandbox: Sandbox
) -> None:
    customer = sandbox.state.add_customer()
    # Credyt's Billing Portal session: made by a Connect application, no marker of ours
    by_credyt = session("credyt", customer)
    by_credyt["data"]["object"]["payment_intent"] = {
        "id": "pi_credyt",
        "object": "payment_intent",
        "application": "ca_credyt",
    }
    # even marked, a PaymentIntent a Connect application created is excluded
    app_intent = stripe.sample_event(
        "payment_intent.succeeded",
        event_id="evt_app_pi",
        object_id="pi_app",
        customer=customer,
        amount_minor=7000,
        metadata={"credyt_topup": "true"},
    )
    app_intent["data"]["object"]["application"] = "ca_credyt"  # type: ignore[index]
    unmarked = session("unmarked", customer)
    marked = session("marked", customer, credyt_topup="true")
    for event in (by_credyt, app_intent, unmarked, marked, marked):
        assert example_bridge.send_stripe(event).status_code == 200
    example_bridge.settle()

    assert sandbox.state.balance(customer, "USD") == Decimal("50.00")
    assert len(sandbox.state.adjustments) == 1
    reasons = {
        e.event_id: e.reason or ""
        for e in example_bridge.bridge.store.list_events(EventFilter(status="ignored"))
    }
    assert set(reasons) == {"evt_credyt", "evt_app_pi", "evt_unmarked"}
    assert all("no rule" in why for why in reasons.values())


def test_check_passes_the_example_and_warns_about_an_unmarked_top_up_rule(
    tmp_path: Path,
) -> None:
    env = {
        "CREDYT_API_KEY": API_KEY,
        "STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
        "PADDLE_WEBHOOK_SECRET": PADDLE_SECRET,
    }
    clean = CliRunner().invoke(cli, ["check", "--config", str(EXAMPLE_CONFIG)], env=env)
    assert clean.exit_code == 0, clean.output
    assert "warning:" not in clean.stderr

    unmarked = EXAMPLE_CONFIG.read_text().replace(
        '        when:\n          metadata: {credyt_topup: "true"}\n        unless:\n'
        '          application: "*"\n        credit:\n          amount: paid\n'
        "          reason: external_topup\n      # A top-up paid with a PaymentIntent",
        "        credit:\n          amount: paid\n"
        "          reason: external_topup\n      # A top-up paid with a PaymentIntent",
    )
    assert unmarked != EXAMPLE_CONFIG.read_text()
    path = tmp_path / "config.yaml"
    path.write_text(unmarked)
    result = CliRunner().invoke(cli, ["check", "--config", str(path)], env=env)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert "topup-checkout" in warnings[0] and "neither a marker" in warnings[0]
