"""Platforms and safety rails in the rules and the config: `unless:`, `account` and
`application` conditions, the Connect account mapping, and what each key refuses."""

from __future__ import annotations

import uuid

import pytest

from bridge.config.loading import parse_config
from bridge.config.schema import ConnectorConfig
from bridge.errors import BackfillError, ConfigError, EventError
from bridge.events import PaymentEvent
from bridge.processing.rules import build_credit, matching_rules
from bridge.processing.tenants import Unmapped, credyt_account_for, in_account
from connectors import stripe
from connectors.stripe import StripeConnector

SECRET = "whsec_test_" + "a" * 32
CONFIG = """
credyt: {{api_key: k}}
connectors:
  stripe:
    type: stripe
    secrets: ["{secret}"]
{extra}    rules:
{rules}
"""
TOPUP = """
      - name: topup
        on: payment_intent.succeeded
        when: {metadata: {credyt_topup: "true"}}
        unless: {application: "*"}
        credit: {amount: paid}
"""


def connector_config(rules: str = TOPUP, extra: str = "") -> ConnectorConfig:
    return parse_config(CONFIG.format(secret=SECRET, extra=extra, rules=rules)).connectors["stripe"]


def intent(*, application: str | None = None, account: str | None = None) -> PaymentEvent:
    raw = stripe.sample_event(
        "payment_intent.succeeded",
        event_id="evt_1",
        object_id="pi_1",
        customer="cust_1",
        metadata={"credyt_topup": "true"},
    )
    obj = raw["data"]["object"]  # type: ignore[index]
    if application is not None:
        obj["application"] = application
    if account is not None:
        raw["account"] = account
    event = StripeConnector(secrets=[SECRET]).normalize(raw)
    assert isinstance(event, PaymentEvent)
    return event


def test_unless_excludes_a_payment_a_connect_application_made() -> None:
    config = connector_config()
    assert [r.name for r in matching_rules(intent(), config)] == ["topup"]
    assert matching_rules(intent(application="ca_credyt"), config) == []


def test_unless_with_several_keys_excludes_when_any_one_holds() -> None:
    rules = TOPUP.replace(
        'unless: {application: "*"}', "unless: {application: [ca_x], account: [acct_1BAD]}"
    )
    config = connector_config(rules)
    assert matching_rules(intent(account="acct_1BAD"), config) == []
    assert matching_rules(intent(application="ca_x"), config) == []
    assert len(matching_rules(intent(application="ca_y"), config)) == 1


def test_when_account_selects_one_connected_account() -> None:
    rules = TOPUP.replace('unless: {application: "*"}', "").replace(
        'when: {metadata: {credyt_topup: "true"}}', "when: {account: [acct_1A]}"
    )
    config = connector_config(rules)
    assert len(matching_rules(intent(account="acct_1A"), config)) == 1
    assert matching_rules(intent(account="acct_1B"), config) == []
    assert matching_rules(intent(), config) == []


def test_the_stripe_reader_puts_account_and_application_on_the_event() -> None:
    event = intent(application="ca_1", account="acct_1A")
    assert (event.account, event.application) == ("acct_1A", "ca_1")
    assert (intent().account, intent().application) == (None, None)


def test_without_a_credyt_account_ids_stay_those_of_psp_payment_rule() -> None:
    config = connector_config()
    event = intent()
    assert credyt_account_for(event, config) is None
    assert in_account(event, None) is event
    credit = build_credit(config.rules[0], event, config, "cust_1")
    namespace = uuid.UUID("3f0c6a4e-9a51-4c36-8f5e-0a8d9c2b7e11")  # never changes
    assert credit.transaction_id == str(uuid.uuid5(namespace, "stripe:pi_1:topup"))


def test_a_mapped_account_scopes_the_payment_and_its_ids() -> None:
    config = connector_config(extra="    accounts: {acct_1A: acc_a, acct_1B: acc_b}\n")
    ids = []
    for account, tenant in (("acct_1A", "acc_a"), ("acct_1B", "acc_b")):
        event = intent(account=account)
        assert credyt_account_for(event, config) == tenant
        scoped = in_account(event, tenant)
        assert scoped.payment_key == f"{tenant}:pi_1" and scoped.credyt_account == tenant
        rule = config.rules[0]
        ids.append(build_credit(rule, scoped, config, "cust_1").transaction_id)
    assert ids[0] != ids[1]
    unmapped = credyt_account_for(intent(account="acct_1C"), config)
    assert isinstance(unmapped, Unmapped) and not unmapped.ignore


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("    accounts: {acct_1A: 'a b'}\n", "is not a Credyt account"),
        ("    accounts: {cus_1: acc_a}\n", "is not a Stripe account id"),
        ("    credyt: {account: '../x'}\n", "must be 1 to 64 letters"),
        ("    credyt: {acount: acc_a}\n", "unknown key"),
        ("    unmapped_account: credit\n", "must be one of fail, ignore"),
        ("    customer_metadata: maybe\n", "must be one of trust, verify, ignore"),
    ],
)
def test_platform_keys_refuse_what_they_can_not_use(extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        connector_config(extra=extra)


def test_only_a_stripe_connector_maps_connected_accounts() -> None:
    text = """
credyt: {api_key: k}
connectors:
  paddle:
    type: paddle
    secrets: [pdl_ntfset_test_abcdefghijklmnopqrstuvwxyz]
    accounts: {acct_1A: acc_a}
    rules: []
"""
    with pytest.raises(ConfigError, match="only a stripe connector has it"):
        parse_config(text)


def test_paddle_events_have_no_application_to_exclude() -> None:
    text = """
credyt: {api_key: k}
connectors:
  paddle:
    type: paddle
    secrets: [pdl_ntfset_test_abcdefghijklmnopqrstuvwxyz]
    rules:
      - name: t
        on: transaction.completed
        unless: {application: "*"}
        credit: {amount: paid}
"""
    with pytest.raises(ConfigError, match="paddle events have no application"):
        parse_config(text)


@pytest.mark.parametrize("account", ["", "acct_", "cus_1", "acct_1/../x", 7, ["acct_1"]])
def test_an_event_naming_no_valid_account_fails_instead_of_crediting_the_platform(
    account: object,
) -> None:
    raw = stripe.sample_event(
        "payment_intent.succeeded", event_id="evt_1", object_id="pi_1", customer="cust_1"
    )
    raw["account"] = account
    with pytest.raises(EventError, match="not a Stripe account id"):
        StripeConnector(secrets=[SECRET]).normalize(raw)


def test_a_listed_event_of_a_connected_account_carries_that_account() -> None:
    from connectors.stripe.events_api import StripeEvents

    source = StripeEvents("sk_test_x", "http://127.0.0.1:9", account="acct_1A")
    try:
        raw = '{"id": "evt_1", "amount": 1.10, "type": "payment_intent.succeeded"}'
        stored = source._of_account({"id": "evt_1"}, raw)
        assert stored == '{"account": "acct_1A", ' + raw[1:]  # the rest byte for byte
        named = '{"id": "evt_2", "account": "acct_1A"}'
        assert source._of_account({"id": "evt_2", "account": "acct_1A"}, named) == named
        with pytest.raises(BackfillError, match="of account acct_1B"):
            source._of_account({"id": "evt_3", "account": "acct_1B"}, "{}")
    finally:
        source.close()
    with pytest.raises(BackfillError, match="not a Stripe account id"):
        StripeEvents("sk_test_x", account="cus_1")


def test_paddle_has_no_connected_accounts_to_backfill() -> None:
    from connectors.paddle import PaddleConnector

    with pytest.raises(BackfillError, match="takes no --account"):
        PaddleConnector.events_api("k", None, "1", account="acct_1A")
