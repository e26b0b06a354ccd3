"""Paddle's event list for backfill: `GET /events?order_by=id[DESC]&event_type=a,b`.

Paddle keeps events 90 days and has no time filter: they are read newest first and the
listing stops at the first event older than `since`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from bridge.errors import BackfillError
from connectors.listing import DAY, ListedEvent, raw_list

PADDLE_API_BASE = "https://api.paddle.com"
PADDLE_PER_PAGE = 200
# What Paddle's API reference says a key needs for `GET /events`.
PADDLE_EVENTS_PERMISSION = "notification.read"
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
            page, items = raw_list(self._get(url, params), "Paddle", "event_id", None)
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

    def event(self, event_id: str) -> ListedEvent:
        raise BackfillError(
            f"Paddle's API lists events but fetches none by id ({event_id}); use --since, "
            "or replay the notification from Paddle's dashboard"
        )

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
