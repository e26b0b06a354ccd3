"""Reversals follow the credit's basis: a Paddle refund's own tax split is used.

A Paddle transaction with two tax rates (a 10.00 item at 20% VAT, a 10.00 item at 5%)
is credited on every basis (`match: all`, one account per basis, as in
test_amounts_flow.py), then refunded one line item at a time with the adjustment's own
`totals`; a tax-only refund takes nothing of a net credit; a refund without a split is
measured by the gross and adds up with the others; a chargeback and its reversal use the
same split; and the net recorded beside the credits survives prune. Real parts: signed
webhooks to the running bridge, the Credyt sandbox, a real SQLite file.
"""

from __future__ import annotations

import asyncio
import copy
import json
import sqlite3
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.conftest import FIXTURES, RunningBridge, Sandbox
from tests.integration.test_amounts_flow import accepted, load, paddle_envelope, start

ACCOUNTS = ("default", "net", "subtotal")


def two_rate_transaction(customer: str, txn_id: str) -> dict[str, Any]:
    """subtotal 20.00, tax 2.50 (2.00 at 20% on one item, 0.50 at 5% on the other),
    grand total 22.50, tax added on top (`tax_mode: external`)."""
    txn = copy.deepcopy(load("paddle-tax-exclusive.json"))
    txn["id"] = txn_id
    txn["custom_data"] = {"credyt_customer_id": customer}
    totals = txn["details"]["totals"]
    totals.update(
        subtotal="2000", tax="250", total="2250", grand_total="2250", grand_total_tax="250"
    )
    first = txn["details"]["line_items"][0]
    second = copy.deepcopy(first)
    second.update(id="txnitm_reduced_rate", tax_rate="0.05")
    second["totals"] = second["unit_totals"] = {
        "tax": "50",
        "total": "1050",
        "discount": "0",
        "subtotal": "1000",
    }
    txn["details"]["line_items"].append(second)
    return txn


def refund(
    txn_id: str, adjustment_id: str, subtotal: int, tax: int | None, action: str = "refund"
) -> dict[str, Any]:
    """An approved Paddle refund adjustment of `txn_id` with its own split (tax None: a
    total alone, no split)."""
    data: dict[str, Any] = json.loads(
        (FIXTURES / "paddle" / "adjustment.updated.data.json").read_text()
    )
    data.update(
        id=adjustment_id,
        action=action,
        status="approved",
        transaction_id=txn_id,
        currency_code="EUR",
    )
    data["totals"] = {
        **data["totals"],
        "subtotal": str(subtotal),
        "tax": str(tax),
        "total": str(subtotal + (tax or 0)),
        "currency_code": "EUR",
    }
    if tax is None:
        del data["totals"]["tax"], data["totals"]["subtotal"]
    return data


def balances(sandbox: Sandbox, customer: str) -> dict[str, Decimal]:
    return {a: sandbox.state.balance(customer, "EUR", a) for a in ACCOUNTS}


def credit_two_rates(running: RunningBridge, customer: str, txn_id: str) -> None:
    txn = two_rate_transaction(customer, txn_id)
    accepted(running.send_paddle(paddle_envelope("transaction.completed", txn, f"evt_{txn_id}")))
    running.settle()


def send_refund(running: RunningBridge, data: dict[str, Any]) -> None:
    accepted(running.send_paddle(paddle_envelope("adjustment.updated", data, f"evt_{data['id']}")))
    running.settle()


def test_a_line_item_refund_reverses_that_lines_share_of_net(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = start(make_bridge, sandbox, tmp_path)
    customer = sandbox.state.add_customer(external_id="ctm_two_rates")
    credit_two_rates(running, customer, "txn_two_rates")
    assert balances(sandbox, customer) == {
        "default": Decimal("22.50"),
        "net": Decimal("20.00"),
        "subtotal": Decimal("20.00"),
    }
    # the 5% item: 10.00 + 0.50. Its gross share (10.50 of 22.50) would take 9.33 of net.
    send_refund(running, refund("txn_two_rates", "adj_reduced_rate", 1000, 50))
    assert balances(sandbox, customer) == {
        "default": Decimal("12.00"),  # 22.50 - 10.50: the gross proportion
        "net": Decimal("10.00"),  # exactly that line's net
        "subtotal": Decimal("10.00"),  # measured by the net too (docs/amounts.md)
    }
    # the 20% item: 10.00 + 2.00 takes the rest of every credit, exactly
    send_refund(running, refund("txn_two_rates", "adj_standard_rate", 1000, 200))
    assert balances(sandbox, customer) == dict.fromkeys(ACCOUNTS, Decimal(0))
    # each debit recorded the net whole it was measured against (the paid credit's: none)
    with sqlite3.connect(tmp_path / "bridge.db") as conn:
        rows = conn.execute(
            "SELECT rule, kind, reversal_key, account, reversed_minor, basis_minor"
            " FROM decided ORDER BY id"
        ).fetchall()
    assert ("refund", "reversal", "adj_reduced_rate", "net", 1000, 2000) in rows
    assert ("refund", "reversal", "adj_reduced_rate", "default", 1050, None) in rows
    assert ("net", "payment", None, "net", 0, 2000) in rows
    assert ("paid", "payment", None, "default", 0, None) in rows


def test_a_tax_only_refund_takes_nothing_of_a_net_credit(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = start(make_bridge, sandbox, tmp_path)
    customer = sandbox.state.add_customer(external_id="ctm_tax_only")
    txn = copy.deepcopy(load("paddle-tax-exclusive.json"))  # 10.00 + 2.00 VAT
    txn["custom_data"] = {"credyt_customer_id": customer}
    accepted(running.send_paddle(paddle_envelope("transaction.completed", txn, "evt_tax_txn")))
    running.settle()
    # a business customer added its VAT number: Paddle refunds the 2.00 of tax alone
    send_refund(running, refund(txn["id"], "adj_tax_only", 0, 200))
    assert balances(sandbox, customer) == {
        "default": Decimal("10.00"),
        "net": Decimal("10.00"),
        "subtotal": Decimal("10.00"),
    }
    # then a full refund of what is left takes every credit to zero
    send_refund(running, refund(txn["id"], "adj_rest", 1000, 0))
    assert balances(sandbox, customer) == dict.fromkeys(ACCOUNTS, Decimal(0))


def test_the_net_recorded_with_a_credit_survives_prune(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = start(make_bridge, sandbox, tmp_path)
    customer = sandbox.state.add_customer(external_id="ctm_pruned")
    credit_two_rates(running, customer, "txn_pruned")
    counts = asyncio.run(running.bridge.store.prune_finished(time.time() + 3600))
    assert counts["adjustments"] == 3 and counts["events"] == 1
    send_refund(running, refund("txn_pruned", "adj_after_prune", 1000, 50))
    assert balances(sandbox, customer) == {
        "default": Decimal("12.00"),
        "net": Decimal("10.00"),
        "subtotal": Decimal("10.00"),
    }


def test_a_refund_without_its_split_is_measured_by_the_gross_and_the_two_add_up(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = start(make_bridge, sandbox, tmp_path)
    customer = sandbox.state.add_customer(external_id="ctm_mixed")
    credit_two_rates(running, customer, "txn_mixed")  # 22.50 paid, 20.00 net
    # 9.00 of 22.50 with no split: the gross proportion, 40% of every credit
    send_refund(running, refund("txn_mixed", "adj_no_split", 900, None))
    assert balances(sandbox, customer) == {
        "default": Decimal("13.50"),
        "net": Decimal("12.00"),
        "subtotal": Decimal("12.00"),
    }
    # then the 20% item with its split (10.00 net of 20.00): half of the net credit
    send_refund(running, refund("txn_mixed", "adj_split", 1000, 200))
    assert balances(sandbox, customer) == {
        "default": Decimal("1.50"),
        "net": Decimal("2.00"),
        "subtotal": Decimal("2.00"),
    }
    # a last refund larger than what is left takes exactly what remains, never more
    send_refund(running, refund("txn_mixed", "adj_last", 1000, 50))
    assert balances(sandbox, customer) == dict.fromkeys(ACCOUNTS, Decimal(0))


def test_a_chargeback_and_its_reversal_use_the_same_net_split(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = start(make_bridge, sandbox, tmp_path)
    customer = sandbox.state.add_customer(external_id="ctm_chargeback")
    credit_two_rates(running, customer, "txn_disputed")
    send_refund(running, refund("txn_disputed", "adj_cb", 1000, 50, action="chargeback"))
    assert balances(sandbox, customer)["net"] == Decimal("10.00")
    send_refund(
        running, refund("txn_disputed", "adj_cb_won", 1000, 50, action="chargeback_reverse")
    )
    assert balances(sandbox, customer) == {
        "default": Decimal("22.50"),
        "net": Decimal("20.00"),
        "subtotal": Decimal("20.00"),
    }
