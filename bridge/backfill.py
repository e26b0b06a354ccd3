"""Backfill: list a PSP's recent events through its API and store the ones the inbox lacks.

Webhooks can be lost before they reach the bridge (an outage longer than the PSP's
retries, a misconfigured endpoint). Both PSPs keep their events for a while and list
them over their authenticated API:

    Stripe  GET /v1/events?created[gte]=..&types[]=..   30 days, newest first,
            through the stripe library (`starting_after` pagination)
    Paddle  GET /events?order_by=id[DESC]&event_type=a,b  90 days, no time filter:
            read newest first and stop at the first event older than --since

An event the inbox lacks is stored exactly as a received webhook is (`Store.accept`,
status pending): it came over the PSP's authenticated API instead of a signed
webhook, and from there the running bridge processes it on the normal path. An
event already stored is left alone, so a second run changes nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from bridge.config import ConnectorConfig
from bridge.errors import BridgeError, MalformedEventError
from bridge.store import Store
from connectors import Connector

DAY = 86400.0
STRIPE_API_BASE = "https://api.stripe.com"
PADDLE_API_BASE = "https://api.paddle.com"
STRIPE_MAX_TYPES = 20  # Stripe's limit on types[] per list request
PADDLE_PER_PAGE = 200
API_KEY_VARIABLES = {"stripe": "STRIPE_API_KEY", "paddle": "PADDLE_API_KEY"}


class BackfillError(BridgeError):
    """The PSP's API could not be listed (key refused, unreachable, unexpected answer)."""


@dataclass(frozen=True)
class ListedEvent:
    """One event as the PSP's API lists it; `body` is what the inbox stores."""

    event_id: str
    event_type: str
    occurred_at: float
    body: bytes


class EventSource(Protocol):
    psp: str
    retention: float  # how far back the PSP keeps events, seconds

    def events(self, since: float, types: Sequence[str]) -> Iterator[ListedEvent]: ...

    def close(self) -> None: ...


class StripeEvents:
    """Stripe's `GET /v1/events` through the stripe library."""

    psp = "stripe"
    retention = 30 * DAY

    def __init__(self, api_key: str, api_base: str | None = None) -> None:
        import stripe

        self._stripe = stripe
        self._http = stripe.new_default_http_client(timeout=30)
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base or STRIPE_API_BASE},
            max_network_retries=2,
            http_client=self._http,
        )

    def events(self, since: float, types: Sequence[str]) -> Iterator[ListedEvent]:
        for start in range(0, len(types), STRIPE_MAX_TYPES):
            params: Any = {
                "created": {"gte": int(since)},
                "types": list(types[start : start + STRIPE_MAX_TYPES]),
                "limit": 100,
            }
            try:
                for event in self._client.v1.events.list(params).auto_paging_iter():
                    raw = event.to_dict()
                    yield ListedEvent(
                        str(raw["id"]),
                        str(raw["type"]),
                        float(raw.get("created") or 0),
                        json.dumps(raw, separators=(",", ":")).encode(),
                    )
            except self._stripe.AuthenticationError as exc:
                raise BackfillError(
                    "Stripe refused the API key (check STRIPE_API_KEY or the connector's "
                    f"api_key): {exc.user_message or exc}"
                ) from exc
            except self._stripe.StripeError as exc:
                raise BackfillError(f"listing Stripe events failed: {exc}") from exc

    def close(self) -> None:
        self._http.close()  # type: ignore[no-untyped-call]


class PaddleEvents:
    """Paddle Billing's `GET /events`, newest first, until events get older than `since`."""

    psp = "paddle"
    retention = 90 * DAY

    def __init__(self, api_key: str, api_base: str | None = None, timeout: float = 30.0) -> None:
        self._base = (api_base or PADDLE_API_BASE).rstrip("/")
        self._client = httpx.Client(
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "credyt-bridge"},
            timeout=timeout,
        )

    def events(self, since: float, types: Sequence[str]) -> Iterator[ListedEvent]:
        url = f"{self._base}/events"
        params: dict[str, Any] | None = {
            "order_by": "id[DESC]",
            "per_page": PADDLE_PER_PAGE,
            "event_type": ",".join(types),
        }
        while url:
            page = self._get(url, params)
            for item in page.get("data") or []:
                listed = _paddle_event(item)
                if listed.occurred_at < since:
                    return
                yield listed
            pagination = (page.get("meta") or {}).get("pagination") or {}
            if not pagination.get("has_more") or not pagination.get("next"):
                return
            url, params = self._same_origin(str(pagination["next"])), None

    def _get(self, url: str, params: dict[str, Any] | None) -> dict[str, Any]:
        try:
            response = self._client.get(url, params=params)
        except httpx.HTTPError as exc:
            raise BackfillError(f"Paddle's API could not be reached: {exc}") from exc
        if response.status_code in (401, 403):
            raise BackfillError(
                f"Paddle refused the API key ({response.status_code}; check PADDLE_API_KEY or "
                "the connector's api_key, which needs the event read permission)"
            )
        if response.status_code != 200:
            raise BackfillError(
                f"Paddle answered {response.status_code} listing events: {response.text[:300]}"
            )
        try:
            page = response.json()
        except ValueError as exc:
            raise BackfillError("Paddle answered the event list with non-JSON") from exc
        if not isinstance(page, dict):
            raise BackfillError("Paddle's event list is not a JSON object")
        return page

    def _same_origin(self, url: str) -> str:
        """Follow `meta.pagination.next` only to the API we were pointed at (the key goes too)."""
        base, nxt = urlsplit(self._base), urlsplit(url)
        if (nxt.scheme, nxt.netloc) != (base.scheme, base.netloc):
            raise BackfillError(f"Paddle's next page is on another host: {nxt.netloc}")
        return url

    def close(self) -> None:
        self._client.close()


def _paddle_event(item: Any) -> ListedEvent:
    if not isinstance(item, dict) or not item.get("event_id") or not item.get("event_type"):
        raise BackfillError("Paddle listed an event without event_id / event_type")
    occurred = item.get("occurred_at")
    try:
        moment = datetime.fromisoformat(str(occurred).replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise BackfillError(f"Paddle event {item['event_id']} has no valid occurred_at") from exc
    body = json.dumps(item, separators=(",", ":")).encode()
    return ListedEvent(str(item["event_id"]), str(item["event_type"]), moment, body)


def open_source(
    connector: ConnectorConfig, api_key: str | None, api_base: str | None = None
) -> EventSource:
    key = api_key or connector.api_key
    if not key:
        raise BackfillError(
            f"no API key for connector {connector.name}: set connectors.{connector.name}.api_key "
            f"in the config or {API_KEY_VARIABLES.get(connector.type, 'the API key variable')}"
        )
    base = api_base or connector.api_base
    if connector.type == "stripe":
        return StripeEvents(key, base)
    if connector.type == "paddle":
        return PaddleEvents(key, base)
    raise BackfillError(f"connector type {connector.type} has no event list to backfill from")


def rule_event_types(connector: ConnectorConfig) -> list[str]:
    """The event types the connector's rules act on, in the config's order."""
    seen: dict[str, None] = {}
    for rule in connector.rules:
        for event_type in rule.on:
            seen.setdefault(event_type, None)
    return list(seen)


@dataclass
class BackfillSummary:
    connector: str
    since: float
    types: list[str]
    listed: int = 0
    stored: list[str] = field(default_factory=list)  # event ids the inbox lacked
    already: int = 0
    skipped: list[str] = field(default_factory=list)  # unreadable events, with why

    def as_dict(self) -> dict[str, Any]:
        return {
            "connector": self.connector,
            "since": self.since,
            "types": self.types,
            "listed": self.listed,
            "stored": len(self.stored),
            "stored_event_ids": self.stored,
            "already_stored": self.already,
            "skipped": self.skipped,
        }


async def backfill(
    store: Store,
    connector: ConnectorConfig,
    reader: Connector,
    events: Iterator[ListedEvent],
    summary: BackfillSummary,
    *,
    now: Callable[[], float] = time.time,
) -> BackfillSummary:
    """Store every listed event the inbox lacks, as if its webhook had just arrived."""
    for listed in events:
        summary.listed += 1
        try:
            envelope = reader.envelope(listed.body)
        except MalformedEventError as exc:
            summary.skipped.append(f"{listed.event_id}: {exc}")
            continue
        if await store.accept(connector.name, envelope, listed.body, now()):
            summary.stored.append(envelope.event_id)
        else:
            summary.already += 1
    return summary
