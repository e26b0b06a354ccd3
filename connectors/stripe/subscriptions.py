"""Stripe's webhook endpoints, for `check --online`: `GET /v1/webhook_endpoints`.

Each endpoint lists the event types it sends (`enabled_events`, `*` for all); an
endpoint that lacks a type the rules use never delivers it, and the rule never fires.
"""

from __future__ import annotations

from typing import Any

from bridge.errors import SubscriptionCheckError
from connectors.stripe.events_api import STRIPE_API_BASE
from connectors.subscriptions import Subscription


def stripe_subscriptions(api_key: str, api_base: str | None = None) -> list[Subscription]:
    """Every webhook endpoint of the account, through the stripe library."""
    import stripe

    http = stripe.new_default_http_client(timeout=30)
    client = stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base or STRIPE_API_BASE},
        max_network_retries=2,
        http_client=http,
    )
    endpoints = getattr(client, "v1", client).webhook_endpoints
    found: list[Subscription] = []
    params: dict[str, Any] = {"limit": 100}
    try:
        while True:
            page = endpoints.list(params)  # type: ignore[arg-type]
            for endpoint in page.data:
                found.append(
                    Subscription(
                        id=str(endpoint.id),
                        destination=str(endpoint.url),
                        active=endpoint.status == "enabled",
                        event_types=frozenset(str(t) for t in endpoint.enabled_events or ()),
                    )
                )
            if not page.has_more or not page.data:
                return found
            params["starting_after"] = page.data[-1].id
    except stripe.AuthenticationError as exc:
        raise SubscriptionCheckError(
            "Stripe refused the API key (check STRIPE_API_KEY or the connector's api_key): "
            f"{exc.user_message or exc}"
        ) from exc
    except stripe.StripeError as exc:
        raise SubscriptionCheckError(
            f"Stripe could not list the webhook endpoints: {exc.user_message or exc}"
        ) from exc
    finally:
        http.close()  # type: ignore[no-untyped-call]
