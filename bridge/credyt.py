"""The Credyt API client: async httpx, one pooled client, no retries of its own.

Retries belong to the deliverer (the outbox is the retry queue). This module only
sorts Credyt's answers: delivered, retry later (`CredytUnavailableError`), or refused
(`CredytError`, kept for the operator).
"""

from __future__ import annotations

import email.utils
import itertools
import re
import time
import urllib.parse
from dataclasses import dataclass

import httpx

from bridge.errors import CredytError, CredytUnavailableError

# Answers that say "not now" rather than "no": retried with backoff. 401/403 are here
# too: a wrong API key is fixed in the config, not by giving up on the payments.
RETRYABLE_STATUS = frozenset({401, 403, 408, 425, 429}) | frozenset(range(500, 600))
ERROR_KEEP = 2000
_SECONDS = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,9})?$")


@dataclass(frozen=True)
class Delivered:
    status_code: int
    body: str
    already_existed: bool


@dataclass(frozen=True)
class Asset:
    """What `GET /assets/{code}` says about an asset, as far as the bridge uses it."""

    code: str
    precision: int | None  # decimal places Credyt keeps; None when Credyt does not say


# Connections per pooled httpx client. httpcore's pool does work proportional to the
# requests it holds for every request, so one 32-connection pool cost ~1.8 ms of CPU per
# request here; 4-connection pools taken in turn cost ~0.5 ms.
CONNECTIONS_PER_POOL = 4


class CredytClient:
    def __init__(
        self, base_url: str, api_key: str, *, timeout: float = 10.0, max_connections: int = 32
    ) -> None:
        per_pool = min(CONNECTIONS_PER_POOL, max_connections)
        pools = -(-max_connections // per_pool)
        self._clients = [
            httpx.AsyncClient(
                base_url=base_url,
                headers={"X-CREDYT-API-KEY": api_key, "User-Agent": "credyt-bridge"},
                timeout=httpx.Timeout(timeout),
                limits=httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool),
            )
            for _ in range(pools)
        ]
        self._turn = itertools.cycle(self._clients)

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()

    async def create_adjustment(self, customer_id: str, body: str) -> Delivered:
        response = await self._send(
            "POST",
            f"/customers/{customer_id}/wallet/adjustments",
            content=body.encode(),
            headers={"Content-Type": "application/json"},
        )
        if response.status_code == 409:
            return Delivered(409, response.text[:ERROR_KEEP], already_existed=True)
        _raise_for_status(response)
        return Delivered(response.status_code, response.text[:ERROR_KEEP], already_existed=False)

    async def find_customer(self, external_id: str) -> str | None:
        """The Credyt customer id whose external_id is `external_id`, or None."""
        response = await self._send("GET", "/customers", params={"external_id": external_id})
        _raise_for_status(response)
        try:
            items = response.json().get("items") or []
        except ValueError as exc:
            raise CredytUnavailableError(
                "Credyt answered the customer lookup with non-JSON"
            ) from exc
        for item in items:
            if isinstance(item, dict) and item.get("external_id") == external_id and item.get("id"):
                return str(item["id"])
        return None

    async def _send(self, method: str, url: str, **kwargs: object) -> httpx.Response:
        try:
            client = next(self._turn)
            return await client.request(method, url, **kwargs)  # type: ignore[arg-type]
        except httpx.TimeoutException as exc:
            raise CredytUnavailableError(
                f"Credyt did not answer in time ({type(exc).__name__})"
            ) from exc
        except httpx.HTTPError as exc:
            raise CredytUnavailableError(
                f"Credyt could not be reached: {type(exc).__name__}: {exc}"
            ) from exc

    async def get_asset(self, code: str) -> Asset:
        """`GET /assets/{code}`. 404 (no such asset) raises `CredytError`; network
        failures, 5xx and 429 raise `CredytUnavailableError`, to be tried again."""
        path = f"/assets/{urllib.parse.quote(code, safe='')}"
        response = await self._send("GET", path)
        _raise_for_status(response)
        try:
            data = response.json()
        except ValueError as exc:
            raise CredytUnavailableError(f"Credyt answered GET {path} with non-JSON") from exc
        if not isinstance(data, dict):
            raise CredytUnavailableError(f"Credyt answered GET {path} with no asset object")
        precision = data.get("precision")
        valid = isinstance(precision, int) and not isinstance(precision, bool)
        if precision is not None and not (valid and 0 <= precision <= 18):
            raise CredytError(f"Credyt answered asset {code} with precision {precision!r}")
        return Asset(code=str(data.get("code") or code), precision=precision)


def _raise_for_status(response: httpx.Response) -> None:
    code = response.status_code
    if code < 300:
        return
    text = response.text[:ERROR_KEEP]
    message = f"Credyt answered {code}" + (f": {text}" if text else "")
    if code in RETRYABLE_STATUS:
        raise CredytUnavailableError(
            message, status_code=code, body=text, retry_after=parse_retry_after(response)
        )
    raise CredytError(message, status_code=code, body=text)


def parse_retry_after(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if _SECONDS.match(value):  # RFC 9110 says whole seconds; "0.5" is read too
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
