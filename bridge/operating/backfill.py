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
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from bridge.config.schema import ConnectorConfig
from bridge.errors import BackfillError, MalformedEventError
from bridge.storage.store import Store
from connectors import Connector

DAY = 86400.0
STRIPE_API_BASE = "https://api.stripe.com"
PADDLE_API_BASE = "https://api.paddle.com"
STRIPE_MAX_TYPES = 20  # Stripe's limit on types[] per list request
PADDLE_PER_PAGE = 200
# What Paddle's API reference says a key needs for `GET /events`.
PADDLE_EVENTS_PERMISSION = "notification.read"
API_KEY_VARIABLES = {"stripe": "STRIPE_API_KEY", "paddle": "PADDLE_API_KEY"}


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

    cursor: str | None  # after the last event handed out; `--resume` starts after it

    def events(
        self, since: float, types: Sequence[str], resume: str | None = None
    ) -> Iterator[ListedEvent]: ...

    def close(self) -> None: ...


class StripeEvents:
    """Stripe's `GET /v1/events` through the stripe library, one page at a time.

    Each event's body is its text in the list response, byte for byte: the library's
    objects are not re-serialized (from stripe 15 on they hold `Decimal` for
    `decimal_string` fields, which `json.dumps` refuses, and a re-encoding would not be
    what Stripe sent anyway).
    """

    psp = "stripe"
    retention = 30 * DAY

    def __init__(self, api_key: str, api_base: str | None = None) -> None:
        import stripe

        self._stripe = stripe
        self._http = stripe.new_default_http_client(timeout=30)
        client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base or STRIPE_API_BASE},
            max_network_retries=2,
            http_client=self._http,
        )
        # stripe 12+ keeps the services under `v1` (and warns on the old attribute).
        self._events = getattr(client, "v1", client).events
        self.cursor: str | None = None

    def events(
        self, since: float, types: Sequence[str], resume: str | None = None
    ) -> Iterator[ListedEvent]:
        first, after = _stripe_cursor(resume)
        for start in range(first, len(types), STRIPE_MAX_TYPES):
            params: Any = {
                "created": {"gte": int(since)},
                "types": list(types[start : start + STRIPE_MAX_TYPES]),
                "limit": 100,
            }
            if after:
                params["starting_after"] = after
            after = None
            while True:
                page, items = _raw_list(self._page(params), "Stripe")
                for item, raw in items:
                    yield ListedEvent(
                        str(item["id"]),
                        str(item["type"]),
                        float(item.get("created") or 0),
                        raw.encode(),
                    )
                    # the consumer has stored it: a rerun may start after it
                    self.cursor = f"{start}:{item['id']}" if start else str(item["id"])
                if not items or not page.get("has_more"):
                    break
                params["starting_after"] = str(items[-1][0]["id"])

    def _page(self, params: Any) -> str:
        try:
            listed = self._events.list(params)
        except self._stripe.AuthenticationError as exc:
            raise BackfillError(
                "Stripe refused the API key (check STRIPE_API_KEY or the connector's "
                f"api_key): {exc.user_message or exc}"
            ) from exc
        except self._stripe.StripeError as exc:
            raise BackfillError(f"listing Stripe events failed: {exc}") from exc
        response = getattr(listed, "last_response", None)
        body = getattr(response, "body", None)
        if not isinstance(body, str):
            raise BackfillError("the stripe library kept no raw body of the event list")
        return body

    def close(self) -> None:
        self._http.close()  # type: ignore[no-untyped-call]


def _stripe_cursor(resume: str | None) -> tuple[int, str | None]:
    """`evt_..` or `<types offset>:evt_..` (when the rules use more than 20 types)."""
    if not resume:
        return 0, None
    offset, sep, event_id = resume.rpartition(":")
    if not sep:
        return 0, resume
    if not offset.isdigit() or not event_id:
        raise BackfillError(f"--resume {resume!r} is not a cursor this backfill printed")
    return int(offset), event_id


_WS = re.compile(r"[ \t\n\r]*")


def _skip_ws(text: str, i: int) -> int:
    found = _WS.match(text, i)
    return found.end() if found else i


def _raw_list(page: str, psp: str) -> tuple[dict[str, Any], list[tuple[dict[str, Any], str]]]:
    """Each element of a list response's top-level `data` array, parsed and as its text.

    The text is the exact slice of the response that the element was parsed from, so
    what is stored is what the PSP sent.
    """
    decoder = json.JSONDecoder()
    try:
        parsed = json.loads(page)
        if not isinstance(parsed, dict) or not isinstance(parsed.get("data"), list):
            raise ValueError("no data array")
        i = _skip_ws(page, 0)
        if page[i] != "{":
            raise ValueError("not an object")
        i += 1
        while True:
            i = _skip_ws(page, i)
            name, i = decoder.raw_decode(page, i)
            i = _skip_ws(page, i)
            if page[i] != ":":
                raise ValueError("expected ':'")
            i = _skip_ws(page, i + 1)
            if name == "data" and page[i] == "[":
                break
            _, i = decoder.raw_decode(page, i)
            i = _skip_ws(page, i)
            if page[i] != ",":
                raise ValueError("no data array")
            i += 1
        spans: list[tuple[Any, str]] = []
        i += 1
        while True:
            i = _skip_ws(page, i)
            if page[i] == "]":
                break
            start = i
            element, i = decoder.raw_decode(page, i)
            spans.append((element, page[start:i]))
            i = _skip_ws(page, i)
            if page[i] == ",":
                i += 1
    except (ValueError, IndexError) as exc:
        raise BackfillError(f"{psp}'s event list is not the JSON list it should be") from exc
    items = parsed["data"]
    if [element for element, _ in spans] != items:  # a duplicated "data" key: trust neither
        raise BackfillError(f"{psp}'s event list is not the JSON list it should be")
    out: list[tuple[dict[str, Any], str]] = []
    for item, (_, raw) in zip(items, spans, strict=True):
        if not isinstance(item, dict) or not item.get("id" if psp == "Stripe" else "event_id"):
            raise BackfillError(f"{psp} listed an event without an id")
        if psp == "Stripe" and not item.get("type"):
            raise BackfillError("Stripe listed an event without a type")
        out.append((item, raw))
    return parsed, out


PADDLE_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})  # as Paddle's SDK retries


class PaddleEvents:
    """Paddle Billing's `GET /events`, newest first, until events get older than `since`.

    A 429 or 5xx (or a dropped connection) is tried again, `retries` times, after the
    answer's `Retry-After` seconds or else a doubling backoff, both capped at
    `max_wait`. When a page still fails, `cursor` says where a rerun can resume.
    """

    psp = "paddle"
    retention = 90 * DAY

    def __init__(
        self,
        api_key: str,
        api_base: str | None = None,
        timeout: float = 30.0,
        *,
        version: str = "1",
        retries: int = 3,
        backoff: float = 1.0,
        max_wait: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._base = (api_base or PADDLE_API_BASE).rstrip("/")
        self._client = httpx.Client(
            headers={
                "Authorization": f"Bearer {api_key}",
                "User-Agent": "credyt-bridge",
                "Paddle-Version": version,
            },
            timeout=timeout,
        )
        self._retries, self._backoff, self._max_wait = retries, backoff, max_wait
        self._sleep = sleep
        self.cursor: str | None = None

    def events(
        self, since: float, types: Sequence[str], resume: str | None = None
    ) -> Iterator[ListedEvent]:
        url = f"{self._base}/events"
        first: dict[str, Any] = {
            "order_by": "id[DESC]",
            "per_page": PADDLE_PER_PAGE,
            "event_type": ",".join(types),
        }
        if resume:
            first["after"] = resume
        params: dict[str, Any] | None = first
        while url:
            page, items = _raw_list(self._get(url, params), "Paddle")
            for item, raw in items:
                listed = _paddle_event(item, raw)
                if listed.occurred_at < since:
                    return
                yield listed
                self.cursor = listed.event_id  # stored: a rerun may start after it
            pagination = (page.get("meta") or {}).get("pagination") or {}
            if not pagination.get("has_more") or not pagination.get("next"):
                return
            url, params = self._same_origin(str(pagination["next"])), None

    def _get(self, url: str, params: dict[str, Any] | None) -> str:
        attempt = 0
        while True:
            try:
                response = self._client.get(url, params=params)
            except httpx.HTTPError as exc:
                if attempt < self._retries:
                    self._sleep(self._wait(attempt, None))
                    attempt += 1
                    continue
                raise BackfillError(f"Paddle's API could not be reached: {exc}") from exc
            if response.status_code in PADDLE_RETRY_STATUSES and attempt < self._retries:
                self._sleep(self._wait(attempt, response.headers.get("retry-after")))
                attempt += 1
                continue
            break
        if response.status_code in (401, 403):
            raise BackfillError(
                f"Paddle refused the API key ({response.status_code}; check PADDLE_API_KEY or "
                f"the connector's api_key, which needs the {PADDLE_EVENTS_PERMISSION} "
                "permission)"
            )
        if response.status_code != 200:
            raise BackfillError(
                f"Paddle answered {response.status_code} listing events"
                + (f" after {attempt + 1} tries" if attempt else "")
                + f": {response.text[:300]}"
            )
        return response.text

    def _wait(self, attempt: int, retry_after: str | None) -> float:
        """Seconds before try `attempt + 2`: Paddle's Retry-After, else 1, 2, 4.. x backoff."""
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), self._max_wait)
            except ValueError:
                pass  # an HTTP date, or junk: fall back to the backoff
        return float(min(self._backoff * 2**attempt, self._max_wait))

    def _same_origin(self, url: str) -> str:
        """Follow `meta.pagination.next` only to the API we were pointed at (the key goes too)."""
        base, nxt = urlsplit(self._base), urlsplit(url)
        if (nxt.scheme, nxt.netloc) != (base.scheme, base.netloc):
            raise BackfillError(f"Paddle's next page is on another host: {nxt.netloc}")
        return url

    def close(self) -> None:
        self._client.close()


def _paddle_event(item: dict[str, Any], raw: str) -> ListedEvent:
    if not item.get("event_id") or not item.get("event_type"):
        raise BackfillError("Paddle listed an event without event_id / event_type")
    occurred = item.get("occurred_at")
    try:
        moment = datetime.fromisoformat(str(occurred).replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise BackfillError(f"Paddle event {item['event_id']} has no valid occurred_at") from exc
    return ListedEvent(str(item["event_id"]), str(item["event_type"]), moment, raw.encode())


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
        return PaddleEvents(key, base, version=connector.api_version)
    raise BackfillError(f"connector type {connector.type} has no event list to backfill from")


# Events no rule needs to name but a reversal rule depends on: on Stripe API versions
# from 2025-03-31 an invoice names no PaymentIntent, and only invoice_payment.paid links
# it to the one its refunds and disputes name.
LINKING_EVENT_TYPES = {"stripe": ("invoice_payment.paid",)}


def rule_event_types(connector: ConnectorConfig) -> list[str]:
    """The event types the connector's rules act on, in the config's order, and the
    linking events their reversals need."""
    seen: dict[str, None] = {}
    for rule in connector.rules:
        for event_type in rule.on:
            seen.setdefault(event_type, None)
    if any(rule.reverse is not None for rule in connector.rules):
        for event_type in LINKING_EVENT_TYPES.get(connector.type, ()):
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
