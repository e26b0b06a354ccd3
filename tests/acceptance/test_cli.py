"""The operator commands on the real command line: help, listing filters, show, prune.

Replay and retry are in test_replay.py, backfill in test_backfill.py; every command
here runs as `python -m bridge ...` against a database a running bridge also uses.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import click
import httpx
import pytest

from bridge.cli import cli
from bridge.storage.records import EventFilter
from connectors import paddle, stripe
from tests.conftest import API_KEY, RunningBridge, Sandbox, wait_until
from tests.helpers.operator import run_cli, run_json, write_config
from tests.helpers.processes import MODULE_COMMAND, free_port, serve_command, wait_answering


def all_commands() -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []

    def walk(command: click.Command, path: tuple[str, ...]) -> None:
        found.append(path)
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, (*path, name))

    walk(cli, ())
    return found


@pytest.mark.parametrize("path", all_commands(), ids=lambda p: " ".join(p) or "credyt-bridge")
def test_every_command_has_help_with_an_example(path: tuple[str, ...]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bridge", *path, "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    description = proc.stdout.split("\nOptions:")[0]
    assert "Example:" in description
    assert "credyt-bridge" in description.split("Example:")[1]


def test_operating_commands_take_config_and_json() -> None:
    for path in all_commands():
        command: click.Command = cli
        for name in path:
            assert isinstance(command, click.Group)
            command = command.commands[name]
        if isinstance(command, click.Group) or path[0] in ("sandbox", "demo"):
            continue
        options = {o.name for o in command.params if isinstance(o, click.Option)}
        assert "config_path" in options, path
        if path[-1] == "list":
            assert "as_json" in options, path


def send_mix(running: RunningBridge, customer: str) -> None:
    """A Stripe payment, a Paddle payment and refund, and a Stripe event that fails."""
    paid = stripe.sample_event(
        "invoice.paid",
        event_id="evt_cli_paid",
        object_id="in_cli_paid",
        customer=customer,
        amount_minor=2500,
        currency="usd",
    )
    txn = paddle.sample_event(
        "transaction.completed",
        event_id="evt_cli_txn",
        object_id="txn_cli_1",
        customer=customer,
        amount_minor=4000,
        currency="EUR",
    )
    refund = paddle.sample_event(
        "adjustment.updated",
        event_id="evt_cli_refund",
        object_id="adj_cli_1",
        transaction_id="txn_cli_1",
        amount_minor=1000,
        currency="EUR",
    )
    failing = stripe.sample_event(
        "invoice.paid",
        event_id="evt_cli_failing",
        object_id="in_cli_failing",
        psp_customer="cus_cli_unknown",
        amount_minor=999,
        currency="usd",
    )
    assert running.send_stripe(paid).status_code == 200
    assert running.send_paddle(txn).status_code == 200
    running.settle()
    assert running.send_paddle(refund).status_code == 200
    assert running.send_stripe(failing).status_code == 200
    running.settle()


def test_events_list_filters_and_show(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    config = write_config(tmp_path, sandbox.url)
    running = make_bridge(config=config.read_text())
    customer = sandbox.state.add_customer()
    send_mix(running, customer)

    def ids(*args: str) -> list[str]:
        return [e["event_id"] for e in run_json(config, "events", "list", "--json", *args)]

    assert ids() == ["evt_cli_failing", "evt_cli_refund", "evt_cli_txn", "evt_cli_paid"]
    assert ids("--connector", "paddle") == ["evt_cli_refund", "evt_cli_txn"]
    assert ids("--type", "invoice.paid", "--status", "processed") == ["evt_cli_paid"]
    assert ids("--status", "failed") == ["evt_cli_failing"]
    assert ids("--customer", customer) == ["evt_cli_refund", "evt_cli_txn", "evt_cli_paid"]
    assert ids("--limit", "1") == ["evt_cli_failing"]
    assert ids("--since", "1h") == ids()
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert ids("--since", future) == []
    assert ids("--until", "2020-01-01T00:00:00Z") == []

    table = run_cli(config, "events", "list", "--status", "failed").stdout
    assert "evt_cli_failing" in table and "no credyt_customer_id in the" in table
    assert run_cli(config, "events", "list", "--since", future).stdout == "no events match\n"
    bad = run_cli(config, "events", "list", "--since", "last week", ok=False)
    assert bad.returncode == 1 and "neither a duration" in bad.stderr

    detail = run_json(config, "events", "show", "evt_cli_refund", "--json")
    assert detail["event"]["status"] == "processed"
    assert detail["raw"]["data"]["id"] == "adj_cli_1"
    assert detail["normalized"]["kind"] == "reversal"
    [debit] = detail["adjustments"]
    assert Decimal(debit["amount"]) == Decimal("-10") and debit["status"] == "delivered"
    assert debit["attempts_made"][0]["status_code"] == 201
    text = run_cli(config, "events", "show", str(detail["event"]["id"])).stdout
    assert "normalized (what the connector reads from it now):" in text
    assert "reversal -10 EUR to" in text and "Credyt answered" in text

    outbox = run_json(config, "outbox", "list", "--json")
    assert sorted(Decimal(a["amount"]) for a in outbox) == [Decimal(-10), Decimal(25), Decimal(40)]
    assert run_json(config, "outbox", "list", "--status", "dead", "--json") == []


def test_prune_keeps_what_is_unfinished_and_whole_payments(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    config = write_config(tmp_path, sandbox.url)
    running = make_bridge(config=config.read_text())
    customer = sandbox.state.add_customer()
    send_mix(running, customer)
    # A second Paddle payment whose refund Credyt refuses: the refund is dead, so the
    # whole payment (its credit too) must stay.
    txn = paddle.sample_event(
        "transaction.completed",
        event_id="evt_cli_txn2",
        object_id="txn_cli_2",
        customer=customer,
        amount_minor=3000,
        currency="EUR",
    )
    assert running.send_paddle(txn).status_code == 200
    running.settle()
    sandbox.state.inject(fail_next=1, fail_status=422, only="adjustments")
    refund2 = paddle.sample_event(
        "adjustment.updated",
        event_id="evt_cli_refund2",
        object_id="adj_cli_2",
        transaction_id="txn_cli_2",
        amount_minor=500,
        currency="EUR",
    )
    assert running.send_paddle(refund2).status_code == 200
    running.settle()

    out = run_cli(config, "prune", "--older-than", "1ms").stdout
    assert "3 adjustments, 3 attempts, 3 events" in out

    store = running.bridge.store
    left = {e.event_id: e.status.value for e in store.list_events(EventFilter(limit=100))}
    assert left == {
        "evt_cli_failing": "failed",
        "evt_cli_txn2": "processed",
        "evt_cli_refund2": "processed",
    }
    kept = sorted((a.payment_key, a.status.value) for a in store.list_adjustments())
    assert kept == [("txn_cli_2", "dead"), ("txn_cli_2", "delivered")]
    assert "0 adjustments, 0 attempts, 0 events" in run_cli(config, "prune").stdout

    # A later refund of a pruned payment still finds its credit: what was decided is
    # never pruned.
    late_refund = paddle.sample_event(
        "adjustment.updated",
        event_id="evt_cli_refund3",
        object_id="adj_cli_3",
        transaction_id="txn_cli_1",
        amount_minor=500,
        currency="EUR",
    )
    assert running.send_paddle(late_refund).status_code == 200

    def looked_at() -> bool:
        row = store.get_event("evt_cli_refund3")
        return row is not None and row.attempts > 0

    wait_until(looked_at, what="the late refund to be processed")
    assert run_json(config, "events", "list", "--status", "pending", "--json") == []
    [debit] = store.adjustments_for_event(store.get_event("evt_cli_refund3").id)  # type: ignore[union-attr]
    assert (debit.payment_key, debit.amount) == ("txn_cli_1", "-5")


def test_commands_need_a_config_and_an_existing_database(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9")
    missing = run_cli(config, "events", "list", ok=False)
    assert missing.returncode == 1
    assert missing.stderr.startswith("Error: no database at ")
    assert not (tmp_path / "bridge.db").exists()
    no_config = subprocess.run(
        [sys.executable, "-m", "bridge", "outbox", "list"],
        capture_output=True,
        text=True,
        env={"PATH": "", "HOME": str(tmp_path)},
    )
    assert no_config.returncode != 0 and "BRIDGE_CONFIG" in no_config.stderr


def test_demo_runs_on_the_real_command_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bridge", "demo"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "demo passed" in proc.stdout


def test_a_deployment_on_the_command_line(tmp_path: Path) -> None:
    """sandbox, serve, send, then the operator commands, each its own process."""
    sandbox_port, bridge_port = free_port(), free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    config = write_config(tmp_path, sandbox_url)
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "bridge", "sandbox", "--port", str(sandbox_port)]
            + ["--api-key", API_KEY, "--customer", "cust_ops=cus_ops"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            serve_command(config, bridge_port, MODULE_COMMAND),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=tmp_path,
        ),
    ]
    try:
        wait_answering(f"{sandbox_url}/_sandbox/state", processes[0])
        wait_answering(f"http://127.0.0.1:{bridge_port}/healthz", processes[1])
        sent = run_cli(
            config,
            "send",
            "stripe",
            "invoice.paid",
            "--url",
            f"http://127.0.0.1:{bridge_port}/webhooks/stripe",
            "--psp-customer",
            "cus_ops",
            "--amount",
            "12.34",
            "--event-id",
            "evt_deployed",
            env={"STRIPE_WEBHOOK_SECRET": ""},  # the secret comes from the config
        )
        assert sent.stdout.startswith("200")

        def delivered() -> bool:
            rows = run_json(config, "outbox", "list", "--json")
            return [r["status"] for r in rows] == ["delivered"]

        wait_until(delivered, 30, "the adjustment to be delivered")
        [event] = run_json(config, "events", "list", "--json")
        assert (event["event_id"], event["customer_id"]) == ("evt_deployed", "cust_ops")
        wallet = httpx.get(
            f"{sandbox_url}/customers/cust_ops/wallet", headers={"X-CREDYT-API-KEY": API_KEY}
        )
        assert "12.34" in wallet.text
        assert "OK, 2 connector(s)" in run_cli(config, "check").stdout
    finally:
        for process in reversed(processes):
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(timeout=30) for process in processes]
    assert codes[1] == 0  # serve stops gracefully on SIGTERM


def test_every_command_is_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("\n## Operating\n")[1].split("\n## ")[0]
    for path in all_commands():
        command: click.Command = cli
        for name in path:
            assert isinstance(command, click.Group)
            command = command.commands[name]
        if path and not isinstance(command, click.Group):
            assert f"credyt-bridge {' '.join(path)}" in section, path


def test_moments_are_durations_ago_or_iso_times() -> None:
    from bridge.errors import OperationError
    from bridge.operating.operations import parse_moment

    now = 1_800_000_000.0
    assert parse_moment("2h", now) == now - 7200
    assert parse_moment("90s", now) == now - 90
    assert parse_moment("2026-11-24T09:00:00Z") == datetime(2026, 11, 24, 9, tzinfo=UTC).timestamp()
    assert parse_moment("2026-11-24T10:00:00+01:00") == parse_moment("2026-11-24T09:00:00")
    with pytest.raises(OperationError, match="neither a duration"):
        parse_moment("yesterday")
