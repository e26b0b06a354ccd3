"""The admin API on a real bridge: bearer token or 401, and no route at all without a token."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import httpx

from connectors import stripe
from tests.conftest import RunningBridge, Sandbox, config_text, wait_until

TOKEN = "admin-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def admin_bridge(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> RunningBridge:
    extra = f"server:\n  admin_token: {TOKEN}\n"
    return make_bridge(config=config_text(str(tmp_path / "bridge.db"), sandbox.url, extra))


def test_no_admin_route_without_a_token(running: RunningBridge) -> None:
    for path in ("/admin/events", "/admin/adjustments"):
        assert httpx.get(running.url + path, headers=AUTH).status_code == 404
    assert httpx.post(running.url + "/admin/replay", headers=AUTH).status_code == 404


def test_admin_requires_the_bearer_token(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = admin_bridge(make_bridge, sandbox, tmp_path)
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token-0123456789abcdef"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
    ):
        for method, path in (
            ("GET", "/admin/events"),
            ("GET", "/admin/events/1"),
            ("POST", "/admin/events/1/replay"),
            ("POST", "/admin/replay"),
            ("GET", "/admin/adjustments"),
            ("GET", "/admin/adjustments/1"),
            ("POST", "/admin/adjustments/retry"),
        ):
            response = httpx.request(method, running.url + path, headers=headers)
            assert response.status_code == 401, (method, path, headers)
            assert response.headers["www-authenticate"].startswith("Bearer")
    assert httpx.get(running.url + "/admin/events", headers=AUTH).status_code == 200


def test_admin_lists_shows_replays_and_retries(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = admin_bridge(make_bridge, sandbox, tmp_path)
    with httpx.Client(base_url=running.url, headers=AUTH) as api:
        check_admin_flow(running, sandbox, api)


def check_admin_flow(running: RunningBridge, sandbox: Sandbox, api: httpx.Client) -> None:
    late = stripe.sample_event(
        "invoice.paid",
        event_id="evt_admin_late",
        object_id="in_admin_late",
        psp_customer="cus_admin_late",
        amount_minor=1500,
        currency="usd",
    )
    dead = stripe.sample_event(
        "invoice.paid",
        event_id="evt_admin_dead",
        object_id="in_admin_dead",
        customer="cust_admin_later",
        amount_minor=700,
        currency="usd",
    )
    assert running.send_stripe(late).status_code == 200
    assert running.send_stripe(dead).status_code == 200
    running.settle()

    failed = api.get("/admin/events", params={"status": "failed", "since": "1h"}).json()
    assert [e["event_id"] for e in failed["events"]] == ["evt_admin_late"]
    assert "body" not in failed["events"][0]
    shown = api.get("/admin/events/evt_admin_late").json()
    assert shown["raw"]["id"] == "evt_admin_late"
    assert shown["normalized"]["psp_customer_id"] == "cus_admin_late"
    assert shown["adjustments"] == []
    assert api.get("/admin/events/evt_missing").status_code == 404
    assert api.get("/admin/events", params={"since": "yesterday"}).status_code == 400

    customer = sandbox.state.add_customer(external_id="cus_admin_late")
    dry = api.post("/admin/events/evt_admin_late/replay", params={"dry_run": "true"}).json()
    assert (dry["status_before"], dry["status"], dry["dry_run"]) == ("failed", "processed", True)
    assert Decimal(dry["adjustments"][0]["amount"]) == 15 and dry["adjustments"][0]["new"]
    assert api.get("/admin/events/evt_admin_late").json()["event"]["status"] == "failed"

    replayed = api.post("/admin/replay", json={"status": "failed", "since": "1h"}).json()
    assert [r["status"] for r in replayed["results"]] == ["processed"]
    wait_until(lambda: sandbox.state.balance(customer, "USD") == Decimal("15.00"))

    dead_rows = api.get("/admin/adjustments", params={"status": "dead"}).json()["adjustments"]
    assert [a["customer_id"] for a in dead_rows] == ["cust_admin_later"]
    detail = api.get(f"/admin/adjustments/{dead_rows[0]['transaction_id']}").json()
    assert detail["attempts_made"][0]["status_code"] == 404
    assert Decimal(str(detail["body"]["amount"])) == 7

    sandbox.state.add_customer(customer_id="cust_admin_later")
    assert api.post("/admin/adjustments/retry", json={"dead": True}).json() == {"retried": 1}
    wait_until(lambda: sandbox.state.balance("cust_admin_later", "USD") == Decimal("7.00"))
    assert api.post("/admin/adjustments/retry", json={}).status_code == 400
