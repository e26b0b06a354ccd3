"""The middleware in front of the API paths: counts requests, checks the key, fires faults."""

from __future__ import annotations

import asyncio
import hmac
import re

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge.credyt.sandbox.faults import seconds_text
from bridge.credyt.sandbox.state import SandboxState
from bridge.credyt.sandbox.wire import problem

API_KEY_HEADER = "X-CREDYT-API-KEY"
CONTROL_PREFIX = "/_sandbox/"
_ADJUSTMENTS_PATH = re.compile(r"^/customers/[^/]+/wallet/adjustments/?$")


class Gate:
    """ASGI middleware for API paths: counts requests, checks the key, fires faults."""

    def __init__(self, app: ASGIApp, state: SandboxState, api_key: str | None) -> None:
        self.app = app
        self.state = state
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        group = request_group(scope["method"], scope["path"])
        raw_path = scope.get("raw_path") or scope["path"].encode()
        line = scope["method"] + " " + raw_path.decode("latin-1")
        if scope.get("query_string"):
            line += "?" + scope["query_string"].decode("latin-1")
        delay = self.state.admit(group, line)
        if delay > 0:
            await asyncio.sleep(delay)
        if not self._authorized(scope):
            await Response(status_code=401)(scope, receive, send)
            return
        action = self.state.take_fault(group)
        if action.fail_status is not None:
            answer = problem(action.fail_status, "Injected failure", "sandbox fault: fail_next")
            await answer(scope, receive, send)
        elif action.rate_limited:
            await _rate_limited(action.retry_after)(scope, receive, send)
        elif action.drop:
            await self.app(scope, receive, _headers_only(send))
        else:
            await self.app(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        if self.api_key is None:
            return True
        wanted = API_KEY_HEADER.lower().encode()
        given = next((v for k, v in scope["headers"] if k.lower() == wanted), b"")
        return hmac.compare_digest(given, self.api_key.encode())


def request_group(method: str, path: str) -> str:
    """The fault group of an API request: adjustments, wallet, customers, events,
    accounts (the key check) or assets (precisions)."""
    if method == "POST" and _ADJUSTMENTS_PATH.match(path):
        return "adjustments"
    if path.startswith("/customers/") and "/wallet" in path:
        return "wallet"
    if path.startswith("/events"):
        return "events"
    if path.startswith("/accounts"):
        return "accounts"
    if path.startswith("/assets"):
        return "assets"
    return "customers"


def _rate_limited(retry_after: float | None) -> Response:
    headers = {} if retry_after is None else {"Retry-After": seconds_text(retry_after)}
    return problem(
        429, "Too Many Requests", "sandbox fault: rate_limit_next or rate_limit", headers=headers
    )


def _headers_only(send: Send) -> Send:
    """A send that passes the status line and headers on and loses the body.

    The app then returns without completing its response, so uvicorn closes the
    connection and the client reads a Content-Length it never receives.
    """

    async def send_start_only(message: Message) -> None:
        if message["type"] == "http.response.start":
            await send(message)

    return send_start_only
