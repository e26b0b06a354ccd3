"""Replay and retry through the real command line, against a database a running bridge uses.

Each `credyt-bridge` here is a subprocess (`python -m bridge`) opening the same SQLite
file as the bridge served on loopback; the bridge delivers what the commands queue.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from connectors import stripe
from tests.conftest import RunningBridge, Sandbox, wait_until
from tests.helpers.operator import run_cli, run_json, snapshot, write_config


def test_unknown_customer_is_replayed_once_the_customer_exists(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    config = write_config(tmp_path, sandbox.url)
    running = make_bridge(config=config.read_text())
    event = stripe.sample_event(
        "invoice.paid",
        event_id="evt_late_customer",
        object_id="in_late_customer",
        psp_customer="cus_late",
        amount_minor=4999,
        currency="usd",
    )
    assert running.send_stripe(event).status_code == 200
    running.settle()

    failed = run_json(config, "events", "list", "--status", "failed", "--json")
    assert [e["event_id"] for e in failed] == ["evt_late_customer"]
    assert "no Credyt customer with external_id cus_late" in failed[0]["reason"]

    # A dry run while the customer is still unknown: the same verdict, nothing recorded.
    before = snapshot(running)
    out = run_cli(config, "replay", "evt_late_customer", "--dry-run").stdout
    assert "failed -> would be failed" in out
    assert snapshot(running) == before

    customer = sandbox.state.add_customer(external_id="cus_late")
    out = run_cli(config, "replay", "--status", "failed", "--dry-run").stdout
    assert "failed -> would be processed" in out
    assert f"payment 49.99 USD to {customer}" in out and ": new" in out
    assert "dry run: 1 event(s) replayed; would leave 1 processed; 1 new adjustment(s)" in out
    assert snapshot(running) == before
    assert sandbox.state.adjustments == []

    out = run_cli(config, "replay", "evt_late_customer").stdout
    assert "failed -> now processed" in out and "queued for delivery" in out
    # The serving bridge delivers the new outbox row on its poll.
    wait_until(lambda: sandbox.state.balance(customer, "USD") == Decimal("49.99"))
    running.settle()

    # Replaying again produces the same transaction id: nothing new, nothing sent.
    row_id = str(failed[0]["id"])
    again = run_json(config, "replay", row_id, "--json")
    assert again[0]["status_before"] == "processed" and again[0]["status"] == "processed"
    assert [a["new"] for a in again[0]["adjustments"]] == [False]
    running.settle()
    assert len(sandbox.state.adjustments) == 1
    assert sandbox.state.balance(customer, "USD") == Decimal("49.99")

    shown = run_cli(config, "events", "show", "evt_late_customer").stdout
    assert "raw event (as the PSP sent it):" in shown
    assert '"id": "in_late_customer"' in shown
    assert "psp_customer_id  cus_late" in shown
    assert f"payment 49.99 USD to {customer}" in shown and "delivered" in shown
    assert "201" in shown  # Credyt's answer to the delivery attempt


def test_dead_adjustments_are_retried_from_the_command_line(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    config = write_config(tmp_path, sandbox.url)
    running = make_bridge(config=config.read_text())
    for n in (1, 2):
        event = stripe.sample_event(
            "invoice.paid",
            event_id=f"evt_dead_{n}",
            object_id=f"in_dead_{n}",
            customer=f"cust_not_yet_{n}",
            amount_minor=1000 * n,
            currency="eur",
        )
        assert running.send_stripe(event).status_code == 200
    running.settle()

    dead = run_json(config, "outbox", "list", "--status", "dead", "--json")
    assert sorted(a["customer_id"] for a in dead) == ["cust_not_yet_1", "cust_not_yet_2"]
    assert {a["last_status"] for a in dead} == {404}
    shown = run_cli(config, "events", "show", "evt_dead_1").stdout
    assert "404" in shown and "dead" in shown and "Customer not found" in shown

    for n in (1, 2):
        sandbox.state.add_customer(customer_id=f"cust_not_yet_{n}")
    first = next(a for a in dead if a["customer_id"] == "cust_not_yet_1")
    out = run_cli(config, "outbox", "retry", str(first["id"])).stdout
    assert out.startswith("1 adjustment(s) queued again")
    wait_until(lambda: sandbox.state.balance("cust_not_yet_1", "EUR") == Decimal("10.00"))

    out = run_cli(config, "outbox", "retry", "--dead").stdout
    assert out.startswith("1 adjustment(s) queued again")
    wait_until(lambda: sandbox.state.balance("cust_not_yet_2", "EUR") == Decimal("20.00"))
    running.settle()
    assert run_json(config, "outbox", "list", "--status", "dead", "--json") == []
    listed = run_cli(config, "outbox", "list").stdout
    assert listed.count("delivered") == 2

    # Retrying a delivered adjustment does nothing.
    out = run_cli(config, "outbox", "retry", first["transaction_id"]).stdout
    assert out.startswith("0 adjustment(s) queued again")


def test_unknown_ids_are_one_line_errors(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    config = write_config(tmp_path, sandbox.url)
    make_bridge(config=config.read_text())
    for args in (
        ("events", "show", "evt_nope"),
        ("replay", "evt_nope"),
        ("outbox", "retry", "999"),
        ("replay",),
    ):
        proc = run_cli(config, *args, ok=False)
        assert proc.returncode == 1, args
        assert proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert proc.stderr.startswith("Error: ")
