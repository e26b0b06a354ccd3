"""`backfill stripe --account acct_...`: a Connect platform lists a connected account's
events (the `Stripe-Account` header, through the stripe library) and they are credited
in that account's Credyt account, never in the platform's own wallets."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bridge.receiving.servers import serve_in_thread
from connectors import stripe
from tests.conftest import STRIPE_SECRET, RunningBridge, Sandbox, bridge_config
from tests.helpers.operator import run_cli

STRIPE_KEY = "sk_test_connect_0123456789"
CONNECTORS = """
  stripe:
    type: stripe
    secrets: ["{secret}"]
    api_base: {api}
    accounts: {{acct_1TENANT: acc_tenant}}
    rules:
      - name: topup
        on: payment_intent.succeeded
        when: {{metadata: {{credyt_topup: "true"}}}}
        credit: {{amount: paid}}
"""


def listing(events_by_account: dict[str, list[dict[str, Any]]], seen: list[str]) -> Starlette:
    """Stripe's GET /v1/events per Stripe-Account header; listed events carry no
    `account` (the shape that must not credit the platform's wallets)."""

    async def events(request: Request) -> Response:
        account = request.headers.get("stripe-account", "")
        seen.append(account)
        if request.headers.get("authorization") != f"Bearer {STRIPE_KEY}":
            return JSONResponse({"error": {"type": "invalid_request_error"}}, status_code=401)
        data = events_by_account.get(account, [])
        return JSONResponse(
            {"object": "list", "url": "/v1/events", "has_more": False, "data": data}
        )

    return Starlette(routes=[Route("/v1/events", events, methods=["GET"])])


@pytest.fixture
def api() -> Iterator[tuple[dict[str, list[dict[str, Any]]], list[str], str]]:
    by_account: dict[str, list[dict[str, Any]]] = {}
    seen: list[str] = []
    with serve_in_thread(listing(by_account, seen)) as url:
        yield by_account, seen, url


def test_backfill_for_a_connected_account_credits_its_tenant(
    tmp_path: Path,
    sandbox: Sandbox,
    make_bridge: Callable[..., RunningBridge],
    api: tuple[dict[str, list[dict[str, Any]]], list[str], str],
) -> None:
    by_account, seen, url = api
    tenant = sandbox.state.tenant("acc_tenant")
    tenant.add_customer(customer_id="cust_t")
    sandbox.state.add_customer(customer_id="cust_t")
    text = bridge_config(
        str(tmp_path / "bridge.db"), sandbox.url, CONNECTORS.format(secret=STRIPE_SECRET, api=url)
    )
    config = tmp_path / "config.yaml"
    config.write_text(text)
    running = make_bridge(config=text)
    by_account["acct_1TENANT"] = [
        stripe.sample_event(
            "payment_intent.succeeded",
            event_id="evt_missed",
            object_id="pi_missed",
            customer="cust_t",
            amount_minor=4200,
            metadata={"credyt_topup": "true"},
            created=int(time.time()) - 600,
        )
    ]
    env = {"STRIPE_API_KEY": STRIPE_KEY}
    args = ("backfill", "stripe", "--since", "1d", "--json", "--account", "acct_1TENANT")
    summary = json.loads(run_cli(config, *args, env=env).stdout)
    assert summary["stored_event_ids"] == ["evt_missed"]
    assert seen == ["acct_1TENANT"]
    running.settle()
    assert tenant.balance("cust_t", "USD") == Decimal("42.00")
    assert sandbox.state.balance("cust_t", "USD") == Decimal("0")
    listed = json.loads(
        run_cli(config, "events", "list", "--account", "acct_1TENANT", "--json").stdout
    )
    assert [e["event_id"] for e in listed] == ["evt_missed"]
    assert (
        json.loads(run_cli(config, "events", "list", "--account", "acc_other", "--json").stdout)
        == []
    )

    unmapped = run_cli(
        config, "backfill", "stripe", "--since", "1d", "--account", "acct_1OTHER", ok=False, env=env
    )
    assert unmapped.returncode != 0 and "maps no account acct_1OTHER" in unmapped.stderr
