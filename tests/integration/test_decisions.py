"""Money is decided once per payment: across processes, after prune, whichever id came first.

Real parts only: the bridge on uvicorn on loopback with a real SQLite file, the Credyt
sandbox on another loopback port, signed Stripe and Paddle webhooks over HTTP, and the
real command line as a subprocess beside the serving bridge.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bridge.storage.records import EventStatus
from bridge.storage.sqlite import SQLiteStore
from connectors import paddle, stripe
from tests.conftest import API_KEY, PADDLE_SECRET, STRIPE_SECRET, RunningBridge, Sandbox
from tests.helpers.logs import LogBuffer

# config.example.yaml's Stripe rules, and a Paddle connector; {refund} names the reverse
# rules, so a test can split or rename them.
CONFIG = """
database: {database}
credyt:
  api_url: {api_url}
  api_key: {api_key}
  timeout: 10
delivery:
  backoff_initial: 0.05
  backoff_max: 0.5
connectors:
  stripe:
    type: stripe
    secrets: ["{stripe_secret}"]
    match: first
    rules:
      - name: subscription-payment
        on: invoice.paid
        credit: {{amount: paid, reason: external_topup}}
      - name: topup-checkout
        on: [checkout.session.completed, checkout.session.async_payment_succeeded]
        credit: {{amount: paid, reason: external_topup}}
      - name: topup-payment-intent
        on: payment_intent.succeeded
        when: {{metadata: {{credyt_topup: "true"}}}}
        credit: {{amount: paid, reason: external_topup}}
{stripe_refunds}
  paddle:
    type: paddle
    secrets: ["{paddle_secret}"]
    rules:
      - name: transaction
        on: transaction.completed
        credit: {{amount: paid}}
{paddle_refunds}
"""

ONE_REFUND_RULE = """      - name: refund
        on: [refund.created, refund.updated, charge.refunded]
        reverse: {reason: external_refund, unknown_original: {unknown}}"""

PADDLE_ONE_RULE = """      - name: refund
        on: [adjustment.created, adjustment.updated]
        reverse: {reason: external_refund}"""

_ids = itertools.count()


def config(
    tmp_path: Path,
    sandbox: Sandbox,
    *,
    stripe_refunds: str = "",
    paddle_refunds: str = PADDLE_ONE_RULE,
    unknown: str = "hold",
) -> str:
    return CONFIG.format(
        database=tmp_path / "bridge.db",
        api_url=sandbox.url,
        api_key=API_KEY,
        stripe_secret=STRIPE_SECRET,
        paddle_secret=PADDLE_SECRET,
        stripe_refunds=(stripe_refunds or ONE_REFUND_RULE).replace("{unknown}", unknown),
        paddle_refunds=paddle_refunds,
    )


def send(running: RunningBridge, event_type: str, object_id: str, **kwargs: Any) -> str:
    event_id = kwargs.pop("event_id", None) or f"evt_{object_id}_{next(_ids)}"
    event = stripe.sample_event(event_type, event_id=event_id, object_id=object_id, **kwargs)
    response = running.send_stripe(event)
    assert response.status_code == 200, response.text
    return event_id


def send_paddle(running: RunningBridge, event_type: str, object_id: str, **kwargs: Any) -> str:
    event_id = f"evt_{object_id}_{next(_ids)}"
    event = paddle.sample_event(event_type, event_id=event_id, object_id=object_id, **kwargs)
    response = running.send_paddle(event)
    assert response.status_code == 200, response.text
    return event_id


def status(running: RunningBridge, event_id: str) -> EventStatus:
    row = running.bridge.store.get_event(event_id)
    assert row is not None
    return row.status


def credited(sandbox: Sandbox, customer: str) -> Decimal:
    return sandbox.state.balance(customer, "USD")


# -- 1. a CLI replay racing serve -----------------------------------------------------------


def test_cli_replay_racing_serve_on_one_sqlite_file_credits_one_payment_once(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    """checkout.session.completed fails (no customer yet); the customer is fixed; the
    operator replays the failed events while serve processes the same payment's
    payment_intent.succeeded. Both decide while the other's customer look-up is in
    flight (the sandbox answers look-ups after 3 s): one credit of 25.00, not two."""
    text = config(tmp_path, sandbox)
    (tmp_path / "config.yaml").write_text(text)
    running = make_bridge(text)
    session = send(
        running, "checkout.session.completed", "cs_race", psp_customer="cus_race", amount_minor=2500
    )
    running.settle()
    assert status(running, session) is EventStatus.FAILED
    customer = sandbox.state.add_customer(external_id="cus_race")
    sandbox.state.inject(delay=3.0, only="customers")
    replay = subprocess.Popen(
        [sys.executable, "-m", "bridge", "replay", "--status", "failed"],
        env={**os.environ, "BRIDGE_CONFIG": str(tmp_path / "config.yaml")},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        intent = send(
            running,
            "payment_intent.succeeded",
            "pi_race",
            psp_customer="cus_race",
            amount_minor=2500,
            metadata={"credyt_topup": "true"},
        )
        out, err = replay.communicate(timeout=90)
    finally:
        replay.kill()
    assert replay.returncode == 0, out + err
    sandbox.state.inject()
    running.settle(30)
    assert {status(running, session), status(running, intent)} == {
        EventStatus.PROCESSED,
        EventStatus.IGNORED,
    }
    assert credited(sandbox, customer) == Decimal("25.00")


# -- 2. what was decided survives prune -------------------------------------------------------


def test_a_checkout_event_back_after_prune_does_not_credit_its_payment_again(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = make_bridge(config(tmp_path, sandbox))
    customer = sandbox.state.add_customer(external_id="user_prune")
    paid = {"customer": customer, "amount_minor": 4000}
    send(running, "payment_intent.succeeded", "pi_prune", metadata={"credyt_topup": "true"}, **paid)
    running.settle()
    session = send(running, "checkout.session.completed", "cs_prune", **paid)
    running.settle()
    assert status(running, session) is EventStatus.IGNORED
    counts = asyncio.run(running.bridge.store.prune_finished(time.time() + 3600))
    assert counts["adjustments"] == 1 and counts["events"] == 2
    # Stripe resends the same event (or a backfill stores it again): it is new to the inbox.
    send(running, "checkout.session.completed", "cs_prune", event_id=session, **paid)
    running.settle()
    assert status(running, session) is EventStatus.IGNORED
    assert credited(sandbox, customer) == Decimal("40.00")
    # and a full refund after prune still finds the credit it reverses
    send(running, "refund.created", "re_prune", payment="pi_prune", amount_minor=4000)
    running.settle()
    assert credited(sandbox, customer) == 0


# -- 3. one payment, whichever of its ids arrives first -----------------------------------


EVENTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    # a Checkout session with invoice creation and a marked PaymentIntent
    "session": ("checkout.session.completed", "cs_ord", {"invoice": "in_ord"}),
    "intent": ("payment_intent.succeeded", "pi_ord", {"metadata": {"credyt_topup": "true"}}),
    # the 2025-03-31 invoice.paid names no PaymentIntent
    "invoice": ("invoice.paid", "in_ord", {}),
}
# Every order: when invoice.paid and payment_intent.succeeded both credit before the
# session links their ids, the session takes the second credit back.
ORDERS = list(itertools.permutations(EVENTS))


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(o) for o in ORDERS])
def test_checkout_with_invoice_and_marked_intent_credits_once_in_every_order(
    make_bridge: Callable[..., RunningBridge],
    sandbox: Sandbox,
    tmp_path: Path,
    order: tuple[str, ...],
) -> None:
    running = make_bridge(config(tmp_path, sandbox))
    customer = sandbox.state.add_customer(external_id=f"user_{'_'.join(order)}")
    for name in order:
        event_type, object_id, extra = EVENTS[name]
        send(running, event_type, object_id, customer=customer, amount_minor=2500, **extra)
        running.settle()
    assert credited(sandbox, customer) == Decimal("25.00")
    assert sandbox.state.conflicts == []
    send(running, "refund.created", "re_ord", payment="pi_ord", amount_minor=2500)
    running.settle()
    assert credited(sandbox, customer) == 0


def test_a_payment_seen_before_is_decided_from_its_state_and_no_conflict_is_logged(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path, logs: LogBuffer
) -> None:
    """The worker decides a payment as new without reading its state; the write
    transaction refuses that guess for the session that names a credited invoice, and it
    is decided again from the state: credited once, and no decision conflict logged."""
    running = make_bridge(config(tmp_path, sandbox))
    customer = sandbox.state.add_customer(external_id="user_seen_before")
    for name in ("invoice", "session"):
        event_type, object_id, extra = EVENTS[name]
        send(running, event_type, object_id, customer=customer, amount_minor=2500, **extra)
        running.settle()
    assert credited(sandbox, customer) == Decimal("25.00")
    assert len(sandbox.state.adjustments) == 1
    names = logs.names()
    assert "event_decision_conflict" not in names
    assert names.count("event_processed") + names.count("event_ignored") == 2


# -- 4. reversals keyed by the PSP refund, never a rule name -------------------------------


TWO_RULES = """      - name: refund-created
        on: [refund.created]
        reverse: {reason: external_refund}
      - name: refund-updated
        on: [refund.updated]
        reverse: {reason: external_refund}"""


def test_refund_created_and_updated_under_two_rules_debit_once(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = make_bridge(config(tmp_path, sandbox, stripe_refunds=TWO_RULES))
    customer = sandbox.state.add_customer(external_id="user_two_rules")
    send(
        running,
        "payment_intent.succeeded",
        "pi_two",
        customer=customer,
        amount_minor=5000,
        metadata={"credyt_topup": "true"},
    )
    running.settle()
    send(running, "refund.created", "re_two", payment="pi_two", amount_minor=2000)
    send(running, "refund.updated", "re_two", payment="pi_two", amount_minor=2000)
    running.settle()
    assert credited(sandbox, customer) == Decimal("30.00")


PADDLE_TWO_RULES = """      - name: adjustment-created
        on: [adjustment.created]
        reverse: {reason: external_refund}
      - name: adjustment-updated
        on: [adjustment.updated]
        reverse: {reason: external_refund}"""


def test_paddle_adjustment_created_and_updated_under_two_rules_debit_once(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = make_bridge(config(tmp_path, sandbox, paddle_refunds=PADDLE_TWO_RULES))
    customer = sandbox.state.add_customer(external_id="user_paddle_two")
    send_paddle(running, "transaction.completed", "txn_two", customer=customer, amount_minor=5000)
    running.settle()
    adjustment = {"transaction_id": "txn_two", "customer": customer, "amount_minor": 2000}
    send_paddle(running, "adjustment.created", "adj_two", **adjustment)
    send_paddle(running, "adjustment.updated", "adj_two", **adjustment)
    running.settle()
    assert credited(sandbox, customer) == Decimal("30.00")


def test_a_reverse_rule_renamed_between_two_events_of_one_refund_debits_once(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    first = make_bridge(config(tmp_path, sandbox))
    customer = sandbox.state.add_customer(external_id="user_renamed")
    send(
        first,
        "payment_intent.succeeded",
        "pi_ren",
        customer=customer,
        amount_minor=5000,
        metadata={"credyt_topup": "true"},
    )
    send(first, "refund.created", "re_ren", payment="pi_ren", amount_minor=2000)
    first.settle()
    renamed = ONE_REFUND_RULE.replace("name: refund", "name: refunds-v2")
    second = make_bridge(config(tmp_path, sandbox, stripe_refunds=renamed))
    send(second, "refund.updated", "re_ren", payment="pi_ren", amount_minor=2000)
    second.settle()
    assert credited(sandbox, customer) == Decimal("30.00")


TWO_CONNECTORS = """
  stripe-eu:
    type: stripe
    secrets: ["{secret}"]
    rules:
      - name: eu-refunds
        on: [refund.created, refund.updated]
        reverse: {{reason: external_refund}}
"""


def test_one_refund_reaching_two_connectors_with_different_rule_names_debits_once(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    text = config(tmp_path, sandbox) + TWO_CONNECTORS.format(secret=STRIPE_SECRET)
    running = make_bridge(text)
    customer = sandbox.state.add_customer(external_id="user_two_connectors")
    send(
        running,
        "payment_intent.succeeded",
        "pi_2c",
        customer=customer,
        amount_minor=5000,
        metadata={"credyt_topup": "true"},
    )
    running.settle()
    event = stripe.sample_event(
        "refund.created",
        event_id="evt_re_2c",
        object_id="re_2c",
        payment="pi_2c",
        amount_minor=2000,
    )
    body = json.dumps(event).encode()
    for connector in ("stripe", "stripe-eu"):
        assert running.post(connector, body, stripe.sign(body, STRIPE_SECRET)).status_code == 200
    running.settle()
    assert credited(sandbox, customer) == Decimal("30.00")


def test_an_unknown_original_debit_counts_toward_a_later_cumulative_charge_refunded(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    """A refund (cumulative 30) arrives before its payment and is debited; then the 100
    payment; then charge.refunded cumulative 50: 50 debited in all, not 80."""
    rule = """      - name: refund
        on: [charge.refunded]
        reverse: {reason: external_refund, unknown_original: debit}"""
    running = make_bridge(config(tmp_path, sandbox, stripe_refunds=rule))
    customer = sandbox.state.add_customer(external_id="cus_cum")
    refunded = {"payment": "pi_cum", "psp_customer": "cus_cum", "payment_amount_minor": 10000}
    send(running, "charge.refunded", "ch_cum", amount_minor=3000, **refunded)
    running.settle()
    assert credited(sandbox, customer) == Decimal("-30.00")
    send(
        running,
        "payment_intent.succeeded",
        "pi_cum",
        customer=customer,
        amount_minor=10000,
        metadata={"credyt_topup": "true"},
    )
    running.settle()
    send(running, "charge.refunded", "ch_cum", amount_minor=5000, **refunded)
    running.settle()
    assert credited(sandbox, customer) == Decimal("50.00")


# -- 5. proportional reversals never add up to more than their credit ---------------------


def test_proportional_reversals_never_exceed_the_credit_and_the_last_takes_what_remains(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    """A fixed 0.15 credit for a 4.00 payment, refunded 1.00 at a time: each quarter is
    0.0375, rounded to the credit's two places; four rounded quarters were 0.16."""
    text = config(tmp_path, sandbox).replace(
        'on: payment_intent.succeeded\n        when: {metadata: {credyt_topup: "true"}}\n'
        "        credit: {amount: paid, reason: external_topup}",
        'on: payment_intent.succeeded\n        when: {metadata: {credyt_topup: "true"}}\n'
        '        credit: {amount: "0.15", reason: external_topup}',
    )
    assert '"0.15"' in text
    running = make_bridge(text)
    customer = sandbox.state.add_customer(external_id="user_quarters")
    send(
        running,
        "payment_intent.succeeded",
        "pi_q",
        customer=customer,
        amount_minor=400,
        metadata={"credyt_topup": "true"},
    )
    running.settle()
    assert credited(sandbox, customer) == Decimal("0.15")
    for n in range(3):
        send(running, "refund.created", f"re_q{n}", payment="pi_q", amount_minor=100)
        running.settle()
        assert credited(sandbox, customer) >= 0
    send(running, "refund.created", "re_q3", payment="pi_q", amount_minor=100)
    running.settle()
    assert credited(sandbox, customer) == 0
    amounts = [a.amount for a in reversed(running.bridge.store.list_adjustments())]
    assert all(len(a.split(".")[-1]) <= 2 for a in amounts), amounts


# -- 6. row ids are never reused after prune ------------------------------------------------


def test_row_ids_are_never_reused_after_prune(tmp_path: Path) -> None:
    from bridge.events import Envelope

    store = SQLiteStore(str(tmp_path / "ids.db"))
    try:

        async def scenario() -> tuple[int, int]:
            await store.accept("stripe", Envelope("evt_a", "invoice.paid", None), b"{}", 1.0)
            await store.accept("stripe", Envelope("evt_b", "invoice.paid", None), b"{}", 1.0)
            last = store.get_event("evt_b")
            assert last is not None
            from bridge.storage.records import ProcessingResult

            for row_id in (1, last.id):
                await store.record_processing(
                    ProcessingResult(row_id, EventStatus.IGNORED, "test"), 2.0
                )
            assert (await store.prune_finished(time.time()))["events"] == 2
            await store.accept("stripe", Envelope("evt_c", "invoice.paid", None), b"{}", 3.0)
            new = store.get_event("evt_c")
            assert new is not None
            return last.id, new.id

        last, new = asyncio.run(scenario())
        assert new > last
    finally:
        store.close()


def test_migration_to_autoincrement_keeps_rows_and_the_decisions_they_stand_for(
    tmp_path: Path,
) -> None:
    """A version-2 database (made by the v1 and v2 steps) keeps its rows, and what its
    outbox says was credited becomes a decision that prune can not take away."""
    import sqlite_utils

    from bridge.storage import sqlite_schema as sqlite_store

    path = str(tmp_path / "old.db")
    conn = sqlite3.connect(path, isolation_level=None)
    db = sqlite_utils.Database(conn)
    sqlite_store.MIGRATIONS[1](db)
    sqlite_store.MIGRATIONS[2](db)
    conn.execute("PRAGMA user_version = 2")
    conn.execute(
        "INSERT INTO outbox (id, transaction_id, inbox_id, connector, rule, kind, payment_key,"
        " customer_id, asset, account, amount, payment_amount_minor, body, status)"
        " VALUES (7, 'tx1', NULL, 'stripe', 'topup', 'payment', 'pi_old', 'cust', 'USD',"
        " 'default', '40', 4000, '{}', 'delivered')"
    )
    conn.execute(
        "INSERT INTO outbox (id, transaction_id, inbox_id, connector, rule, kind, payment_key,"
        " reversal_key, customer_id, asset, account, amount, payment_amount_minor, body, status)"
        " VALUES (9, 'tx2', NULL, 'stripe', 'refund', 'reversal', 'pi_old', 're_old:topup',"
        " 'cust', 'USD', 'default', '-10', 1000,"
        ' \'{"metadata": {"original_transaction_id": "tx1"}}\', \'delivered\')'
    )
    conn.execute("INSERT INTO payment_links (id, payment_key) VALUES ('cs_old', 'pi_old')")
    conn.close()
    store = SQLiteStore(path)
    try:
        assert [a.id for a in store.list_adjustments()] == [9, 7]
        state = store.payment_state(["cs_old"])
        assert set(state.ids) == {"cs_old", "pi_old"}
        assert [d.transaction_id for d in state.decided] == ["tx1", "tx2"]
        refund = state.decided[1]
        # keyed by the refund alone now, so its later events find it whatever the rule
        assert (refund.reversal_key, refund.original, refund.reversed_minor) == (
            "re_old",
            "tx1",
            1000,
        )
        (sql,) = store._query("SELECT sql FROM sqlite_master WHERE name = 'inbox'")[0]
        assert "AUTOINCREMENT" in sql
    finally:
        store.close()
