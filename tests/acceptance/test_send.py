"""`credyt-bridge send` as a real subprocess against a running bridge and the sandbox.

The command is the installed console script (next to the interpreter running the
tests), so these tests also cover its entry point, argument parsing and exit codes.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from bridge.storage.records import EventStatus
from tests.conftest import PADDLE_SECRET, STRIPE_SECRET, RunningBridge, Sandbox, config_text
from tests.helpers.processes import bridge_command

pytestmark = pytest.mark.slow  # subprocesses

SECRETS_ENV = ("STRIPE_WEBHOOK_SECRET", "PADDLE_WEBHOOK_SECRET", "BRIDGE_CONFIG")


def send(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS_ENV}
    clean.update(env or {})
    return subprocess.run(
        [*bridge_command(), "send", *args],
        capture_output=True,
        text=True,
        env=clean,
        timeout=60,  # a hang guard only; nothing here is timed
        check=False,
    )


def test_send_stripe_invoice_paid_is_credited(running: RunningBridge, sandbox: Sandbox) -> None:
    customer = sandbox.state.add_customer()
    args = (
        "stripe",
        "invoice.paid",
        "--url",
        f"{running.url}/webhooks/stripe",
        "--secret",
        STRIPE_SECRET,
        "--customer",
        customer,
        "--amount",
        "49.99",
        "--currency",
        "usd",
        "--event-id",
        "evt_send_stripe_1",
        "--object-id",
        "in_send_stripe_1",
    )
    first = send(*args)
    assert first.returncode == 0, first.stderr
    answer, ids, show = first.stdout.splitlines()
    assert answer == '200 {"status":"accepted"}'
    assert ids.startswith("event evt_send_stripe_1 (stripe invoice.paid): invoice in_send_stripe_1")
    assert show == "see it: credyt-bridge events show evt_send_stripe_1"
    again = send(*args)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0] == '200 {"status":"duplicate"}'
    running.settle()

    [record] = sandbox.state.adjustments
    assert record["customer_id"] == customer
    assert record["body"]["metadata"]["invoice"] == "in_send_stripe_1"
    assert record["body"]["metadata"]["event_id"] == "evt_send_stripe_1"
    assert sandbox.state.balance(customer, "USD") == Decimal("49.99")


def test_send_paddle_transaction_and_refund(running: RunningBridge, sandbox: Sandbox) -> None:
    customer = sandbox.state.add_customer()
    url = f"{running.url}/webhooks/paddle"
    env = {"PADDLE_WEBHOOK_SECRET": PADDLE_SECRET}  # the secret from the environment
    paid = send(
        *("paddle", "transaction.completed", "--url", url, "--customer", customer),
        *("--amount", "1500", "--currency", "JPY", "--object-id", "txn_send_paddle_1"),
        env=env,
    )
    assert paid.returncode == 0, paid.stderr
    assert paid.stdout.startswith("200 ")
    running.settle()
    assert sandbox.state.balance(customer, "JPY") == Decimal("1500")

    refund = send(
        *("paddle", "adjustment.updated", "--url", url, "--payment", "txn_send_paddle_1"),
        *("--amount", "500", "--currency", "jpy"),
        env=env,
    )
    assert refund.returncode == 0, refund.stderr
    running.settle()

    credit, debit = (a["body"] for a in sandbox.state.adjustments)
    assert (credit["amount"], credit["metadata"]["transaction"]) == (1500, "txn_send_paddle_1")
    assert (debit["amount"], debit["reason"]) == (-500, "external_refund")
    assert sandbox.state.balance(customer, "JPY") == Decimal("1000")


@pytest.mark.parametrize("psp", ["stripe", "paddle"])
def test_wrong_secret_exits_non_zero_and_prints_the_400(
    running: RunningBridge, sandbox: Sandbox, psp: str
) -> None:
    event_type = "invoice.paid" if psp == "stripe" else "transaction.completed"
    result = send(
        *(psp, event_type, "--url", f"{running.url}/webhooks/{psp}"),
        *("--secret", "not_the_secret", "--customer", sandbox.state.add_customer()),
    )
    assert result.returncode != 0
    assert result.stdout.startswith("400 ")
    assert "matches none of the connector's secrets" in result.stdout
    assert running.bridge.store.counts() == {"events": {}, "adjustments": {}}


@pytest.mark.parametrize(
    ("psp", "event_type", "amount", "currency", "message"),
    [
        ("stripe", "invoice.paid", "49.999", "usd", "has more decimals than USD allows"),
        ("stripe", "invoice.paid", "10.0001", "kwd", "has more decimals than KWD allows"),
        ("paddle", "transaction.completed", "1.5", "JPY", "has more decimals than JPY allows"),
        ("paddle", "transaction.completed", "Infinity", "USD", "is not a finite amount"),
        ("paddle", "transaction.completed", "-5", "USD", "is negative"),
        ("stripe", "invoice.paid", "ten", "usd", "is not a decimal number"),
    ],
)
def test_bad_amount_is_a_one_line_error(
    running: RunningBridge, psp: str, event_type: str, amount: str, currency: str, message: str
) -> None:
    result = send(
        *(psp, event_type, "--url", f"{running.url}/webhooks/{psp}", "--secret", "s"),
        *(f"--amount={amount}", "--currency", currency),
    )
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: --amount") and message in lines[0]
    assert running.bridge.store.counts()["events"] == {}


def test_paddle_refund_without_payment_names_the_option(running: RunningBridge) -> None:
    result = send(
        *("paddle", "adjustment.updated", "--url", f"{running.url}/webhooks/paddle"),
        *("--secret", PADDLE_SECRET),
    )
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "--payment" in line and "transaction_id" in line


def test_sent_events_are_processed_not_failed(running: RunningBridge, sandbox: Sandbox) -> None:
    # A sample must read back cleanly: the default PSP customer resolves by external_id.
    customer = sandbox.state.add_customer(external_id="ctm_demo")
    result = send(
        *("paddle", "transaction.completed", "--url", f"{running.url}/webhooks/paddle"),
        *("--secret", PADDLE_SECRET, "--event-id", "evt_send_lookup"),
    )
    assert result.returncode == 0, result.stderr
    running.settle()
    row = running.bridge.store.get_event("evt_send_lookup")
    assert row is not None and row.status is EventStatus.PROCESSED, row
    assert sandbox.state.balance(customer, "USD") == Decimal("20.00")


def test_help_shows_an_example() -> None:
    result = send("--help")
    assert result.returncode == 0, result.stderr
    assert "Example:" in result.stdout
    assert "credyt-bridge send stripe invoice.paid --url" in result.stdout


def test_help_and_a_typo_list_the_event_types_it_makes() -> None:
    help_text = send("--help").stdout
    events = help_text.split("Event types:")[1]
    for event_type in ("invoice.paid", "refund.created", "charge.dispute.created"):
        assert event_type in events
    assert "transaction.completed" in events and "adjustment.updated" in events
    typo = send("stripe", "invoice.payed", "--print")
    assert typo.returncode == 1 and typo.stdout == ""
    [line] = typo.stderr.splitlines()
    assert line.startswith("Error: send makes no stripe event 'invoice.payed'; did you mean")
    assert "invoice.paid" in line.split("did you mean")[1].split("?")[0]


def test_print_shows_the_event_without_a_secret_or_a_bridge() -> None:
    result = send(
        *("stripe", "refund.created", "--print", "--payment", "pi_send_print"),
        *("--event-id", "evt_send_print", "--amount", "7.50", "--currency", "eur"),
    )
    assert result.returncode == 0, result.stderr
    event = json.loads(result.stdout)
    assert event["id"] == "evt_send_print" and event["type"] == "refund.created"
    refund = event["data"]["object"]
    assert (refund["amount"], refund["currency"], refund["payment_intent"]) == (
        750,
        "eur",
        "pi_send_print",
    )


def test_without_url_it_sends_to_the_config_s_connector(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    text = config_text(str(tmp_path / "bridge.db"), sandbox.url).replace(
        "  stripe:\n    type: stripe", "  acme-stripe:\n    type: stripe"
    )
    config = tmp_path / "config.yaml"
    config.write_text(text)
    running = make_bridge(config=text)
    port = running.url.rsplit(":", 1)[1]
    customer = sandbox.state.add_customer()
    result = send(
        *("stripe", "invoice.paid", "--config", str(config), "--port", port),
        *("--customer", customer, "--event-id", "evt_send_default_url"),
    )
    assert result.returncode == 0, result.stderr
    running.settle()
    row = running.bridge.store.get_event("evt_send_default_url")
    assert row is not None and row.connector == "acme-stripe"  # signed with its secret
    assert sandbox.state.balance(customer, "USD") == Decimal("20.00")
