"""Paddle's notification settings, for `check --online`: `GET /notification-settings`.

Each setting (a URL or an email) lists the event types it sends (`subscribed_events`);
one that lacks a type the rules use never delivers it, and the rule never fires.
"""

from __future__ import annotations

from typing import Any

import httpx

from bridge.errors import SubscriptionCheckError
from connectors.paddle.events_api import PADDLE_API_BASE
from connectors.subscriptions import Subscription


def paddle_subscriptions(
    api_key: str, api_base: str | None = None, version: str = "1"
) -> list[Subscription]:
    """Every URL notification setting of the account (emails cannot reach the bridge)."""
    url = f"{(api_base or PADDLE_API_BASE).rstrip('/')}/notification-settings"
    headers = {
        "Authorization": f"Bearer {api_key}",
        "User-Agent": "credyt-bridge",
        "Paddle-Version": version,
    }
    try:
        response = httpx.get(url, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise SubscriptionCheckError(f"Paddle could not be reached at {url}: {exc}") from exc
    if response.status_code in (401, 403):
        raise SubscriptionCheckError(
            f"Paddle refused the API key ({response.status_code}; check PADDLE_API_KEY or the "
            "connector's api_key, which needs the notification_setting.read permission)"
        )
    if response.status_code != 200:
        raise SubscriptionCheckError(
            f"Paddle answered {response.status_code} to GET /notification-settings"
        )
    try:
        settings: Any = response.json()["data"]
        return [
            Subscription(
                id=str(setting["id"]),
                destination=str(setting.get("destination") or ""),
                active=bool(setting.get("active")),
                event_types=frozenset(
                    str(event["name"]) for event in setting.get("subscribed_events") or ()
                ),
            )
            for setting in settings
            if setting.get("type", "url") == "url"
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise SubscriptionCheckError(
            f"Paddle's notification settings are not in the documented shape: {exc!r}"
        ) from exc
