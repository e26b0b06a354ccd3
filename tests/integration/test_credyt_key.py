"""The Credyt API key is checked at start (`GET /accounts/self`), by `check --online` and
by `serve`, against the real sandbox on loopback."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import httpx

from bridge.storage.records import AdjustmentStatus
from connectors import stripe
from tests.conftest import API_KEY, RunningBridge, Sandbox, wait_until
from tests.helpers.operator import run_cli, write_config
from tests.helpers.processes import free_port


def live_mode(text: str) -> str:
    """The default test config with its Stripe connector in `mode: live`."""
    return text.replace("    type: stripe\n", "    type: stripe\n    mode: live\n", 1)


def test_check_online_names_the_account_and_environment(sandbox: Sandbox, tmp_path: Path) -> None:
    config = write_config(tmp_path, sandbox.url)
    out = run_cli(config, "check", "--online").stdout
    assert "Credyt: API key accepted, account acc_sandbox, test environment" in out
    assert "GET /accounts/self" in sandbox.state.requests


def test_check_online_with_a_rejected_key_is_one_line_and_exit_1(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    config = write_config(tmp_path, sandbox.url)
    config.write_text(config.read_text().replace(API_KEY, "key_wrong"))
    assert run_cli(config, "check").returncode == 0  # offline: the key is not asked about
    proc = run_cli(config, "check", "--online", ok=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("Error: Credyt rejected the API key (401): check credyt.api_key")
    assert "key_wrong" not in proc.stdout + proc.stderr


def test_check_online_refuses_a_live_connector_on_a_test_key_and_the_reverse(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    config = write_config(tmp_path, sandbox.url)
    config.write_text(live_mode(config.read_text()))
    proc = run_cli(config, "check", "--online", ok=False)
    assert proc.returncode == 1
    assert (
        "connector stripe has mode: live, but the Credyt API key is for the test environment"
        in proc.stderr
    )
    sandbox.state.environment = "live"
    assert run_cli(config, "check", "--online").returncode == 0
    config.write_text(config.read_text().replace("mode: live", "mode: test"))
    proc = run_cli(config, "check", "--online", ok=False)
    assert "connector stripe has mode: test, but the Credyt API key is for the live" in proc.stderr


def test_check_online_with_credyt_unreachable_exits_1(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9")
    proc = run_cli(config, "check", "--online", ok=False)
    assert proc.returncode == 1
    assert "Credyt could not check the API key at http://127.0.0.1:9" in proc.stderr


def test_serve_fails_readyz_until_credyt_accepts_the_key(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox
) -> None:
    customer = sandbox.state.add_customer()
    # /accounts/self is the sandbox's `accounts` fault group: the first two checks fail.
    sandbox.state.inject(fail_next=2, fail_status=401, only="accounts")
    running = make_bridge()
    ready = httpx.get(f"{running.url}/readyz")
    assert ready.status_code == 503
    assert "Credyt rejected the API key (401)" in ready.json()["error"]
    assert running.bridge.metrics.credyt_key_accepted._value.get() == 0
    running.send_stripe(
        stripe.sample_event(
            "invoice.paid", event_id="evt_key", object_id="in_key", customer=customer
        )
    )
    running.settle(timeout=20)
    wait_until(lambda: running.bridge.key_check.problem is None, 20, "the key accepted")
    assert httpx.get(f"{running.url}/readyz").status_code == 200
    assert running.bridge.metrics.credyt_key_accepted._value.get() == 1
    assert running.bridge.key_check.attempts == 3
    (row,) = running.bridge.store.list_adjustments()
    assert row.status is AdjustmentStatus.DELIVERED and row.attempts == 1
    assert sandbox.state.balance(customer, "USD") == Decimal("20.00")


def test_serve_refuses_to_start_a_live_connector_on_a_test_key(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    config = write_config(tmp_path, sandbox.url)
    config.write_text(live_mode(config.read_text()))
    proc = run_cli(config, "serve", "--host", "127.0.0.1", "--port", str(free_port()), ok=False)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "credyt_environment_mismatch" in output
    assert "connector stripe has mode: live, but the Credyt API key is for the test" in output
    assert "GET /accounts/self" in sandbox.state.requests
    assert sandbox.state.adjustment_requests == 0
