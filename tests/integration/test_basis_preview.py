"""What a stored payment would credit on another basis (the demo's `amount: net` step):
the real rules in dry run against the running bridge's store and the Credyt sandbox,
recording nothing and sending nothing."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from bridge.config.loading import parse_config
from bridge.credyt.client import CredytClient
from bridge.errors import NotFoundError
from bridge.operating.basis_preview import BasisPreview, on_basis, preview_basis
from tests.conftest import API_KEY, PADDLE_SECRET, RunningBridge, Sandbox, bridge_config
from tests.integration.test_amounts_flow import accepted, load, paddle_envelope

CONNECTORS = f"""
  paddle:
    type: paddle
    secrets: ["{PADDLE_SECRET}"]
    match: all
    rules:
      - name: transaction
        on: transaction.completed
        credit: {{amount: paid}}
      - name: pack
        on: transaction.completed
        credit: {{amount: "100", asset: CREDITS}}
"""


def preview(running: RunningBridge, sandbox: Sandbox, event_id: str) -> BasisPreview:
    async def dry_run() -> BasisPreview:
        client = CredytClient(sandbox.url, API_KEY, timeout=5)
        try:
            return await preview_basis(
                running.bridge.config, running.bridge.store, client, event_id, "net"
            )
        finally:
            await client.aclose()

    return asyncio.run(dry_run())


def test_net_instead_of_paid_is_worked_out_by_the_rules_and_recorded_nowhere(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = make_bridge(bridge_config(tmp_path / "bridge.db", sandbox.url, CONNECTORS))
    customer = sandbox.state.add_customer(external_id="ctm_preview")
    txn = copy.deepcopy(load("paddle-tax-exclusive.json"))  # 10.00 + 2.00 VAT
    txn["custom_data"] = {"credyt_customer_id": customer}
    accepted(running.send_paddle(paddle_envelope("transaction.completed", txn, "evt_preview")))
    running.settle()
    store = running.bridge.store
    before = (
        store.get_event("evt_preview"),
        store.list_adjustments(),
        len(sandbox.state.adjustments),
    )

    shown = preview(running, sandbox, "evt_preview")

    assert shown.credits == (("EUR", Decimal("10.00")), ("CREDITS", Decimal(100)))
    assert shown.amounts is not None and (shown.amounts.paid, shown.amounts.tax) == (
        Decimal("12.00"),
        Decimal("2.00"),
    )
    assert shown.reason is None
    after = (
        store.get_event("evt_preview"),
        store.list_adjustments(),
        len(sandbox.state.adjustments),
    )
    assert after == before  # the event's attempts, the outbox and Credyt: all untouched
    assert sandbox.state.balance(customer, "EUR") == Decimal("12.00")
    with pytest.raises(NotFoundError, match="evt_nowhere"):
        preview(running, sandbox, "evt_nowhere")


def test_on_basis_switches_only_the_connectors_paid_credits(tmp_path: Path) -> None:
    config = parse_config(bridge_config(tmp_path / "b.db", "http://127.0.0.1:1", CONNECTORS))
    changed = on_basis(config, "paddle", "net")
    credits = [r.credit for r in changed.connectors["paddle"].rules]
    assert [(c.basis, c.amount) for c in credits if c is not None] == [
        ("net", None),
        ("paid", Decimal(100)),  # a fixed amount stays what it is
    ]
    assert [r.credit for r in config.connectors["paddle"].rules][0].basis == "paid"  # type: ignore[union-attr]
