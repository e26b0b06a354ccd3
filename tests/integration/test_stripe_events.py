"""Every Stripe event type the bridge acts on, read from real fixtures and samples.

The 2020-08-27 fixtures (real Stripe CLI captures) and the current-API objects from
Stripe's OpenAPI fixtures each map to the right credit, debit or "ignored, because".
Then the rule conditions, amounts and `match:` semantics on every payment event type,
mode safety, thin events, `check`'s warning, and the pre-basil fixtures end to end.
"""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bridge.cli import cli
from bridge.config.loading import parse_config
from bridge.errors import MalformedEventError
from bridge.events import Ignored, Kind, Normalized, PaymentEvent
from bridge.processing.rules import build_credit, matching_rules
from bridge.storage.records import EventStatus
from connectors import stripe
from connectors.stripe import EVENT_READERS, StripeConnector
from tests.conftest import FIXTURES, RunningBridge, Sandbox, config_text

PRE_BASIL = FIXTURES / "stripe" / "pre-basil-2020-08-27"
CURRENT = FIXTURES / "stripe" / "current-api-objects"
CONNECTOR = StripeConnector(secrets=["whsec_x"])


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def wrap(obj: dict[str, Any], event_type: str, event_id: str = "evt_wrapped") -> dict[str, Any]:
    """A current-API object as the data.object of an event."""
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": 1_700_000_000,
        "livemode": False,
        "type": event_type,
        "data": {"object": obj},
    }


def event_of(result: Normalized) -> PaymentEvent:
    assert isinstance(result, PaymentEvent), result
    return result


def ignored(result: Normalized, *words: str) -> None:
    assert isinstance(result, Ignored), result
    for word in words:
        assert word in result.reason, result.reason


# -- the 2020-08-27 fixtures ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["invoice.paid", "invoice.payment_succeeded"])
def test_pre_basil_invoice_events_credit_the_invoice(name: str) -> None:
    event = event_of(CONNECTOR.normalize(load(PRE_BASIL / f"{name}.json")))
    assert event.kind is Kind.PAYMENT
    assert event.payment_key == "in_000000000000000000000000"
    assert (event.currency, event.amount_minor, event.amount) == ("USD", 2000, Decimal("20.00"))
    # the invoice names its PaymentIntent and Charge: refunds naming them find its credit
    assert event.payment_ids == ("pi_000000000000000000000000", "ch_000000000000000000000000")
    assert event.attributes["billing_reason"] == "manual"


def test_pre_basil_payment_intent_credits_the_payment_intent() -> None:
    event = event_of(CONNECTOR.normalize(load(PRE_BASIL / "payment_intent.succeeded.json")))
    assert event.kind is Kind.PAYMENT
    assert event.payment_key == "pi_000000000000000000000000"  # its invoice is null
    assert (event.currency, event.amount) == ("USD", Decimal("20.00"))


def test_pre_basil_payment_intent_of_an_invoice_is_keyed_by_the_invoice() -> None:
    raw = load(PRE_BASIL / "payment_intent.succeeded.json")
    raw["data"]["object"]["invoice"] = "in_000000000000000000000000"
    event = event_of(CONNECTOR.normalize(raw))
    assert event.payment_key == "in_000000000000000000000000"  # same key as invoice.paid
    assert "pi_000000000000000000000000" in event.payment_ids


def test_pre_basil_checkout_session_credits_amount_total_keyed_by_its_payment_intent() -> None:
    raw = load(PRE_BASIL / "checkout.session.completed.payment_mode.json")
    event = event_of(CONNECTOR.normalize(raw))
    assert event.kind is Kind.PAYMENT
    assert event.payment_key == "pi_00000000000000"
    assert (event.currency, event.amount) == ("USD", Decimal("250.00"))
    assert event.psp_customer_id == "cus_00000000000000"
    assert event.attributes == {"mode": "payment", "payment_status": "paid"}


def test_pre_basil_charge_refunded_is_a_cumulative_debit_of_the_charge() -> None:
    event = event_of(CONNECTOR.normalize(load(PRE_BASIL / "charge.refunded.json")))
    assert event.kind is Kind.REVERSAL
    assert event.cumulative
    assert event.payment_key == "ch_000000000000000000000000"  # no payment_intent
    assert event.reversal_key == "ch_000000000000000000000000"
    assert (event.currency, event.amount) == ("USD", Decimal("1.00"))
    assert event.covered_by == ("refund.created", "refund.updated")


def test_pre_basil_dispute_created_as_an_inquiry_is_ignored() -> None:
    raw = load(PRE_BASIL / "charge.dispute.created.json")
    ignored(CONNECTOR.normalize(raw), "inquiry", "warning_needs_response")


def test_pre_basil_dispute_with_funds_at_stake_debits_keyed_by_the_dispute() -> None:
    raw = load(PRE_BASIL / "charge.dispute.created.json")
    raw["data"]["object"]["status"] = "needs_response"
    event = event_of(CONNECTOR.normalize(raw))
    assert event.kind is Kind.REVERSAL
    assert (event.payment_key, event.reversal_key) == (
        "ch_000000000000000000000000",
        "dp_000000000000000000000000",
    )
    assert event.amount == Decimal("1.00")


# -- the current-API objects ----------------------------------------------------------------


def test_current_invoice_draft_paid_nothing() -> None:
    ignored(CONNECTOR.normalize(wrap(load(CURRENT / "invoice.json"), "invoice.paid")), "nothing")


def test_current_invoice_payment_placeholder_is_not_paid() -> None:
    obj = load(CURRENT / "invoice_payment.json")  # status "status", amount_paid null
    ignored(CONNECTOR.normalize(wrap(obj, "invoice_payment.paid")), "obj_123", "not paid")


def test_current_invoice_payment_paid_is_keyed_by_its_invoice() -> None:
    obj = load(CURRENT / "invoice_payment.json")
    obj.update(status="paid", amount_paid=4999, currency="usd", invoice="in_1")
    obj["payment"] = {"type": "payment_intent", "payment_intent": "pi_1"}
    event = event_of(CONNECTOR.normalize(wrap(obj, "invoice_payment.paid")))
    assert event.kind is Kind.PAYMENT
    assert event.payment_key == "in_1"  # the same key as invoice.paid: credited once
    assert event.payment_ids == ("pi_1",)
    assert event.amount == Decimal("49.99")
    # it names no customer: the processor takes the invoice credit's customer
    assert event.customer_hint is None and event.psp_customer_id is None


def test_current_checkout_session_unpaid_waits_for_the_async_payment() -> None:
    obj = load(CURRENT / "checkout.session.json")  # payment_status unpaid
    ignored(
        CONNECTOR.normalize(wrap(obj, "checkout.session.completed")),
        "unpaid",
        "async_payment_succeeded",
    )


def test_current_checkout_session_paid_asynchronously_credits() -> None:
    obj = load(CURRENT / "checkout.session.json")
    obj.update(payment_status="paid", amount_total=1500, currency="eur")
    event = event_of(CONNECTOR.normalize(wrap(obj, "checkout.session.async_payment_succeeded")))
    assert event.payment_key == "pi_1PgafyB7WZ01zgkWSjxsAJo3"
    assert (event.currency, event.amount) == ("EUR", Decimal("15.00"))


def test_current_checkout_session_with_an_invoice_is_keyed_by_the_invoice() -> None:
    obj = load(CURRENT / "checkout.session.json")
    obj.update(payment_status="paid", amount_total=1500, currency="usd", invoice="in_cs")
    event = event_of(CONNECTOR.normalize(wrap(obj, "checkout.session.completed")))
    assert event.payment_key == "in_cs"
    assert "pi_1PgafyB7WZ01zgkWSjxsAJo3" in event.payment_ids


@pytest.mark.parametrize(("mode", "why"), [("subscription", "invoice.paid"), ("setup", "no money")])
def test_current_checkout_session_other_modes_are_ignored(mode: str, why: str) -> None:
    obj = load(CURRENT / "checkout.session.json")
    obj.update(mode=mode, payment_status="paid")
    ignored(CONNECTOR.normalize(wrap(obj, "checkout.session.completed")), mode, why)


def test_current_payment_intent_not_succeeded_is_ignored() -> None:
    obj = load(CURRENT / "payment_intent.json")  # requires_payment_method
    ignored(CONNECTOR.normalize(wrap(obj, "payment_intent.succeeded")), "requires_payment_method")


def test_current_payment_intent_succeeded_credits_amount_received() -> None:
    obj = load(CURRENT / "payment_intent.json")
    obj.update(status="succeeded", amount_received=1099, latest_charge="ch_latest")
    event = event_of(CONNECTOR.normalize(wrap(obj, "payment_intent.succeeded")))
    assert event.payment_key == "pi_1PgafyB7WZ01zgkWSjxsAJo3"
    assert event.payment_ids == ("pi_1PgafyB7WZ01zgkWSjxsAJo3", "ch_latest")
    assert event.amount == Decimal("10.99")


def test_current_refund_succeeded_debits_keyed_by_the_refund() -> None:
    event = event_of(CONNECTOR.normalize(wrap(load(CURRENT / "refund.json"), "refund.created")))
    assert event.kind is Kind.REVERSAL
    assert not event.cumulative
    assert event.reversal_key == "re_1Pgc72B7WZ01zgkWqPvrRrPE"
    assert event.payment_key == "ch_1PgafuB7WZ01zgkWXYmPNZs8"  # payment_intent is null
    assert event.amount == Decimal("1.00")


@pytest.mark.parametrize(
    ("status", "why"),
    [
        ("pending", "refund.updated follows"),
        ("requires_action", "refund.updated follows"),
        ("failed", "no money"),
        ("canceled", "no money"),
    ],
)
def test_current_refund_not_succeeded_is_ignored_with_why(status: str, why: str) -> None:
    obj = load(CURRENT / "refund.json") | {"status": status}
    ignored(CONNECTOR.normalize(wrap(obj, "refund.updated")), status, why)


def test_current_charge_with_nothing_refunded_is_ignored() -> None:
    obj = load(CURRENT / "charge.json")  # amount_refunded 0
    ignored(CONNECTOR.normalize(wrap(obj, "charge.refunded")), "nothing")


def test_current_dispute_inquiry_is_ignored_and_a_real_one_debits() -> None:
    obj = load(CURRENT / "dispute.json")  # warning_needs_response
    ignored(CONNECTOR.normalize(wrap(obj, "charge.dispute.created")), "inquiry")
    obj["status"] = "needs_response"
    event = event_of(CONNECTOR.normalize(wrap(obj, "charge.dispute.funds_withdrawn")))
    assert (event.kind, event.reversal_key) == (Kind.REVERSAL, "dp_1Pgc71B7WZ01zgkWMevJiAUx")
    assert event.amount == Decimal("10.00")


@pytest.mark.parametrize(
    ("event_type", "status"),
    [("charge.dispute.funds_reinstated", "won"), ("charge.dispute.closed", "won")],
)
def test_current_dispute_won_credits_back_under_its_own_key(event_type: str, status: str) -> None:
    obj = load(CURRENT / "dispute.json") | {"status": status}
    event = event_of(CONNECTOR.normalize(wrap(obj, event_type)))
    assert event.kind is Kind.REINSTATEMENT
    assert event.reversal_key == "dp_1Pgc71B7WZ01zgkWMevJiAUx:reinstated"


def test_current_dispute_lost_keeps_its_debit() -> None:
    obj = load(CURRENT / "dispute.json") | {"status": "lost"}
    ignored(CONNECTOR.normalize(wrap(obj, "charge.dispute.closed")), "lost", "debit stands")


def test_current_event_of_another_type_is_ignored() -> None:
    ignored(CONNECTOR.normalize(load(CURRENT / "event.json")), "plan.created")


# -- samples: every type `send` and the demo produce -----------------------------------------

KINDS = {
    "refund.created": Kind.REVERSAL,
    "refund.updated": Kind.REVERSAL,
    "charge.refunded": Kind.REVERSAL,
    "charge.dispute.created": Kind.REVERSAL,
    "charge.dispute.funds_withdrawn": Kind.REVERSAL,
    "charge.dispute.funds_reinstated": Kind.REINSTATEMENT,
    "charge.dispute.closed": Kind.REINSTATEMENT,
}


SAMPLE_IDS = {
    "invoice": "in",
    "invoice_payment": "inpay",
    "checkout.session": "cs",
    "payment_intent": "pi",
    "refund": "re",
    "charge": "ch",
    "charge.dispute": "dp",
}


@pytest.mark.parametrize("version", ["2025-03-31.basil", "2020-08-27"])
@pytest.mark.parametrize("event_type", sorted(EVENT_READERS))
def test_every_sample_reads_back_with_one_payment_key(event_type: str, version: str) -> None:
    raw = stripe.sample_event(
        event_type,
        event_id="evt_s",
        object_id=SAMPLE_IDS[event_type.rsplit(".", 1)[0]] + "_s",
        payment="in_s",
        customer="cust_s",
        amount_minor=1234,
        api_version=version,
        metadata={"credyt_topup": "true"},
    )
    event = event_of(CONNECTOR.normalize(raw))
    assert event.kind is KINDS.get(event_type, Kind.PAYMENT)
    assert event.amount == Decimal("12.34")
    if event.kind is Kind.PAYMENT:
        # every payment event of one payment names its invoice, or links to its PaymentIntent
        assert {event.payment_key, *event.payment_ids} & {"in_s", "pi_s"}
    else:
        assert event.payment_key == "pi_s" and "ch_s" in event.payment_ids


def test_sample_of_an_unknown_type_says_so() -> None:
    with pytest.raises(ValueError, match="no sample"):
        stripe.sample_event("customer.created", event_id="evt_x", object_id="cus_x")


# -- rule conditions and amounts on every payment event type ---------------------------------

RULES = """
connectors:
  stripe:
    type: stripe
    secrets: [whsec_x_abcdefghijklmnopqrstuvwx]
    match: {match}
    rules:
{rules}
"""


def connector_config(rules: str, match: str = "first") -> Any:
    text = "credyt: {api_key: k}\n" + RULES.format(match=match, rules=rules)
    return parse_config(text).connectors["stripe"]


PAYMENT_SAMPLES = {
    "invoice.paid": "in_c",
    "invoice_payment.paid": "inpay_c",
    "checkout.session.completed": "cs_c",
    "payment_intent.succeeded": "pi_c",
}


def sample(event_type: str, **kwargs: Any) -> PaymentEvent:
    args: dict[str, Any] = {
        "event_id": "evt_c",
        "object_id": PAYMENT_SAMPLES[event_type],
        "customer": "cust_c",
        "amount_minor": 1500,
    } | kwargs
    return event_of(CONNECTOR.normalize(stripe.sample_event(event_type, **args)))


CONDITIONS = [
    ("{currency: [EUR]}", {"currency": "eur"}, {"currency": "usd"}),
    ("{livemode: true}", {"livemode": True}, {"livemode": False}),
    ("{metadata: {plan: gold}}", {"metadata": {"plan": "gold"}}, {"metadata": {"plan": "x"}}),
]


@pytest.mark.parametrize(
    ("event_type", "when", "matching", "other"),
    [
        (event_type, *condition)
        for event_type in sorted(PAYMENT_SAMPLES)
        for condition in CONDITIONS
        # invoice_payment objects carry no metadata: the invoice's own event credits it
        if not (event_type == "invoice_payment.paid" and "metadata" in condition[0])
    ],
)
def test_conditions_on_every_payment_type(
    event_type: str, when: str, matching: dict[str, Any], other: dict[str, Any]
) -> None:
    config = connector_config(
        f"      - {{name: r, on: [{event_type}], when: {when}, credit: {{amount: paid}}}}"
    )
    assert [r.name for r in matching_rules(sample(event_type, **matching), config)] == ["r"]
    assert matching_rules(sample(event_type, **other), config) == []


@pytest.mark.parametrize(
    ("when", "fits", "misses"),
    [
        ("{price_ids: [price_gold]}", {"price": "price_gold"}, {"price": "price_x"}),
        ("{product_ids: [prod_gold]}", {"product": "prod_gold"}, {"product": "prod_x"}),
        (
            "{billing_reason: [subscription_create]}",
            {"billing_reason": "subscription_create"},
            {"billing_reason": "manual"},
        ),
    ],
)
@pytest.mark.parametrize("version", ["2025-03-31.basil", "2020-08-27"])
def test_invoice_conditions_in_both_shapes(
    when: str, fits: dict[str, Any], misses: dict[str, Any], version: str
) -> None:
    config = connector_config(
        f"      - {{name: r, on: [invoice.paid], when: {when}, credit: {{amount: paid}}}}"
    )
    assert matching_rules(sample("invoice.paid", api_version=version, **fits), config)
    assert not matching_rules(sample("invoice.paid", api_version=version, **misses), config)


def test_fixed_tokens_per_unit_and_a_rate_for_a_custom_asset() -> None:
    config = connector_config(
        """      - name: tokens
        on: [invoice.paid]
        when: {price_ids: [price_tok]}
        credit: {amount: "1000000", per_unit: true, asset: TOK}
      - name: usd-as-credits
        on: [payment_intent.succeeded]
        credit: {amount: paid, asset: CREDITS, rate: "100"}""",
        match="all",
    )
    invoice = sample("invoice.paid", price="price_tok", quantity=3)
    [rule] = matching_rules(invoice, config)
    body = json.loads(build_credit(rule, invoice, config, "cust_c").body)
    assert (body["asset"], Decimal(body["amount"])) == ("TOK", Decimal(3_000_000))
    intent = sample("payment_intent.succeeded")
    [rule] = matching_rules(intent, config)
    body = json.loads(build_credit(rule, intent, config, "cust_c").body)
    assert (body["asset"], Decimal(body["amount"])) == ("CREDITS", Decimal(1500))


def test_match_first_takes_one_rule_and_match_all_every_rule() -> None:
    rules = """      - {name: usd, on: [invoice.paid], credit: {amount: paid}}
      - {name: tok, on: [invoice.paid], credit: {amount: "5", asset: TOK}}"""
    event = sample("invoice.paid")
    assert [r.name for r in matching_rules(event, connector_config(rules))] == ["usd"]
    assert [r.name for r in matching_rules(event, connector_config(rules, "all"))] == [
        "usd",
        "tok",
    ]


def test_every_event_of_one_payment_has_one_payment_key() -> None:
    old: dict[str, Any] = {"api_version": "2020-08-27"}
    keys = {
        sample("invoice.paid").payment_key,
        event_of(
            CONNECTOR.normalize(
                stripe.sample_event(
                    "invoice.payment_succeeded", event_id="e", object_id="in_c", **old
                )
            )
        ).payment_key,
        sample("invoice_payment.paid", payment="in_c").payment_key,
        sample("payment_intent.succeeded", invoice="in_c", **old).payment_key,
        sample("checkout.session.completed", invoice="in_c").payment_key,
    }
    assert keys == {"in_c"}


# -- mode safety and thin events --------------------------------------------------------------


@pytest.mark.parametrize("event_type", ["payment_intent.succeeded", "refund.created"])
@pytest.mark.parametrize(("mode", "livemode", "acted"), [
    ("live", True, True), ("live", False, False), ("test", False, True), ("test", True, False),
    ("any", True, True), ("any", False, True),
])  # fmt: skip
def test_connector_mode_accepts_only_its_mode(
    event_type: str, mode: str, livemode: bool, acted: bool
) -> None:
    raw = stripe.sample_event(
        event_type, event_id="evt_m", object_id="pi_m", payment="pi_m", livemode=livemode
    )
    result = StripeConnector(secrets=["x"], mode=mode).normalize(raw)
    assert isinstance(result, PaymentEvent) is acted
    if not acted:
        ignored(result, f"accepts {mode} events only")


def test_thin_events_are_rejected_with_a_clear_message() -> None:
    thin = {"id": "evt_thin", "object": "v2.core.event", "type": "v1.invoice.paid"}
    with pytest.raises(MalformedEventError, match="thin events"):
        CONNECTOR.envelope(json.dumps(thin).encode())


# -- `credyt-bridge check` ------------------------------------------------------------------


def test_check_warns_about_an_unconditioned_payment_intent_rule(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "credyt: {api_key: k}\n"
        + RULES.format(
            match="first",
            rules="      - {name: every-pi, on: [payment_intent.succeeded], "
            "credit: {amount: paid}}\n"
            "      - {name: marked-pi, on: [payment_intent.succeeded], "
            "when: {metadata: {credyt_topup: 'true'}}, credit: {amount: paid}}",
        )
    )
    result = CliRunner().invoke(cli, ["check", "--config", str(path)])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert "every-pi" in warnings[0] and "subscription renewals" in warnings[0]


# -- end to end: the pre-basil fixtures through the real bridge -------------------------------


def test_pre_basil_fixtures_credit_then_refund_and_dispute_the_invoice(
    make_bridge: Any, sandbox: Sandbox, tmp_path: Path
) -> None:
    extra_rules = """
      - name: refund
        on: [charge.refunded]
        reverse: {}
      - name: dispute
        on: [charge.dispute.created, charge.dispute.funds_withdrawn]
        reverse: {}
"""
    text = config_text(str(tmp_path / "bridge.db"), sandbox.url)
    text = text.replace(
        "          amount: paid\n  paddle:", "          amount: paid" + extra_rules + "  paddle:", 1
    )
    running: RunningBridge = make_bridge(text)
    customer = sandbox.state.add_customer(external_id="cus_00000000000000")
    sent = []
    for name in ("invoice.paid", "invoice.payment_succeeded", "charge.refunded",
                 "charge.dispute.created"):  # fmt: skip
        raw = load(PRE_BASIL / f"{name}.json")
        raw["id"] = f"evt_{name}"  # the fixtures share one zeroed event id
        sent.append(raw)
    inquiry = copy.deepcopy(sent[-1])
    inquiry["id"], inquiry["type"] = "evt_withdrawn", "charge.dispute.funds_withdrawn"
    inquiry["data"]["object"]["status"] = "needs_response"
    sent.append(inquiry)
    for raw in sent:
        assert running.send_stripe(raw).json() == {"status": "accepted"}
    running.settle()
    # 20.00 once for both invoice events; the charge's 1.00 refund and the 1.00 dispute
    # find the invoice's credit through the charge id the invoice named.
    assert sandbox.state.balance(customer, "USD") == Decimal("18.00")
    assert sandbox.state.conflicts == []
    statuses = {
        row.event_id: (row.status, row.reason)
        for row in running.bridge.store.list_events(_everything())
    }
    assert statuses["evt_charge.dispute.created"][0] is EventStatus.IGNORED
    assert "inquiry" in (statuses["evt_charge.dispute.created"][1] or "")
    debits = [
        json.loads(row.body)
        for row in running.bridge.store.list_adjustments()
        if row.kind == Kind.REVERSAL.value
    ]
    assert sorted(Decimal(str(d["amount"])) for d in debits) == [Decimal(-1), Decimal(-1)]
    assert {d["reason"] for d in debits} == {"external_refund"}


def _everything() -> Any:
    from bridge.storage.records import EventFilter

    return EventFilter(limit=1000)
