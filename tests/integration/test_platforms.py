"""Credyt for Platforms and Stripe Connect, end to end through the bridge and the sandbox.

One Stripe Connect endpoint receives the payments of two connected accounts, each
mapped to its own Credyt account: each is credited in its tenant (the sandbox keeps a
tenant's customers and wallets apart by X-CREDYT-ACCOUNT), an unmapped account's
payment is credited nowhere, and one PaymentIntent id in both tenants gives two
transaction ids. Without an account the ids are what they always were.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from bridge.processing.rules import transaction_id
from bridge.storage.records import EventFilter, EventStatus
from connectors import stripe
from tests.conftest import STRIPE_SECRET, RunningBridge, Sandbox, bridge_config
from tests.integration.test_metrics import scrape, value

CONNECT = """
  stripe:
    type: stripe
    secrets: ["{secret}"]
    accounts:
      acct_1TENANTA: acc_tenant_a
      acct_1TENANTB: acc_tenant_b
{extra}    rules:
      - name: topup
        on: payment_intent.succeeded
        when: {{metadata: {{credyt_topup: "true"}}}}
        credit: {{amount: paid}}
      - name: refunds
        on: [refund.created, refund.updated]
        reverse: {{}}
"""


def connect_config(database: str, sandbox: Sandbox, extra: str = "") -> str:
    return bridge_config(database, sandbox.url, CONNECT.format(secret=STRIPE_SECRET, extra=extra))


def topup(event_id: str, account: str | None, customer: str, amount_minor: int) -> dict[str, Any]:
    event = stripe.sample_event(
        "payment_intent.succeeded",
        event_id=event_id,
        object_id="pi_shared",
        customer=customer,
        amount_minor=amount_minor,
        metadata={"credyt_topup": "true"},
    )
    if account is not None:
        event["account"] = account
    return event


def test_connected_accounts_are_credited_in_their_own_credyt_accounts(
    tmp_path: Any, sandbox: Sandbox, make_bridge: Callable[..., RunningBridge]
) -> None:
    tenant_a, tenant_b = sandbox.state.tenant("acc_tenant_a"), sandbox.state.tenant("acc_tenant_b")
    tenant_a.add_customer(customer_id="cust_same")
    tenant_b.add_customer(customer_id="cust_same")
    sandbox.state.add_customer(customer_id="cust_same")  # the platform's own wallet
    bridge = make_bridge(connect_config(str(tmp_path / "b.db"), sandbox))

    for event in (
        topup("evt_a", "acct_1TENANTA", "cust_same", 1500),
        topup("evt_b", "acct_1TENANTB", "cust_same", 2500),
        topup("evt_c", "acct_1UNMAPPED", "cust_same", 9900),
    ):
        assert bridge.send_stripe(event).status_code == 200
    bridge.settle()

    assert tenant_a.balance("cust_same", "USD") == Decimal("15.00")
    assert tenant_b.balance("cust_same", "USD") == Decimal("25.00")
    assert sandbox.state.balance("cust_same", "USD") == Decimal("0")  # never the platform's
    a_ids = [a["transaction_id"] for a in tenant_a.adjustments]
    b_ids = [a["transaction_id"] for a in tenant_b.adjustments]
    assert len(a_ids) == len(b_ids) == 1 and a_ids != b_ids
    assert a_ids[0] == transaction_id("stripe", "acc_tenant_a:pi_shared", "topup")
    assert sandbox.state.adjustments == []

    failed = bridge.bridge.store.list_events(EventFilter(status=EventStatus.FAILED.value))
    assert [e.event_id for e in failed] == ["evt_c"]
    assert "acct_1UNMAPPED has no Credyt account" in (failed[0].reason or "")
    rows = {r.transaction_id: r for r in bridge.bridge.store.list_adjustments()}
    assert {r.credyt_account for r in rows.values()} == {"acc_tenant_a", "acc_tenant_b"}
    in_a = bridge.bridge.store.list_events(EventFilter(credyt_account="acc_tenant_a"))
    assert [e.event_id for e in in_a] == ["evt_a"]

    samples = scrape(bridge)
    for tenant, amount in (("acc_tenant_a", 15.0), ("acc_tenant_b", 25.0)):
        labels = {"asset": "USD", "direction": "credit", "account": tenant}
        assert value(samples, "bridge_adjusted_amount_total", **labels) == amount


def test_a_refund_of_a_connected_account_debits_its_tenant(
    tmp_path: Any, sandbox: Sandbox, make_bridge: Callable[..., RunningBridge]
) -> None:
    tenant_a = sandbox.state.tenant("acc_tenant_a")
    tenant_a.add_customer(customer_id="cust_a")
    bridge = make_bridge(connect_config(str(tmp_path / "b.db"), sandbox))
    assert bridge.send_stripe(topup("evt_pay", "acct_1TENANTA", "cust_a", 4000)).status_code == 200
    refund = stripe.sample_event(
        "refund.created",
        event_id="evt_refund",
        object_id="re_1",
        payment="pi_shared",
        amount_minor=1000,
    )
    refund["account"] = "acct_1TENANTA"
    assert bridge.send_stripe(refund).status_code == 200
    bridge.settle()
    assert tenant_a.balance("cust_a", "USD") == Decimal("30.00")


def test_an_unmapped_account_can_be_ignored_instead(
    tmp_path: Any, sandbox: Sandbox, make_bridge: Callable[..., RunningBridge]
) -> None:
    sandbox.state.add_customer(customer_id="cust_p")
    config = connect_config(str(tmp_path / "b.db"), sandbox, "    unmapped_account: ignore\n")
    bridge = make_bridge(config)
    assert bridge.send_stripe(topup("evt_x", "acct_1OTHER", "cust_p", 700)).status_code == 200
    bridge.settle()
    (event,) = bridge.bridge.store.list_events(EventFilter())
    assert event.status is EventStatus.IGNORED and "acct_1OTHER" in (event.reason or "")
    assert sandbox.state.adjustments == [] and sandbox.state.tenants == {}


def test_a_connector_with_a_credyt_account_sends_its_header(
    tmp_path: Any, sandbox: Sandbox, make_bridge: Callable[..., RunningBridge]
) -> None:
    tenant = sandbox.state.tenant("acc_single")
    tenant.add_customer(customer_id="cust_t")
    sandbox.state.add_customer(customer_id="cust_t")
    config = connect_config(str(tmp_path / "b.db"), sandbox, "    credyt: {account: acc_single}\n")
    bridge = make_bridge(config)
    assert bridge.send_stripe(topup("evt_own", None, "cust_t", 1200)).status_code == 200
    bridge.settle()
    assert tenant.balance("cust_t", "USD") == Decimal("12.00")
    labels = {"asset": "USD", "direction": "credit", "account": "acc_single"}
    assert value(scrape(bridge), "bridge_adjusted_amount_total", **labels) == 12.0
    assert sandbox.state.balance("cust_t", "USD") == Decimal("0")
    (row,) = tenant.adjustments
    assert row["transaction_id"] == transaction_id("stripe", "acc_single:pi_shared", "topup")


def test_a_tenant_s_own_asset_precision_is_asked_in_its_account(
    tmp_path: Any, sandbox: Sandbox, make_bridge: Callable[..., RunningBridge]
) -> None:
    tenant_a = sandbox.state.tenant("acc_tenant_a")
    tenant_a.add_customer(customer_id="cust_tok")
    tenant_a.add_asset("TOK", 0)  # the platform's own TOK (not added) has 2 places
    rules = CONNECT.replace(
        "credit: {{amount: paid}}", 'credit: {{amount: paid, asset: TOK, rate: "1.55"}}'
    )
    text = bridge_config(
        str(tmp_path / "b.db"), sandbox.url, rules.format(secret=STRIPE_SECRET, extra="")
    )
    bridge = make_bridge(text)
    assert (
        bridge.send_stripe(topup("evt_tok", "acct_1TENANTA", "cust_tok", 1000)).status_code == 200
    )
    bridge.settle()
    assert tenant_a.balance("cust_tok", "TOK") == Decimal("15")  # 15.5 cut to 0 places
