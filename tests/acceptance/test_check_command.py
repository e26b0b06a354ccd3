"""`credyt-bridge check` through the real command: the rules table, and a config
error as one line naming file, line and key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.config_files import EXAMPLE, EXAMPLE_ENV, SECRETS_ENV, SECRETS_TEXT, line_of
from tests.helpers.processes import bridge_command


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in EXAMPLE_ENV}
    full_env.update(env or {})
    full_env.pop("BRIDGE_CONFIG", None)
    return subprocess.run(
        [*bridge_command(), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )


def test_check_prints_the_rules_table() -> None:
    result = cli("check", "--config", str(EXAMPLE), "--wide", env=EXAMPLE_ENV)
    assert result.returncode == 0, result.stderr
    assert f"{EXAMPLE}: OK, 2 connector(s)" in result.stdout
    lines = result.stdout.splitlines()
    assert "stripe (stripe, mode any):" in lines and "paddle (paddle, mode any):" in lines
    header = next(line for line in lines if line.startswith("rule "))
    assert header.split() == ["rule", "on", "when", "does"]
    at = next(n for n, line in enumerate(lines) if line.startswith("subscription-payment"))
    row, below = lines[at].split(), lines[at + 1].split()
    assert row[:3] == ["subscription-payment", "invoice.paid", "-"]
    assert below[0] == "invoice.payment_succeeded"  # each event type on its own line
    # each rule's basis: the example credits what was paid, tax included
    assert "credit paid" in lines[at] and "external_topup" in lines[at + 1]
    intent = next(line for line in lines if line.startswith("topup-payment-intent"))
    assert "credit paid" in intent


def test_check_fits_100_columns_and_wide_shows_every_event_type_whole() -> None:
    narrow = cli("check", "--config", str(EXAMPLE), env=EXAMPLE_ENV | {"COLUMNS": "100"})
    assert narrow.returncode == 0, narrow.stderr
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 100
    assert "…" in narrow.stdout  # checkout.session.async_payment_succeeded does not fit
    wide = cli("check", "--config", str(EXAMPLE), "--wide", env=EXAMPLE_ENV | {"COLUMNS": "100"})
    assert "…" not in wide.stdout
    assert "checkout.session.async_payment_succeeded" in wide.stdout
    assert max(len(line) for line in wide.stdout.splitlines()) > 100


def test_check_names_file_line_and_key_on_a_typo(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    text = EXAMPLE.read_text().replace("on: [invoice.paid,", "on: [invoice.payed,", 1)
    path.write_text(text)
    result = cli("check", "--config", str(path), env=EXAMPLE_ENV)
    assert result.returncode == 1
    assert result.stdout == ""
    line = line_of(text, "on: [invoice.payed,")
    assert (
        f"{path}:{line}: connectors.stripe.rules[0].on: unknown stripe event type" in result.stderr
    )


def test_check_without_a_config_fails_with_one_line() -> None:
    result = cli("check")
    assert result.returncode != 0
    assert "BRIDGE_CONFIG" in result.stderr


def test_check_refuses_the_empty_secret_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text(SECRETS_TEXT, encoding="utf-8")
    env = {k: v for k, v in SECRETS_ENV.items() if k != "OLD"}
    proc = subprocess.run(
        [sys.executable, "-m", "bridge", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k not in SECRETS_ENV} | env,
        timeout=60,
    )
    assert proc.returncode != 0
    assert f"{config}:9: connectors.stripe.secrets[0]:" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
