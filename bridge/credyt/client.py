"""The Credyt API client: async httpx, one pooled client, no retries of its own.

Retries belong to the deliverer (the outbox is the retry queue). This module only
sorts Credyt's answers: delivered, retry later (`CredytUnavailableError`), or refused
(`CredytError`, kept for the operator).

It speaks Credyt's published contract (the official SDK, `credyt-api`, is the
reference; tests/integration/test_credyt_contract.py holds the sandbox to it): every
path argument is URL-encoded as the SDK does, redirects are never followed, and
`GET /customers?external_id=X` answers 303 (found: the id is in `Location`) or 404.
"""

from __future__ import annotations

import email.utils
import functools
import itertools
import json
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from urllib.parse import quote, unquote, urlsplit

import certifi
import httpx

from bridge.credyt.streams import poll_idle_connections
from bridge.delivery.limiter import CredytRateLimiter
from bridge.errors import CredytError, CredytUnavailableError

# Answers that say "not now" rather than "no": retried with backoff. 401/403 are here
# too: a wrong API key is fixed in the config, not by giving up on the payments.
RETRYABLE_STATUS = frozenset({401, 403, 408, 425, 429}) | frozenset(range(500, 600))
ERROR_KEEP = 2000
ACCOUNT_HEADER = "X-CREDYT-ACCOUNT"  # Credyt for Platforms: the connected account acted for
_SECONDS = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,9})?$")
# A Credyt customer id as the bridge accepts it anywhere (Credyt's own: cust_ + 26
# lowercase alphanumerics): letters, digits, `_` and `-`, at most 64 characters.
CUSTOMER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_CUSTOMER_LOCATION = re.compile(r"^/customers/([^/?#]+)/?$")


def path_arg(value: str) -> str:
    """One URL path segment, percent-encoded as the SDK encodes path arguments."""
    return quote(value, safe="")


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


@dataclass(frozen=True)
class RecordedTransaction:
    """What Credyt holds under a transaction id (`GET .../wallet/transactions/{id}`)."""

    transaction_id: str
    asset: str
    amount: Decimal
    account_id: str
    body: str  # Credyt's answer, trimmed, for the operator


@dataclass(frozen=True)
class AccountContext:
    """The Credyt account behind the API key (`GET /accounts/self`)."""

    account_id: str
    environment: str  # live | test
    name: str | None


# Connections per pooled httpx client. httpcore's pool does work proportional to the
# requests it holds for every request, so one 32-connection pool cost ~1.8 ms of CPU per
# request here; 4-connection pools taken in turn cost ~0.5 ms.
CONNECTIONS_PER_POOL = 4


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The context httpx would build by default (certifi's CA bundle), built once."""
    return ssl.create_default_context(cafile=certifi.where())


class CredytClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        max_connections: int = 32,
        limiter: CredytRateLimiter | None = None,
    ) -> None:
        # Credyt's rate limit (`credyt.max_rate`): every request waits for a slot, and a
        # 429 slows every caller down. None: requests go as they come.
        self.limiter = limiter
        per_pool = min(CONNECTIONS_PER_POOL, max_connections)
        pools = -(-max_connections // per_pool)
        # One TLS context for every pool: each would otherwise load the CA bundle again
        # (about 35 ms apiece, a quarter of a second at start for 8 pools).
        tls = _tls_context()
        self._clients = [
            httpx.AsyncClient(
                base_url=base_url,
                headers={"X-CREDYT-API-KEY": api_key, "User-Agent": "credyt-bridge"},
                timeout=httpx.Timeout(timeout),
                limits=httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool),
                verify=tls,
            )
            for _ in range(pools)
        ]
        for client in self._clients:
            poll_idle_connections(client)
        self._turn = itertools.cycle(self._clients)
        # What `post_adjustment` sends straight to a pool's transport: the headers and
        # timeout each client would add itself. No Accept-Encoding: answers come as is.
        self._base_url = base_url.rstrip("/")
        self._timeout = httpx.Timeout(timeout).as_dict()
        self._post_headers = (
            ("X-CREDYT-API-KEY", api_key),
            ("User-Agent", "credyt-bridge"),
            ("Accept", "*/*"),
            ("Content-Type", "application/json"),
        )

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()

    async def create_adjustment(
        self, customer_id: str, body: str, *, account: str | None = None
    ) -> Delivered:
        """POST the adjustment; `account`: the connected Credyt account to act for."""
        response = await self._post(
            f"/customers/{path_arg(customer_id)}/wallet/adjustments", body.encode(), account
        )
        if response.status_code == 409:
            return Delivered(409, response.text[:ERROR_KEEP], already_existed=True)
        _raise_for_status(response)
        return Delivered(response.status_code, response.text[:ERROR_KEEP], already_existed=False)

    async def find_customer(self, external_id: str, *, account: str | None = None) -> str | None:
        """The Credyt customer id whose external_id is `external_id`, or None.

        Credyt answers 303 See Other to `/customers/{id}` when a customer matches and 404
        when none does. Retryable answers raise `CredytUnavailableError`; anything else
        (400, 422, a 2xx page, another 3xx, a Location naming no valid customer id)
        raises `CredytError` carrying Credyt's answer."""
        response = await self._send(
            "GET", "/customers", params={"external_id": external_id}, headers=acting_for(account)
        )
        code = response.status_code
        if code == 404:
            return None
        if code == 303:
            location = response.headers.get("location", "")
            match = _CUSTOMER_LOCATION.match(urlsplit(location).path)
            customer_id = unquote(match.group(1)) if match else ""
            if not CUSTOMER_ID.match(customer_id):
                raise CredytError(
                    f"Credyt answered 303 with a Location that names no valid customer id: "
                    f"{location[:200]!r}",
                    status_code=code,
                )
            return customer_id
        _raise_for_status(response)
        raise CredytError(
            f"Credyt answered {code} where its contract says 303 or 404"
            + (f": {response.text[:200]}" if response.text else ""),
            status_code=code,
            body=response.text[:ERROR_KEEP],
        )

    async def customer_external_id(
        self, customer_id: str, *, account: str | None = None
    ) -> tuple[bool, str | None]:
        """`GET /customers/{id}`: (whether the customer exists, its `external_id`)."""
        response = await self._send(
            "GET", f"/customers/{path_arg(customer_id)}", headers=acting_for(account)
        )
        if response.status_code == 404:
            return False, None
        _raise_for_status(response)
        try:
            data = response.json()
            external_id = data.get("external_id")
        except (ValueError, AttributeError) as exc:
            raise CredytError(
                f"Credyt answered GET /customers/{{id}} with an unreadable body: {exc}",
                status_code=response.status_code,
                body=response.text[:ERROR_KEEP],
            ) from exc
        return True, external_id if isinstance(external_id, str) and external_id else None

    async def get_transaction(
        self, customer_id: str, transaction_id: str, *, account: str | None = None
    ) -> RecordedTransaction | None:
        """The adjustment Credyt holds under `transaction_id` for this customer, or None."""
        response = await self._send(
            "GET",
            f"/customers/{path_arg(customer_id)}/wallet/transactions/{path_arg(transaction_id)}",
            headers=acting_for(account),
        )
        if response.status_code == 404:
            return None
        _raise_for_status(response)
        try:
            data = json.loads(response.text, parse_float=Decimal)
            amount = Decimal(str(data["amount"]))
            asset, account = str(data["asset"]), str(data.get("account_id") or "")
        except (ValueError, KeyError, TypeError, InvalidOperation) as exc:
            raise CredytError(
                f"Credyt answered the transaction read-back with an unreadable body: "
                f"{type(exc).__name__}",
                status_code=response.status_code,
                body=response.text[:ERROR_KEEP],
            ) from exc
        return RecordedTransaction(
            transaction_id, asset, amount, account, response.text[:ERROR_KEEP]
        )

    async def account(self) -> AccountContext:
        """The account behind the API key; a rejected key raises `CredytError` (401)."""
        response = await self._send("GET", "/accounts/self")
        _raise_for_status(response)
        try:
            data = response.json()
            environment = data["environment"]
            if environment not in ("live", "test"):
                raise ValueError(f"environment {environment!r}")
            name = data.get("name")
            return AccountContext(
                str(data["account_id"]), environment, None if name is None else str(name)
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CredytError(
                f"Credyt answered /accounts/self with an unreadable body: {exc}",
                status_code=response.status_code,
                body=response.text[:ERROR_KEEP],
            ) from exc

    async def _send(self, method: str, url: str, **kwargs: object) -> httpx.Response:
        async def request() -> httpx.Response:
            return await next(self._turn).request(
                method,
                url,
                follow_redirects=False,
                **kwargs,  # type: ignore[arg-type]
            )

        return await self._limited(request)

    async def _post(self, path: str, content: bytes, account: str | None) -> httpx.Response:
        """POST straight to the next pool's transport: what `AsyncClient.request` would
        send with `follow_redirects=False`, no auth and no cookies, without its layers
        (URL merging, auth and redirect loops, cookies), about a third of the CPU of
        each delivery. The transport maps httpcore's errors to httpx's, as the client's.
        It goes through the rate limiter as every other request (`_limited`)."""

        async def post() -> httpx.Response:
            client = next(self._turn)
            request = httpx.Request(
                "POST",
                self._base_url + path,
                headers=[*self._post_headers, *acting_for(account).items()],
                content=content,
                extensions={"timeout": self._timeout},
            )
            response = await client._transport.handle_async_request(request)
            response.request = request
            try:
                await response.aread()
            finally:
                await response.aclose()
            return response

        return await self._limited(post)

    async def _limited(self, call: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
        """One request to Credyt: through the rate limiter, httpx's failures as
        `CredytUnavailableError`, a 429 told to the limiter."""
        sent_at = await self.limiter.acquire() if self.limiter is not None else 0.0
        try:
            response = await call()
        except httpx.TimeoutException as exc:
            raise CredytUnavailableError(
                f"Credyt did not answer in time ({type(exc).__name__})"
            ) from exc
        except httpx.HTTPError as exc:
            raise CredytUnavailableError(
                f"Credyt could not be reached: {type(exc).__name__}: {exc}"
            ) from exc
        if response.status_code == 429 and self.limiter is not None:
            self.limiter.record_rate_limited(sent_at, parse_retry_after(response))
        return response

    async def get_asset(self, code: str, *, account: str | None = None) -> Asset:
        """`GET /assets/{code}`. 404 (no such asset) raises `CredytError`; network
        failures, 5xx and 429 raise `CredytUnavailableError`, to be tried again."""
        path = f"/assets/{path_arg(code)}"
        response = await self._send("GET", path, headers=acting_for(account))
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


def acting_for(account: str | None) -> dict[str, str]:
    """The Credyt for Platforms header naming the connected account a call acts for."""
    return {ACCOUNT_HEADER: account} if account else {}


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
