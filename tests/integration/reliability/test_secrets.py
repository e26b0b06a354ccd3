"""No secret, API key, admin token or raw body ever reaches the logs (invariant 5).

The whole flow runs with logging at debug: signed Stripe and Paddle payments, a
refund, forged and stale signatures, a customer found by external_id and one not
found, Credyt failing (500, 429, a dropped connection) and refusing (422), and admin
API calls with the right and a wrong token. Then every captured line is searched for
each secret, for signature header values, and for the raw bodies (whole, and a marker
string only the bodies carry). Once in-process (configure_logging("debug", stream=...))
and once as `credyt-bridge serve` with `log_level: debug`, capturing all it prints.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from connectors import paddle, stripe
from tests.conftest import (
    API_KEY,
    PADDLE_SECRET,
    STRIPE_SECRET,
    STRIPE_SECRET_2,
    RunningBridge,
    Sandbox,
    wait_until,
)
from tests.helpers.logs import LogBuffer
from tests.helpers.processes import MODULE_COMMAND, free_port, serve_command, wait_answering
from tests.integration.reliability.conftest import COUNTS, reliability_config, unique

ADMIN_TOKEN = "admin_tok_" + "s3cr3t" * 4
MARKER = "raw-body-marker-7f3a9c"  # appears in the bodies and nowhere the bridge logs
ADMIN = f"server:\n  admin_token: {ADMIN_TOKEN}\n"


def run_flow(url: str, sandbox: Sandbox) -> list[str]:
    """Drive everything that logs; returns the sensitive texts sent along the way."""
    state = sandbox.state
    known = state.add_customer()
    state.add_customer(external_id="cus_found_by_lookup")
    sensitive: list[str] = []

    def post(connector: str, event: dict[str, object], secret: str, **sign: int) -> int:
        body = json.dumps(event).encode()
        headers = (
            stripe.sign(body, secret, **sign)
            if connector == "stripe"
            else paddle.sign(body, secret, **sign)
        )
        sensitive.append(body.decode())
        sensitive.extend(v for k, v in headers.items() if k.endswith("Signature"))
        answer = httpx.post(f"{url}/webhooks/{connector}", content=body, headers=headers)
        COUNTS["secrets: webhooks sent"] += 1
        return answer.status_code

    def invoice(customer: str | None, psp_customer: str = "cus_x") -> dict[str, object]:
        event: dict[str, Any] = stripe.sample_event(
            "invoice.paid",
            event_id=unique("evt_"),
            object_id=unique("in_"),
            customer=customer,
            psp_customer=psp_customer,
        )
        event["data"]["object"]["description"] = MARKER
        event["data"]["object"]["metadata"] = {"note": MARKER}
        return event

    state.inject(fail_next=1, rate_limit_next=1, retry_after=0.1, drop_next=1, only="adjustments")
    assert post("stripe", invoice(known), STRIPE_SECRET) == 200
    assert post("stripe", invoice(known), STRIPE_SECRET_2) == 200
    assert post("stripe", invoice(None, "cus_found_by_lookup"), STRIPE_SECRET) == 200
    assert post("stripe", invoice(None, "cus_nobody"), STRIPE_SECRET) == 200
    assert post("stripe", invoice(known), "whsec_forged_" + "f" * 24) == 400
    assert post("stripe", invoice(known), STRIPE_SECRET, timestamp=1) == 400
    txn = unique("txn_")
    payment: dict[str, Any] = paddle.sample_event(
        "transaction.completed", event_id=unique("evt_"), object_id=txn, customer=known
    )
    payment["data"]["custom_data"]["note"] = MARKER
    assert post("paddle", payment, PADDLE_SECRET) == 200
    refund: dict[str, Any] = paddle.sample_event(
        "adjustment.updated",
        event_id=unique("evt_"),
        object_id=unique("adj_"),
        transaction_id=txn,
        amount_minor=500,
    )
    refund["data"]["reason"] = MARKER
    assert post("paddle", refund, PADDLE_SECRET) == 200
    assert post("paddle", payment, "pdl_ntfset_forged_" + "f" * 20) == 400
    # Credyt refuses one for good: a customer it does not know (dead, answer kept).
    assert post("stripe", invoice("cust_unknown_to_credyt"), STRIPE_SECRET) == 200

    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert httpx.get(f"{url}/admin/events", headers=admin).status_code == 200
    assert httpx.get(f"{url}/admin/adjustments", headers=admin).status_code == 200
    wrong = {"Authorization": "Bearer admin_tok_wrong_wrong_wrong"}
    assert httpx.get(f"{url}/admin/events", headers=wrong).status_code == 401
    assert httpx.get(f"{url}/metrics").status_code == 200
    sensitive.append(wrong["Authorization"].split()[1])
    return sensitive


def assert_clean(output: str, sensitive: list[str]) -> None:
    assert output.strip(), "nothing was logged: the test would prove nothing"
    secrets = [STRIPE_SECRET, STRIPE_SECRET_2, PADDLE_SECRET, API_KEY, ADMIN_TOKEN, MARKER]
    for text in secrets + sensitive:
        assert text not in output, f"leaked into the logs: {text[:40]}..."
    for line in output.splitlines():  # a leaked body fragment would carry its JSON shape
        assert '"object": "invoice"' not in line and '"custom_data"' not in line
    COUNTS["secrets: log lines searched"] += len(output.splitlines())
    COUNTS["secrets: sensitive strings checked"] += len(secrets) + len(sensitive)


def settled(check: Callable[[], dict[str, dict[str, int]]]) -> Callable[[], bool]:
    def done() -> bool:
        counts = check()
        return not counts["events"].get("pending") and not counts["adjustments"].get("pending")

    return done


def test_debug_logs_in_process_hold_no_secret_or_body(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path, logs: LogBuffer
) -> None:
    running = make_bridge(reliability_config(str(tmp_path / "bridge.db"), sandbox.url, extra=ADMIN))
    sensitive = run_flow(running.url, sandbox)
    wait_until(settled(running.bridge.store.counts), 30, "the flow to finish")
    names = logs.names()
    for expected in ("webhook_rejected", "delivery_retry_scheduled", "event_failed"):
        assert expected in names, f"{expected} was not logged: the flow missed a path"
    assert "delivery_refused" in names or "delivery_dead" in names
    assert_clean(logs.getvalue(), sensitive)


def test_debug_logs_of_serve_hold_no_secret_or_body(sandbox: Sandbox, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "log_level: debug\n"
        + reliability_config(str(tmp_path / "bridge.db"), sandbox.url, extra=ADMIN)
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    out = tmp_path / "serve.log"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            serve_command(config, port, MODULE_COMMAND), stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        wait_answering(f"{url}/healthz", proc, 30, out.read_text)
        sensitive = run_flow(url, sandbox)

        def finished() -> bool:
            text = httpx.get(f"{url}/metrics").text
            return (
                'bridge_outbox_adjustments{status="pending"} 0.0' in text
                and 'bridge_inbox_events{status="pending"} 0.0' in text
            )

        wait_until(finished, 30, "serve to deliver everything")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    output = out.read_text()
    assert "bridge_started" in output and "bridge_stopped" in output
    assert_clean(output, sensitive)
