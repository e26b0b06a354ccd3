"""Reconcile against the PSP stand-in: a 200-object Stripe world with every kind of
discrepancy, found, fixed where the bridge can, and left for a human where not.

The bridge is served on loopback (it processes and delivers what --fix queues), the
sandbox plays Credyt, and `credyt-bridge reconcile` runs as a subprocess with the stripe
library pointed at the stand-in through the connector's `api_base`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from bridge.processing.rules import transaction_id
from tests.conftest import RunningBridge, Sandbox
from tests.helpers.operator import run_cli
from tests.helpers.psp_api import STRIPE_KEY, PspApi, serve_psp_api
from tests.helpers.reconcile_world import StripeWorld, invoice_event, reconcile_config

ENV = {"STRIPE_API_KEY": STRIPE_KEY}
MISSED = {"in_rc_000100", "in_rc_000101", "in_rc_000102", "in_rc_000103", "in_rc_000104"}
MISSED_REVERSALS = {"re_rc_000005", "dp_rc_000025"}
DEAD = ["in_rc_000110", "in_rc_000111", "in_rc_000112"]
LOST = ["in_rc_000120", "in_rc_000121"]
ALTERED = "in_rc_000130"


@pytest.fixture
def psp_api() -> Iterator[tuple[PspApi, str]]:
    with serve_psp_api(PspApi(page_size=25)) as served:
        yield served


def credit_id(invoice: str) -> str:
    return transaction_id("stripe", invoice, "subscription-payment")


def reconcile(config: Path, *args: str) -> tuple[int, dict[str, Any]]:
    proc = run_cli(
        config,
        "reconcile",
        "stripe",
        "--since",
        "1d",
        "--rate",
        "0",
        "--json",
        *args,
        ok=False,
        env=ENV,
    )
    assert proc.returncode in (0, 1), proc.stderr
    answer = json.loads(proc.stdout)
    [report] = answer["reports"]
    assert answer["ok"] is (proc.returncode == 0)
    return proc.returncode, report


def by_status(report: dict[str, Any]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for row in report["rows"]:
        found.setdefault(row["status"], set()).add(row["object_id"])
    return found


def build_world(
    running: RunningBridge, sandbox: Sandbox, api: PspApi
) -> tuple[StripeWorld, dict[str, Any]]:
    """200 objects at the PSP: 170 invoices, 20 refunds, 10 disputes; the bridge missed 7
    webhooks, 3 credits are dead, Credyt lost 2, 1 holds another amount, and the bridge
    credited 1 payment the PSP does not list."""
    customer = sandbox.state.add_customer()
    world = StripeWorld(customer, payments=170, refunded=20, disputed=10)
    world.serve(api)
    skip = MISSED | set(DEAD)
    for event in world.invoices:
        if event["data"]["object"]["id"] not in skip:
            assert running.send_stripe(event).status_code == 200
    running.settle()
    for event in [*world.refunds, *world.disputes]:
        if event["data"]["object"]["id"] not in MISSED_REVERSALS:
            assert running.send_stripe(event).status_code == 200
    ghost = invoice_event(9999, customer, world.invoices[-1]["created"], tag="ghost")
    assert running.send_stripe(ghost).status_code == 200
    running.settle()
    sandbox.state.inject(fail_next=3, fail_status=400, only="adjustments")
    for event in world.invoices:
        if event["data"]["object"]["id"] in DEAD:
            assert running.send_stripe(event).status_code == 200
    running.settle()
    for invoice in LOST:
        sandbox.state.lose_transaction(credit_id(invoice))
    sandbox.state.alter_transaction(credit_id(ALTERED), Decimal("1.00"))
    return world, ghost


def test_reconcile_finds_exactly_the_14_and_fix_repairs_12(
    make_bridge: Callable[..., RunningBridge],
    sandbox: Sandbox,
    tmp_path: Path,
    psp_api: tuple[PspApi, str],
) -> None:
    api, api_url = psp_api
    config = reconcile_config(tmp_path, sandbox.url, api_url)
    running = make_bridge(config=config.read_text())
    world, ghost = build_world(running, sandbox, api)

    code, report = reconcile(config)
    assert code == 1
    assert report["listed"] == 200
    assert by_status(report) == {
        "missing": MISSED | MISSED_REVERSALS,
        "not delivered": set(DEAD),
        "absent in Credyt": set(LOST),
        "amount differs": {ALTERED},
        "unexpected": {ghost["data"]["object"]["id"]},
    }
    counts = report["counts"]
    assert counts["ok"] == 200 - 13 and counts["asset differs"] == 0
    assert report["rows_total"] == 14
    dead = next(r for r in report["rows"] if r["object_id"] == DEAD[0])
    assert dead["detail"].startswith("dead in the outbox") and "400" in dead["detail"]
    missing_total = sum(Decimal(1000 + int(i[-6:])) / 100 for i in MISSED)
    assert Decimal(report["totals"]["missing"]["USD"]) == missing_total + Decimal("5.00") + Decimal(
        "10.25"
    )
    assert Decimal(report["totals"]["amount differs"]["USD"]) == Decimal("11.30")
    assert sandbox.state.conflicts == []  # reading back wrote nothing

    adjustments_before = len(sandbox.state.adjustments)
    code, fixed = reconcile(config, "--fix")
    assert code == 1
    assert fixed["fixed"] == {"missing": 7, "not delivered": 3, "absent in Credyt": 2}
    untouched = {r["object_id"] for r in fixed["rows"] if r["fixed"] is None}
    assert untouched == {ALTERED, ghost["data"]["object"]["id"]}
    running.settle()
    assert len(sandbox.state.adjustments) == adjustments_before + 12

    code, second = reconcile(config)
    assert code == 1
    assert by_status(second) == {
        "amount differs": {ALTERED},
        "unexpected": {ghost["data"]["object"]["id"]},
    }
    assert second["counts"]["ok"] == 200 - 1
    ghost_credit = Decimal(1000 + 9999) / 100
    altered_extra = Decimal("1.00") - Decimal(1130) / 100
    expected = world.balance() + ghost_credit + altered_extra
    assert sandbox.state.balance(world.customer, "USD") == expected
    assert sandbox.state.conflicts == []

    # A webhook of a payment --fix already credited is decided as a duplicate.
    late = next(e for e in world.invoices if e["data"]["object"]["id"] == "in_rc_000100")
    assert running.send_stripe(late).status_code == 200
    running.settle()
    assert sandbox.state.balance(world.customer, "USD") == expected


def test_reconcile_fix_twice_changes_nothing_the_second_time(
    make_bridge: Callable[..., RunningBridge],
    sandbox: Sandbox,
    tmp_path: Path,
    psp_api: tuple[PspApi, str],
) -> None:
    api, api_url = psp_api
    config = reconcile_config(tmp_path, sandbox.url, api_url)
    running = make_bridge(config=config.read_text())
    build_world(running, sandbox, api)
    reconcile(config, "--fix")
    running.settle()

    store = running.bridge.store
    events_before = store.counts()
    outbox_before = [(a.id, a.status, a.attempts) for a in store.list_adjustments(limit=1000)]
    ledger_before = len(sandbox.state.adjustments)
    code, again = reconcile(config, "--fix")
    running.settle()
    assert code == 1 and again["fixed"] == {}
    assert store.counts() == events_before
    assert [(a.id, a.status, a.attempts) for a in store.list_adjustments(limit=1000)] == (
        outbox_before
    )
    assert len(sandbox.state.adjustments) == ledger_before


def test_reconcile_exits_0_when_all_is_well_and_the_last_run_is_served(
    make_bridge: Callable[..., RunningBridge],
    sandbox: Sandbox,
    tmp_path: Path,
    psp_api: tuple[PspApi, str],
) -> None:
    api, api_url = psp_api
    token = "admin-token-0123456789abcdef"
    config = reconcile_config(tmp_path, sandbox.url, api_url)
    config.write_text(config.read_text() + f"server:\n  admin_token: {token}\n")
    running = make_bridge(config=config.read_text())
    customer = sandbox.state.add_customer()
    world = StripeWorld(customer, payments=12, refunded=3, disputed=2)
    world.serve(api)
    for event in world.events:
        assert running.send_stripe(event).status_code == 200
        running.settle()

    proc = run_cli(config, "reconcile", "--since", "1d", env=ENV)
    assert proc.returncode == 0
    assert "ok                     17" in proc.stdout
    assert "reconciling stripe" in proc.stderr  # the progress bar's label

    headers = {"Authorization": f"Bearer {token}"}
    last = httpx.get(f"{running.url}/admin/reconcile", headers=headers)
    assert last.status_code == 200
    [run] = last.json()["runs"]
    assert run["connector"] == "stripe" and run["report"]["counts"]["ok"] == 17
    assert httpx.get(f"{running.url}/admin/reconcile").status_code == 401
    metrics = httpx.get(f"{running.url}/metrics").text
    assert 'bridge_reconcile_payments{connector="stripe",status="ok"} 17.0' in metrics
    assert 'bridge_reconcile_payments{connector="stripe",status="missing"} 0.0' in metrics
    assert "bridge_reconcile_last_run_timestamp_seconds" in metrics


def test_reconcile_errors_are_one_line(
    sandbox: Sandbox, tmp_path: Path, psp_api: tuple[PspApi, str]
) -> None:
    _, api_url = psp_api
    config = reconcile_config(tmp_path, sandbox.url, api_url)
    (tmp_path / "bridge.db").touch()
    cases = [
        (("--since", "1d"), {"STRIPE_API_KEY": "sk_test_wrong"}, "Stripe refused the API key"),
        (("--since", "1d"), {"STRIPE_API_KEY": ""}, "no API key"),
        (("--since", "yesterday"), ENV, "neither a duration"),
        (("--since", "1d", "--until", "2d"), ENV, "--until must be later"),
    ]
    for args, env, words in cases:
        proc = run_cli(config, "reconcile", "stripe", *args, ok=False, env=env)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("Error: ") and words in last, proc.stderr


def test_paddle_transactions_and_adjustments_reconcile(
    make_bridge: Callable[..., RunningBridge],
    sandbox: Sandbox,
    tmp_path: Path,
    psp_api: tuple[PspApi, str],
) -> None:
    from connectors import paddle
    from tests.conftest import config_text
    from tests.helpers.psp_api import PADDLE_KEY

    api, api_url = psp_api
    text = config_text(str(tmp_path / "bridge.db"), sandbox.url).replace(
        "    type: paddle\n", f"    type: paddle\n    api_base: {api_url}\n", 1
    )
    config = tmp_path / "config.yaml"
    config.write_text(text)
    running = make_bridge(config=text)
    customer = sandbox.state.add_customer()
    created = int(time.time()) - 3600
    transactions = [
        paddle.sample_event(
            "transaction.completed",
            event_id=f"evt_01rc{n:04d}",
            object_id=f"txn_rc_{n}",
            customer=customer,
            amount_minor=2000 + n,
            created=created + n,
        )
        for n in range(4)
    ]
    refund = paddle.sample_event(
        "adjustment.updated",
        event_id="evt_01rc9999",
        object_id="adj_rc_1",
        transaction_id="txn_rc_0",
        amount_minor=1000,
        created=created + 60,
    )
    api.set_paddle_objects("transactions", [cast(dict[str, Any], e["data"]) for e in transactions])
    api.set_paddle_objects("adjustments", [cast(dict[str, Any], refund["data"])])
    for event in transactions[:3]:  # the last transaction's webhook never came
        assert running.send_paddle(event).status_code == 200
    running.settle()
    assert running.send_paddle(refund).status_code == 200
    running.settle()

    env = {"PADDLE_API_KEY": PADDLE_KEY}
    args = ("reconcile", "paddle", "--since", "1d", "--rate", "0", "--json")
    first = run_cli(config, *args, ok=False, env=env)
    assert first.returncode == 1, first.stderr
    [report] = json.loads(first.stdout)["reports"]
    assert report["counts"]["ok"] == 4 and report["listed"] == 5
    assert [(r["status"], r["object_id"]) for r in report["rows"]] == [("missing", "txn_rc_3")]
    assert any("/transactions?" in q and "status=completed" in q for q in api.queries)

    assert run_cli(config, *args, "--fix", ok=False, env=env).returncode == 1
    running.settle()
    assert run_cli(config, *args, env=env).returncode == 0
    paid = sum((Decimal(2000 + n) for n in range(4)), Decimal(0)) / 100 - Decimal("10.00")
    assert sandbox.state.balance(customer, "USD") == paid


def test_a_dispute_of_a_refunded_invoice_reconciles_as_nothing_to_send(
    make_bridge: Callable[..., RunningBridge],
    sandbox: Sandbox,
    tmp_path: Path,
    psp_api: tuple[PspApi, str],
) -> None:
    """An invoice of 10.00 refunded in full, then disputed in full: the dispute moves no
    money (recorded for its units, never sent), and reconcile finds it decided and ok,
    not absent from Credyt nor unexpected."""
    from tests.helpers.reconcile_world import dispute_event, refund_event

    api, api_url = psp_api
    config = reconcile_config(tmp_path, sandbox.url, api_url)
    running = make_bridge(config=config.read_text())
    customer = sandbox.state.add_customer()
    world = StripeWorld(customer, payments=1, refunded=0, disputed=0)
    now = int(time.time())
    world.refunds.append(refund_event(0, now - 60, minor=1000))
    world.disputes.append(dispute_event(0, now - 30))
    world.serve(api)
    for event in world.events:
        assert running.send_stripe(event).status_code == 200
        running.settle()
    dispute = running.bridge.store.get_event("evt_rc_dp_000000")
    assert dispute is not None and "nothing is sent to Credyt" in (dispute.reason or "")
    assert sorted(Decimal(a.amount) for a in running.bridge.store.list_adjustments()) == [
        Decimal("-10.00"),
        Decimal("10.00"),
    ]

    code, report = reconcile(config)
    assert by_status(report) == {}, report["rows"]  # rows list what is not ok
    assert report["counts"]["ok"] == 3, report["counts"]
    assert code == 0
