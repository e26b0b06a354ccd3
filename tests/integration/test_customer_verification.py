"""Who chose the wallet? `customer_metadata: verify | ignore` against a paying browser
that names someone else's Credyt customer in Paddle's `custom_data`.

End to end through the bridge and the sandbox: with `verify`, a metadata-named customer
is credited only when its Credyt `external_id` is the Paddle customer who paid.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from bridge.storage.records import EventFilter, EventStatus
from connectors import paddle
from tests.conftest import PADDLE_SECRET, RunningBridge, Sandbox, bridge_config

PADDLE = """
  paddle:
    type: paddle
    secrets: ["{secret}"]
    customer_metadata: {policy}
    rules:
      - name: transaction
        on: transaction.completed
        credit: {{amount: paid}}
"""


def start(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path, policy: str
) -> RunningBridge:
    connectors = PADDLE.format(secret=PADDLE_SECRET, policy=policy)
    return make_bridge(bridge_config(str(tmp_path / "b.db"), sandbox.url, connectors))


def paid(event_id: str, names: str, payer: str) -> dict[str, object]:
    return paddle.sample_event(
        "transaction.completed",
        event_id=event_id,
        object_id=f"txn_{event_id}",
        customer=names,
        psp_customer=payer,
        amount_minor=3000,
    )


def test_verify_refuses_a_custom_data_customer_who_did_not_pay(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    victim = sandbox.state.add_customer(external_id="ctm_victim")
    payer = sandbox.state.add_customer(external_id="ctm_payer")
    bridge = start(make_bridge, sandbox, tmp_path, "verify")
    assert bridge.send_paddle(paid("evt_forged", victim, "ctm_payer")).status_code == 200
    assert bridge.send_paddle(paid("evt_honest", payer, "ctm_payer")).status_code == 200
    bridge.settle()

    assert sandbox.state.balance(victim, "USD") == Decimal("0")
    assert sandbox.state.balance(payer, "USD") == Decimal("30.00")
    (failed,) = bridge.bridge.store.list_events(EventFilter(status=EventStatus.FAILED.value))
    assert failed.event_id == "evt_forged"
    assert "external_id is ctm_victim, not the paying customer ctm_payer" in (failed.reason or "")
    # the verification read the named customer; the look-up by external_id was not needed
    assert f"GET /customers/{victim}" in sandbox.state.requests


def test_trust_the_default_credits_whoever_custom_data_names(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    victim = sandbox.state.add_customer(external_id="ctm_victim")
    bridge = start(make_bridge, sandbox, tmp_path, "trust")
    assert bridge.send_paddle(paid("evt_forged", victim, "ctm_payer")).status_code == 200
    bridge.settle()
    assert sandbox.state.balance(victim, "USD") == Decimal("30.00")  # the documented risk


def test_ignore_credits_the_paying_customer_found_by_external_id(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    victim = sandbox.state.add_customer(external_id="ctm_victim")
    payer = sandbox.state.add_customer(external_id="ctm_payer")
    bridge = start(make_bridge, sandbox, tmp_path, "ignore")
    assert bridge.send_paddle(paid("evt_forged", victim, "ctm_payer")).status_code == 200
    bridge.settle()
    assert sandbox.state.balance(victim, "USD") == Decimal("0")
    assert sandbox.state.balance(payer, "USD") == Decimal("30.00")
