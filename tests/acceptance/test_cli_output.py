"""What an operator sees in a 100-column terminal: read-only commands that need only the
database, tables that fit (cut text ends in an ellipsis, amounts line up on the decimal
point), `--wide` for everything and `--json` always complete.

Every command runs as `python -m bridge ...` with COLUMNS=100, against the database of
a real bridge that processed real signed webhooks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from bridge.config.loading import parse_config
from connectors import paddle, stripe
from tests.conftest import (
    API_KEY,
    PADDLE_SECRET,
    STRIPE_SECRET,
    STRIPE_SECRET_2,
    RunningBridge,
    Sandbox,
    config_text,
)
from tests.helpers.operator import run_cli

NARROW = {"COLUMNS": "100"}
SECRET_VARIABLES = {
    "T_CREDYT_API_KEY": API_KEY,
    "T_STRIPE_SECRET": STRIPE_SECRET,
    "T_STRIPE_SECRET_2": STRIPE_SECRET_2,
    "T_PADDLE_SECRET": PADDLE_SECRET,
    "T_ADMIN_TOKEN": "admin-" + "t" * 24,
}
LONG_TYPE = "invoice.payment_succeeded"
LONG_CUSTOMER = "cust_" + "w" * 59  # longer than the customer column may stay at 100 columns


def secret_free_config(tmp_path: Path, sandbox_url: str) -> Path:
    """The test config with every secret as a `${VAR}`, as a deployment writes it."""
    text = config_text(str(tmp_path / "bridge.db"), sandbox_url)
    for name, value in SECRET_VARIABLES.items():
        if name != "T_ADMIN_TOKEN":
            text = text.replace(value, "${" + name + "}")
    text = text.replace("connectors:\n", "server:\n  admin_token: ${T_ADMIN_TOKEN}\nconnectors:\n")
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def deployment(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> tuple[Path, RunningBridge]:
    """A bridge that credited a long customer id, failed one event and debited a refund."""
    config = secret_free_config(tmp_path, sandbox.url)
    resolved = parse_config(config.read_text(), str(config), SECRET_VARIABLES)
    assert resolved.server.admin_token == SECRET_VARIABLES["T_ADMIN_TOKEN"]
    running = make_bridge(config=config_text(resolved.database, sandbox.url))
    customer = sandbox.state.add_customer(customer_id=LONG_CUSTOMER)
    paid = stripe.sample_event(
        LONG_TYPE,
        event_id="evt_out_paid",
        object_id="in_out_paid",
        customer=customer,
        amount_minor=4999,
        currency="usd",
    )
    txn = paddle.sample_event(
        "transaction.completed",
        event_id="evt_out_txn",
        object_id="txn_out_1",
        customer=customer,
        amount_minor=150000,
        currency="EUR",
    )
    failing = stripe.sample_event(
        "invoice.paid",
        event_id="evt_out_failing",
        object_id="in_out_failing",
        psp_customer="cus_out_unknown",
        amount_minor=999,
        currency="usd",
    )
    assert running.send_stripe(paid).status_code == 200
    assert running.send_paddle(txn).status_code == 200
    assert running.send_stripe(failing).status_code == 200
    running.settle()
    return config, running


def test_read_only_commands_need_only_the_database(deployment: tuple[Path, RunningBridge]) -> None:
    config, _ = deployment
    listed = json.loads(run_cli(config, "events", "list", "--json").stdout)
    assert [e["event_id"] for e in listed] == ["evt_out_failing", "evt_out_txn", "evt_out_paid"]
    shown = json.loads(run_cli(config, "events", "show", "evt_out_txn", "--json").stdout)
    assert shown["event"]["status"] == "processed"
    outbox = json.loads(run_cli(config, "outbox", "list", "--json").stdout)
    assert sorted(Decimal(a["amount"]) for a in outbox) == [Decimal("49.99"), Decimal(1500)]


def test_commands_that_use_a_secret_still_name_the_missing_variable(
    deployment: tuple[Path, RunningBridge],
) -> None:
    config, _ = deployment
    check = run_cli(config, "check", ok=False)
    assert check.returncode == 1
    assert "credyt.api_key: environment variable T_CREDYT_API_KEY is not set" in check.stderr
    assert "connectors.stripe.secrets[0]: environment variable T_STRIPE_SECRET" in check.stderr
    empty = run_cli(config, "check", ok=False, env=SECRET_VARIABLES | {"T_ADMIN_TOKEN": ""})
    assert "server.admin_token: environment variable T_ADMIN_TOKEN is empty" in empty.stderr
    assert run_cli(config, "check", env=SECRET_VARIABLES).returncode == 0


def widest(text: str) -> int:
    return max(len(line) for line in text.splitlines())


def test_events_list_fits_100_columns_and_keeps_the_event_ids_whole(
    deployment: tuple[Path, RunningBridge],
) -> None:
    config, _ = deployment
    table = run_cli(config, "events", "list", env=NARROW).stdout
    assert widest(table) <= 100
    assert "evt_out_paid" in table and "evt_out_failing" in table
    failed = next(line for line in table.splitlines() if "evt_out_failing" in line)
    assert failed.endswith("…")  # the long reason is cut, with an ellipsis
    wide = run_cli(config, "events", "list", "--wide", env=NARROW).stdout
    assert widest(wide) > 100 and "…" not in wide
    [reason] = [
        e["reason"]
        for e in json.loads(
            run_cli(config, "events", "list", "--json", "--status", "failed", env=NARROW).stdout
        )
    ]
    assert reason in wide and reason not in table


def test_outbox_list_fits_100_columns_with_amounts_on_the_decimal_point(
    deployment: tuple[Path, RunningBridge],
) -> None:
    config, _ = deployment
    table = run_cli(config, "outbox", "list", env=NARROW).stdout
    assert widest(table) <= 100
    header, rule, *rows = table.splitlines()
    start = header.index("asset") + len("asset")
    end = header.index("amount") + len("amount")
    # where each amount's whole part ends: 1500 and 49.99 line up on the (implied) point
    points = {start + re.search(r"\d(?=\.|\s|$)", row[start : end + 4]).end() for row in rows}  # type: ignore[union-attr]
    assert len(points) == 1, table
    assert {row[start:end].strip() for row in rows} >= {"1500", "49.99"}
    assert LONG_CUSTOMER not in table and "…" in table
    wide = run_cli(config, "outbox", "list", "--wide", env=NARROW).stdout
    assert LONG_CUSTOMER in wide and "transaction_id" in wide


def test_events_show_fits_100_columns_and_json_keeps_everything(
    deployment: tuple[Path, RunningBridge],
) -> None:
    config, _ = deployment
    text = run_cli(config, "events", "show", "evt_out_paid", env=NARROW).stdout
    assert widest(text) <= 100
    assert "long lines cut, --wide or --json" in text
    assert f"delivered: payment 49.99 USD to {LONG_CUSTOMER}"[:60] in text
    wide = run_cli(config, "events", "show", "evt_out_paid", "--wide", env=NARROW).stdout
    assert f"delivered: payment 49.99 USD to {LONG_CUSTOMER} (rule" in wide
    detail = json.loads(run_cli(config, "events", "show", "evt_out_paid", "--json").stdout)
    assert detail["raw"]["type"] == LONG_TYPE
    assert detail["adjustments"][0]["customer_id"] == LONG_CUSTOMER
