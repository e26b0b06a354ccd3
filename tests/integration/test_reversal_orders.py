"""Every order of one payment's refunds and won dispute, one event after the other.

The exactly-once property once lost a 0.01 refund debit of a EUR 15.32 top-up with two
0.01 refunds and a won dispute of the rest. It was no race: in some orders the
dispute's reinstatement (credited back in full before its withdrawal arrived) met a
refund whose target was floored at zero, so that refund took the whole reinstatement
back, the next refund took nothing, and the withdrawal never counted that refund's
unit. Here each order runs, sequentially, through the real processor on a real SQLite
file with the exactly-once property's own Stripe config (`match: all`: a EUR and a
TOK credit); what the outbox holds for the customer must be what the payment says.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bridge.config.loading import parse_config
from bridge.service import Bridge
from bridge.storage.records import EventFilter, EventStatus, OutboxRow
from tests.conftest import Sandbox, bridge_config
from tests.helpers.exactly_once import STRIPE
from tests.helpers.histories import Dispute, Refund, Story


def story(
    debits: list[str],
    wins: list[str],
    refunds: tuple[int, ...] = (1, 1),
    disputed: int = 1530,
) -> Story:
    """The falsifying example: a EUR 15.32 top-up, two 0.01 refunds (the first via
    pending), a charge.refunded after each, and a won dispute of the 15.30 left."""
    return Story(
        "pi_topup",
        1532,
        "EUR",
        False,
        [Refund(amount, True, number == 0) for number, amount in enumerate(refunds)],
        Dispute(disputed, True),
        {"charge_refunded_all": True, "dispute_debits": debits, "dispute_wins": wins},
    )


def moving_money(events: list[dict[str, Any]], refunds: str) -> list[dict[str, Any]]:
    """The events a rule acts on: under `charge_refunded` only charge.refunded debits
    refunds; under `refund_events` a succeeded refund event does (charge.refunded is then
    ignored as covered, a pending refund as not yet succeeded)."""
    kept = []
    for event in events:
        kind = event["type"]
        if kind.startswith("refund.") and (
            refunds == "charge_refunded" or event["data"]["object"]["status"] != "succeeded"
        ):
            continue
        if kind == "charge.refunded" and refunds == "refund_events":
            continue
        kept.append(event)
    return kept


@pytest.fixture
def make_processing_bridge(sandbox: Sandbox, tmp_path: Path) -> Iterator[Any]:
    made: list[Bridge] = []

    def make(options: dict[str, str]) -> Bridge:
        text = bridge_config(tmp_path / "bridge.db", sandbox.url, STRIPE.config(options))
        made.append(Bridge(parse_config(text)))
        return made[-1]

    yield make
    for bridge in made:
        bridge.store.close()


def process_in_order(bridge: Bridge, orders: list[list[dict[str, Any]]]) -> None:
    """Each order in turn, in one event loop: store each event and process it at once,
    then whatever became due (a refund held for its credit), as the processor would
    when nothing else runs."""

    async def run() -> None:
        try:
            for events in orders:
                await _process(bridge, events)
        finally:
            await bridge.client.aclose()

    asyncio.run(run())


async def _process(bridge: Bridge, events: list[dict[str, Any]]) -> None:
    connector = bridge.connectors[STRIPE.name].connector
    for event in events:
        body, _ = STRIPE.sign(event)
        envelope = connector.envelope(body)
        await bridge.store.accept(STRIPE.name, envelope, body, time.time())
        row = bridge.store.get_event(envelope.event_id)
        assert row is not None
        await bridge.processor.handle(row)
        while due := bridge.store.due_events(time.time(), 100):
            for waiting in due:
                await bridge.processor.handle(waiting)


def balances(adjustments: list[OutboxRow], customer: str) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for adjustment in adjustments:
        if adjustment.customer_id == customer:
            totals[adjustment.asset] = totals.get(adjustment.asset, Decimal(0)) + Decimal(
                adjustment.amount
            )
    return totals


ORDERS = [
    pytest.param(
        "charge_refunded",
        ["charge.dispute.funds_withdrawn"],
        ["charge.dispute.closed"],
        (1, 1),
        1530,
        id="charge_refunded",
    ),
    pytest.param(
        "refund_events",
        ["charge.dispute.created"],
        ["charge.dispute.funds_reinstated"],
        (1, 1),
        1530,
        id="refund_events",
    ),
    # A customer disputes a charge already refunded in full and the merchant wins: the
    # withdrawal finds nothing left to debit but its units are recorded (no adjustment
    # sent), so the reinstatement gives back nothing it never took: the wallet ends at 0.
    pytest.param(
        "charge_refunded",
        ["charge.dispute.funds_withdrawn"],
        ["charge.dispute.closed"],
        (1532,),
        1532,
        id="dispute_of_a_refunded_charge",
    ),
    pytest.param(
        "refund_events",
        ["charge.dispute.created"],
        ["charge.dispute.funds_reinstated"],
        (1532,),
        1532,
        id="dispute_of_a_refunded_charge_refund_events",
    ),
    # 10.00 of 15.32 refunded, then a dispute of the whole 15.32: it takes the 5.32 left
    # and, won, gives back those 5.32: 5.32 in the wallet whatever the order.
    pytest.param(
        "charge_refunded",
        ["charge.dispute.funds_withdrawn"],
        ["charge.dispute.closed"],
        (1000,),
        1532,
        id="dispute_over_a_partial_refund",
    ),
    pytest.param(
        "refund_events",
        ["charge.dispute.created"],
        ["charge.dispute.funds_reinstated"],
        (1000,),
        1532,
        id="dispute_over_a_partial_refund_refund_events",
    ),
]


@pytest.mark.parametrize(("refunds", "debits", "wins", "refund_amounts", "disputed"), ORDERS)
def test_every_order_of_refunds_and_a_won_dispute_leaves_the_refunds_debited(
    make_processing_bridge: Any,
    refunds: str,
    debits: list[str],
    wins: list[str],
    refund_amounts: tuple[int, ...],
    disputed: int,
) -> None:
    options = {"match": "all", "refunds": refunds}
    bridge: Bridge = make_processing_bridge(options)
    payment = story(debits, wins, refund_amounts, disputed)
    want = STRIPE.expected(payment, options)
    orders = list(
        itertools.permutations(range(len(moving_money(STRIPE.events(payment, "t", "c"), refunds))))
    )
    runs = []
    for number, order in enumerate(orders):
        customer = f"cust_order{number}"
        events = moving_money(STRIPE.events(payment, f"o{number}", customer), refunds)
        runs.append((customer, [events[i] for i in order]))
    process_in_order(bridge, [events for _, events in runs])
    adjustments = bridge.store.list_adjustments(limit=100_000)
    wrong = [
        ([e["type"] for e in events], have)
        for customer, events in runs
        if (have := balances(adjustments, customer)) != want
    ]
    assert wrong == [], f"{len(wrong)} of {len(orders)} orders left other balances than {want}"
    unsettled = [
        (row.event_type, row.reason)
        for row in bridge.store.list_events(EventFilter(limit=10_000))
        if row.status in (EventStatus.PENDING, EventStatus.FAILED)
    ]
    assert unsettled == []


def test_a_refund_between_a_reinstatement_and_its_withdrawal_debits_only_itself(
    make_processing_bridge: Any,
) -> None:
    """The falsifying order, worked by hand: credit 15.32; the won dispute first credits
    back 15.30; each cumulative charge.refunded then debits its own 0.01 (not the 15.30
    back, then nothing); the withdrawal takes the 15.30: 15.30 left."""
    options = {"match": "all", "refunds": "charge_refunded"}
    bridge: Bridge = make_processing_bridge(options)
    payment = story(["charge.dispute.funds_withdrawn"], ["charge.dispute.closed"])
    events = {
        (e["type"], e["data"]["object"].get("amount_refunded")): e
        for e in moving_money(STRIPE.events(payment, "hand", "cust_hand"), "charge_refunded")
    }
    order = [
        ("payment_intent.succeeded", None),
        ("charge.dispute.closed", None),
        ("charge.refunded", 1),
        ("charge.refunded", 2),
        ("charge.dispute.funds_withdrawn", None),
    ]
    process_in_order(bridge, [[events[key] for key in order]])
    eur = sorted(
        (a for a in bridge.store.list_adjustments() if a.asset == "EUR"), key=lambda a: a.id
    )
    assert [Decimal(a.amount) for a in eur] == [
        Decimal(amount) for amount in ("15.32", "15.30", "-0.01", "-0.01", "-15.30")
    ]
    assert balances(bridge.store.list_adjustments(), "cust_hand") == {
        "EUR": Decimal("15.30"),
        "TOK": Decimal("15300000"),
    }


def test_a_dispute_of_a_refunded_charge_is_counted_in_decided_and_never_sent(
    make_processing_bridge: Any,
) -> None:
    """Credit 15.32, full refund 15.32, dispute withdrawn and won: the outbox holds the
    credit and the refund only; the withdrawal and the reinstatement are decided rows of
    amount 0 (their units counted) with no outbox row, and replaying them adds nothing."""
    options = {"match": "all", "refunds": "charge_refunded"}
    bridge: Bridge = make_processing_bridge(options)
    payment = story(["charge.dispute.funds_withdrawn"], ["charge.dispute.closed"], (1532,), 1532)
    events = moving_money(STRIPE.events(payment, "zero", "cust_zero"), "charge_refunded")
    process_in_order(bridge, [events])
    eur = [a for a in bridge.store.list_adjustments() if a.asset == "EUR"]
    assert sorted(Decimal(a.amount) for a in eur) == [Decimal("-15.32"), Decimal("15.32")]
    assert all(a.kind != "reinstatement" and a.reversal_key != "dp_zero" for a in eur)
    keys = sorted({a.payment_key for a in eur})
    decided = bridge.store.payment_state(keys).decided
    disputes = [
        (d.kind, d.asset, d.amount, d.reversed_minor) for d in decided if d.family == "dispute"
    ]
    assert sorted(disputes) == [
        ("reinstatement", "EUR", "0", 1532),
        ("reinstatement", "TOK", "0", 1532),
        ("reversal", "EUR", "0", 1532),
        ("reversal", "TOK", "0", 1532),
    ]
    assert not any(d.delivers for d in decided if d.family == "dispute")
    assert all(
        bridge.store.get_adjustment(d.transaction_id) is None for d in decided if not d.delivers
    )
    rows = {r.event_type: r for r in bridge.store.list_events(EventFilter(limit=100))}
    withdrawn = rows["charge.dispute.funds_withdrawn"]
    assert withdrawn.status is EventStatus.IGNORED
    assert "nothing is sent to Credyt" in (withdrawn.reason or "")
    before = len(bridge.store.list_adjustments())

    async def replay() -> None:
        try:
            for row in (withdrawn, rows["charge.dispute.closed"]):
                stored = bridge.store.get_event(row.event_id)
                assert stored is not None
                result = await bridge.processor.handle(stored)
                assert result.adjustments == ()
        finally:
            await bridge.client.aclose()

    asyncio.run(replay())
    assert len(bridge.store.list_adjustments()) == before
    assert len(bridge.store.payment_state(keys).decided) == len(decided)
