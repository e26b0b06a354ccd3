"""What the README and docs/production.md claim about the command line, checked against
the code: which commands take --config, every flag documented, the defaults they quote,
the sample tables (as the code prints them at 100 columns), shell completion, the
docker check line's variables, and the metric names."""

from __future__ import annotations

import os
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import click

from bridge.cli import cli
from bridge.config import EXAMPLE_CONFIG
from bridge.operating.tables import events_table, outbox_table
from bridge.storage.records import AdjustmentStatus, EventStatus, InboxRow, OutboxRow
from tests.acceptance.test_cli import all_commands
from tests.helpers.processes import bridge_command

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
PRODUCTION = (ROOT / "docs" / "production.md").read_text()
DOCS = README + "".join(path.read_text() for path in sorted((ROOT / "docs").glob("*.md")))
METRICS = (ROOT / "bridge" / "metrics.py").read_text()


def command_at(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


def leaf_commands() -> list[tuple[tuple[str, ...], click.Command]]:
    found = [(path, command_at(path)) for path in all_commands() if path]
    return [(p, c) for p, c in found if not isinstance(c, click.Group)]


def test_every_command_but_demo_and_sandbox_takes_config_as_the_readme_says() -> None:
    without = {
        " ".join(path)
        for path, command in leaf_commands()
        if "config_path" not in {p.name for p in command.params}
    }
    assert without == {"demo", "sandbox"}
    assert "Every command but `demo` and `sandbox` takes `--config FILE`" in README


def test_every_flag_of_the_operator_commands_is_documented() -> None:
    skipped = {"sandbox"}  # its fault flags are documented by its --help and the tests' use
    for path, command in leaf_commands():
        if path[0] in skipped:
            continue
        for param in command.params:
            if isinstance(param, click.Option):
                flag = max(param.opts, key=len)
                if flag in ("--help", "--config"):
                    continue
                assert flag in DOCS, f"{' '.join(path)} {flag} is in neither README nor docs/"


def test_the_defaults_the_readme_quotes_are_the_code_s() -> None:
    def default(path: tuple[str, ...], name: str) -> object:
        [param] = [p for p in command_at(path).params if p.name == name]
        return param.default

    assert default(("serve",), "port") == 8080 and default(("send",), "port") == 8080
    assert "posts to `http://127.0.0.1:8080/webhooks/NAME`" in README
    assert default(("sandbox",), "port") == 8090
    assert "credyt-bridge sandbox --port 8090" in README
    assert default(("events", "list"), "limit") == 100


def sample(command: str) -> str:
    """The table under `$ COMMAND` in the README's console blocks."""
    block = README.split(f"$ {command}\n", 1)[1]
    return block.split("\n\n", 1)[0].split("```", 1)[0].rstrip("\n")


def test_the_events_list_sample_is_what_the_code_prints_at_100_columns() -> None:
    at = datetime(2026, 11, 24, 9, 53, 26, tzinfo=UTC).timestamp()
    reason = (
        "no credyt_customer_id in the payment's metadata and no Credyt customer with "
        "external_id cus_R8dLx0Vt3kqP2a"
    )
    assert f"status      failed: {reason}" in README  # the same event's `events show`
    row = InboxRow(
        id=41,
        connector="stripe",
        event_id="evt_1QfXzA2eZvKYlo2C",
        event_type="invoice.paid",
        livemode=True,
        received_at=at,
        status=EventStatus.FAILED,
        reason=reason,
        attempts=1,
        next_attempt_at=None,
        updated_at=at,
        payment_key="in_1QfXz92eZvKYlo2Cq1Hn",
        customer_id=None,
    )
    assert sample("credyt-bridge events list --status failed --since 24h") == events_table(
        [row], 100
    )


def test_the_outbox_list_sample_is_what_the_code_prints_at_100_columns() -> None:
    row = OutboxRow(
        id=97,
        transaction_id="36e8ca9e-7503-57d7-a765-e184c3856d5d",
        inbox_id=41,
        connector="stripe",
        rule="subscription-payment",
        kind="payment",
        payment_key="in_1QfXz92eZvKYlo2Cq1Hn",
        reversal_key=None,
        customer_id="cust_518a9n7t84jw9wf5qgv7b0ru2o",
        asset="USD",
        account="default",
        amount="49.99",
        payment_amount_minor=4999,
        body="{}",
        status=AdjustmentStatus.DELIVERED,
        attempts=1,
        next_attempt_at=None,
        queued_at=0.0,
        received_at=0.0,
        created_at=0.0,
        updated_at=0.0,
        delivered_at=0.0,
        last_status=201,
        last_error=None,
    )
    assert sample("credyt-bridge outbox list --limit 1") == outbox_table([row], 100)


def test_the_shell_completion_line_in_the_readme_works() -> None:
    assert 'eval "$(_CREDYT_BRIDGE_COMPLETE=bash_source credyt-bridge)"' in README
    proc = subprocess.run(
        bridge_command(),
        capture_output=True,
        text=True,
        env={**os.environ, "_CREDYT_BRIDGE_COMPLETE": "bash_source"},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "complete -o nosort -F" in proc.stdout and "credyt-bridge" in proc.stdout


def test_the_docker_check_line_passes_every_variable_the_default_config_needs() -> None:
    needed = set(re.findall(r"\$\{([A-Z_]+)\}", EXAMPLE_CONFIG.read_text()))  # no :-default
    assert needed == {"CREDYT_API_KEY", "STRIPE_WEBHOOK_SECRET", "PADDLE_WEBHOOK_SECRET"}
    [line] = [line for line in PRODUCTION.splitlines() if "credyt-bridge check --online" in line]
    assert {f"-e {name}" for name in needed} <= set(re.findall(r"-e [A-Z_]+", line))


def test_the_metrics_the_readme_names_are_the_ones_the_code_serves() -> None:
    section = README.split("\n## Metrics\n")[1].split("\n## ")[0]
    documented = {re.sub(r"_total$", "", name) for name in re.findall(r"bridge_[a-z_]+", section)}
    served = set(re.findall(r'"(bridge_[a-z_]+)"', METRICS))
    assert documented == served
