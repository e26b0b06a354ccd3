"""No credit reaches Credyt already expired.

Policy (README "Guarantees", docs/configuration.md `credit.expires`): a duration counts
from the time of crediting; a billing period that has already ended fails the event with
a reason, and nothing is sent. A real bridge and the sandbox on loopback ports.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.storage.records import EventStatus
from connectors import paddle, stripe
from tests.conftest import Sandbox, config_text

DAY = 86400


def expiring_config(tmp_path: Path, sandbox: Sandbox, expires: str) -> str:
    text = config_text(str(tmp_path / "bridge.db"), sandbox.url)
    text = text.replace(
        "        credit:\n          amount: paid\n  paddle:",
        f"        credit:\n          amount: paid\n          expires: {expires}\n  paddle:",
        1,
    )
    return text.replace(
        "        on: transaction.completed\n        credit:\n          amount: paid\n",
        f"        on: transaction.completed\n        credit:\n          amount: paid\n"
        f"          expires: {expires}\n",
        1,
    )


def stripe_invoice(event_id: str, customer: str, created: int) -> dict[str, Any]:
    # The invoice's line runs 30 days from `created`: its period_end.
    return stripe.sample_event(
        "invoice.paid",
        event_id=event_id,
        object_id=f"in_{event_id}",
        customer=customer,
        amount_minor=2500,
        created=created,
    )


def sent_expiry(sandbox: Sandbox) -> datetime:
    (adjustment,) = sandbox.state.adjustments
    return datetime.fromisoformat(adjustment["body"]["expires_at"].replace("Z", "+00:00"))


def test_a_duration_counts_from_crediting_not_from_a_payment_ten_days_old(
    make_bridge: Any, sandbox: Sandbox, tmp_path: Path
) -> None:
    bridge = make_bridge(expiring_config(tmp_path, sandbox, "7d"))
    customer = sandbox.state.add_customer()
    before = datetime.now(UTC)
    bridge.send_stripe(stripe_invoice("evt_old", customer, int(time.time()) - 10 * DAY))
    bridge.settle()
    expires = sent_expiry(sandbox)
    assert before + timedelta(days=7) - timedelta(seconds=1) <= expires
    assert expires <= datetime.now(UTC) + timedelta(days=7)


def test_a_billing_period_that_ended_days_ago_fails_the_event_and_sends_nothing(
    make_bridge: Any, sandbox: Sandbox, tmp_path: Path
) -> None:
    bridge = make_bridge(expiring_config(tmp_path, sandbox, "period_end"))
    customer = sandbox.state.add_customer()
    created = int(time.time()) - 40 * DAY  # its period ended 10 days ago
    bridge.send_stripe(stripe_invoice("evt_ended", customer, created))
    bridge.settle()
    row = bridge.bridge.store.get_event("evt_ended")
    assert row is not None and row.status is EventStatus.FAILED
    assert "billing period ended" in (row.reason or "")
    assert "replay" in (row.reason or "")
    assert sandbox.state.adjustments == []


def test_a_billing_period_still_running_is_the_expiry(
    make_bridge: Any, sandbox: Sandbox, tmp_path: Path
) -> None:
    bridge = make_bridge(expiring_config(tmp_path, sandbox, "period_end"))
    customer = sandbox.state.add_customer()
    created = int(time.time()) - 20 * DAY  # 10 days of the period left
    bridge.send_stripe(stripe_invoice("evt_running", customer, created))
    bridge.settle()
    assert sent_expiry(sandbox) == datetime.fromtimestamp(created + 30 * DAY, UTC)


def test_a_paddle_billing_period_in_the_past_fails_the_event(
    make_bridge: Any, sandbox: Sandbox, tmp_path: Path
) -> None:
    bridge = make_bridge(expiring_config(tmp_path, sandbox, "period_end"))
    customer = sandbox.state.add_customer()
    event = paddle.sample_event(
        "transaction.completed",
        event_id="evt_01paddleold",
        object_id="txn_01paddleold",
        customer=customer,
        created=int(time.time()) - 45 * DAY,
    )
    bridge.send_paddle(event)
    bridge.settle()
    row = bridge.bridge.store.get_event("evt_01paddleold")
    assert row is not None and row.status is EventStatus.FAILED, row
    assert "billing period ended" in (row.reason or "")
    assert sandbox.state.adjustments == []
