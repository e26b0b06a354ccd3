"""`check --online` also asks each PSP where it sends webhooks (Stripe's
`GET /v1/webhook_endpoints` through the stripe library, Paddle's
`GET /notification-settings`) and fails naming each rule event type none of the
connector's destinations sends. The PSPs are a loopback stand-in reached through each
connector's `api_base`; Credyt is the sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bridge.receiving.servers import serve_in_thread
from tests.conftest import Sandbox, config_text
from tests.helpers.operator import run_cli

STRIPE_KEY = "sk_test_subscriptions_0123456789"
PADDLE_KEY = "pdl_sdbx_apikey_subscriptions_0123456789"
NO_KEYS = {"STRIPE_API_KEY": "", "PADDLE_API_KEY": ""}


@dataclass
class Destinations:
    stripe: list[dict[str, Any]] = field(default_factory=list)
    paddle: list[dict[str, Any]] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)


def psp_api(destinations: Destinations) -> Starlette:
    async def webhook_endpoints(request: Request) -> Response:
        destinations.asked.append("stripe")
        if request.headers.get("authorization") != f"Bearer {STRIPE_KEY}":
            error = {"type": "invalid_request_error", "message": "Invalid API Key provided"}
            return JSONResponse({"error": error}, status_code=401)
        data = [{"object": "webhook_endpoint", **e} for e in destinations.stripe]
        page = {"object": "list", "url": "/v1/webhook_endpoints", "has_more": False}
        return JSONResponse({**page, "data": data})

    async def notification_settings(request: Request) -> Response:
        destinations.asked.append("paddle")
        if request.headers.get("authorization") != f"Bearer {PADDLE_KEY}":
            return JSONResponse({"error": {"code": "authentication_failed"}}, status_code=403)
        return JSONResponse({"data": destinations.paddle, "meta": {"request_id": "r1"}})

    return Starlette(
        routes=[
            Route("/v1/webhook_endpoints", webhook_endpoints),
            Route("/notification-settings", notification_settings),
        ]
    )


def stripe_endpoint(url: str, events: list[str], status: str = "enabled") -> dict[str, Any]:
    return {"id": f"we_{len(url)}", "url": url, "status": status, "enabled_events": events}


def paddle_setting(url: str, events: list[str], active: bool = True) -> dict[str, Any]:
    return {
        "id": f"ntfset_{len(url)}",
        "type": "url",
        "destination": url,
        "active": active,
        "subscribed_events": [{"name": e, "description": ""} for e in events],
    }


@pytest.fixture
def psp(tmp_path: Path, sandbox: Sandbox) -> Any:
    destinations = Destinations()
    with serve_in_thread(psp_api(destinations)) as url:
        text = config_text(str(tmp_path / "bridge.db"), sandbox.url)
        text = text.replace("    type: stripe\n", f"    type: stripe\n    api_base: {url}\n", 1)
        text = text.replace("    type: paddle\n", f"    type: paddle\n    api_base: {url}\n", 1)
        config = tmp_path / "config.yaml"
        config.write_text(text)
        yield config, destinations


KEYS = {"STRIPE_API_KEY": STRIPE_KEY, "PADDLE_API_KEY": PADDLE_KEY}
PADDLE_TYPES = ["transaction.completed", "adjustment.created", "adjustment.updated"]


def test_a_rule_event_type_the_endpoint_does_not_send_fails_naming_the_rule(psp: Any) -> None:
    config, destinations = psp
    destinations.stripe = [
        stripe_endpoint("https://bridge.example.com/webhooks/stripe", ["invoice.paid"]),
        # another endpoint of the account, for another app, sends the missing type
        stripe_endpoint("https://other.example.com/hooks", ["invoice.payment_succeeded"]),
    ]
    destinations.paddle = [
        paddle_setting("https://bridge.example.com/webhooks/paddle", PADDLE_TYPES)
    ]
    result = run_cli(config, "check", "--online", ok=False, env=KEYS | {"COLUMNS": "100"})
    assert result.returncode == 1
    [error] = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert error == (
        "Error: stripe: stripe does not send invoice.payment_succeeded (rule "
        "subscription-payment); add them to the subscription or those rules never fire"
    )
    assert "stripe: webhook endpoints send 1 of the 2 rule event types: we_" in result.stdout
    assert "paddle: notification settings send all 3 rule event types: ntfset_" in result.stdout
    # every line fits, but the one naming the config file: a path is never cut
    lines = [line for line in result.stdout.splitlines() if not line.startswith(str(config))]
    too_wide = [line for line in lines if len(line) > 100]
    assert too_wide == []
    assert sorted(destinations.asked) == ["paddle", "stripe"]


def test_every_type_subscribed_passes_and_a_wildcard_counts(psp: Any) -> None:
    config, destinations = psp
    destinations.stripe = [stripe_endpoint("https://b.example.com/webhooks/stripe", ["*"])]
    destinations.paddle = [
        paddle_setting("https://b.example.com/webhooks/paddle", PADDLE_TYPES[:1]),
        paddle_setting("https://b.example.com/webhooks/paddle/", PADDLE_TYPES[1:]),
        paddle_setting("https://b.example.com/webhooks/paddle", [], active=False),
    ]
    result = run_cli(config, "check", "--online", env=KEYS)
    assert "stripe: webhook endpoints send all 2 rule event types: we_" in result.stdout
    assert "paddle: notification settings send all 3 rule event types: ntfset_" in result.stdout


def test_only_active_destinations_count(psp: Any) -> None:
    config, destinations = psp
    destinations.stripe = [
        stripe_endpoint("https://b.example.com/webhooks/stripe", ["*"], status="disabled")
    ]
    destinations.paddle = [paddle_setting("https://b.example.com/webhooks/paddle", PADDLE_TYPES)]
    result = run_cli(config, "check", "--online", ok=False, env=KEYS)
    assert "stripe: stripe has no active webhook destination" in result.stderr


def test_without_a_psp_key_the_subscriptions_are_not_asked(psp: Any) -> None:
    config, destinations = psp
    result = run_cli(config, "check", "--online", env=NO_KEYS)
    assert "stripe: subscriptions not checked: no API key (set STRIPE_API_KEY" in result.stdout
    assert "paddle: subscriptions not checked: no API key (set PADDLE_API_KEY" in result.stdout
    assert destinations.asked == []


def test_a_refused_psp_key_is_one_line(psp: Any) -> None:
    config, _ = psp
    result = run_cli(config, "check", "--online", ok=False, env=KEYS | {"STRIPE_API_KEY": "sk_bad"})
    [error] = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert error.startswith("Error: stripe: Stripe refused the API key")
    assert "Traceback" not in result.stderr
