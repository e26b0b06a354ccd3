"""An outbox row records the Credyt environment and account it is for, and is never
sent to another: a test payment queued while Credyt was down must not fund a live
wallet after a restart with the live key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import httpx

from bridge.config.loading import parse_config
from bridge.receiving.servers import serve_in_thread
from bridge.service import Bridge
from bridge.storage.records import AdjustmentStatus
from connectors import stripe
from tests.conftest import STRIPE_SECRET, Sandbox, config_text, wait_until
from tests.helpers.operator import run_cli, run_json


def in_mode(text: str, mode: str) -> str:
    return text.replace("    type: stripe\n", f"    type: stripe\n    mode: {mode}\n", 1)


@contextmanager
def bridge_in(mode: str, sandbox: Sandbox, tmp_path: Path) -> Iterator[Bridge]:
    path = tmp_path / "config.yaml"
    path.write_text(in_mode(config_text(str(tmp_path / "bridge.db"), sandbox.url), mode))
    bridge = Bridge(parse_config(path.read_text(), str(path)))
    with serve_in_thread(bridge.app) as url:
        bridge.url = url  # type: ignore[attr-defined]
        yield bridge


def test_a_test_credit_queued_while_credyt_was_down_never_reaches_live(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    customer = sandbox.state.add_customer()
    sandbox.state.inject(fail_next=100_000, fail_status=503, only="adjustments")
    with bridge_in("test", sandbox, tmp_path) as bridge:
        event = stripe.sample_event(
            "invoice.paid", event_id="evt_env", object_id="in_env", customer=customer
        )
        raw = json.dumps(event).encode()
        httpx.post(
            f"{bridge.url}/webhooks/stripe",  # type: ignore[attr-defined]
            content=raw,
            headers=stripe.sign(raw, STRIPE_SECRET),
        )

        def tried() -> bool:
            rows = bridge.store.list_adjustments()
            return bool(rows) and rows[0].attempts >= 1

        wait_until(tried, what="a failed delivery")
        (queued,) = bridge.store.list_adjustments()
        assert (queued.credyt_environment, queued.credyt_account) == ("test", "acc_sandbox")
        assert queued.status is AdjustmentStatus.PENDING

    # Restart with the live key (the sandbox now says the key is for live) and mode: live.
    sandbox.state.environment = "live"
    sandbox.state.inject()
    with bridge_in("live", sandbox, tmp_path) as bridge:
        wait_until(
            lambda: bridge.store.list_adjustments()[0].status is AdjustmentStatus.DEAD,
            what="the row to be held",
        )
        (held,) = bridge.store.list_adjustments()
        assert held.last_error is not None
        assert held.last_error.startswith(
            "held, not sent: queued for Credyt test environment (account acc_sandbox), "
            "but the API key is for the live environment"
        )
    assert sandbox.state.adjustments == []
    assert sandbox.state.balance(customer, "USD") == 0
    config = tmp_path / "config.yaml"
    (shown,) = run_json(config, "outbox", "list", "--status", "dead", "--json")
    assert shown["credyt_environment"] == "test" and "held, not sent" in shown["last_error"]

    # Back on the test key: the operator retries it, and it is credited once.
    sandbox.state.environment = "test"
    with bridge_in("test", sandbox, tmp_path) as bridge:
        run_cli(config, "outbox", "retry", "--dead")
        bridge.deliverer.wake()
        wait_until(
            lambda: bridge.store.list_adjustments()[0].status is AdjustmentStatus.DELIVERED,
            what="the retried row",
        )
    assert len(sandbox.state.adjustments) == 1
    assert sandbox.state.balance(customer, "USD") == Decimal("20.00")


def test_a_row_for_a_named_environment_waits_while_the_key_is_unknown(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    customer = sandbox.state.add_customer()
    with bridge_in("test", sandbox, tmp_path) as bridge:
        sandbox.state.inject(fail_next=100_000, fail_status=503, only="adjustments")
        event = stripe.sample_event(
            "invoice.paid", event_id="evt_wait", object_id="in_wait", customer=customer
        )
        raw = json.dumps(event).encode()
        httpx.post(
            f"{bridge.url}/webhooks/stripe",  # type: ignore[attr-defined]
            content=raw,
            headers=stripe.sign(raw, STRIPE_SECRET),
        )
        wait_until(lambda: bool(bridge.store.list_adjustments()), what="the row")

    # Restarted with the live key while Credyt is down altogether: the key is unknown.
    sandbox.state.environment = "live"
    sandbox.state.inject(fail_next=100_000, fail_status=503)
    with bridge_in("live", sandbox, tmp_path) as bridge:

        def waiting() -> bool:
            (row,) = bridge.store.list_adjustments()
            return (row.last_error or "").startswith("waiting: queued for Credyt test")

        wait_until(waiting, 30, "the row to wait for the key")
        sent_while_down = sandbox.state.adjustment_requests
        sandbox.state.inject()  # Credyt is back; the key check finds a live key
        wait_until(
            lambda: bridge.store.list_adjustments()[0].status is AdjustmentStatus.DEAD,
            30,
            "the row to be held",
        )
        (held,) = bridge.store.list_adjustments()
        assert "held, not sent" in (held.last_error or "")
        assert sandbox.state.adjustment_requests == sent_while_down  # none since restart
    assert sandbox.state.adjustments == []
