"""The receiver: the Starlette app PSPs post webhooks to, plus health and metrics.

`POST /webhooks/{connector}` answers as soon as the raw event is durably stored:
    200 accepted / duplicate     400 bad signature or body     404 unknown connector
    413 body over the limit      503 the store can not commit (the PSP retries)
Everything slow happens afterwards, in the processor and the deliverer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from bridge.errors import PayloadTooLargeError, SignatureError, StoreError, WebhookError
from bridge.metrics import Metrics
from bridge.storage.store import Store
from connectors import Connector

log = structlog.get_logger("bridge.receiving.app")

ACCEPTED = b'{"status":"accepted"}'
DUPLICATE = b'{"status":"duplicate"}'


def _json(code: int, **fields: Any) -> JSONResponse:
    return JSONResponse(fields, status_code=code)


def create_app(
    *,
    store: Store,
    connectors: Mapping[str, Connector],
    metrics: Metrics,
    max_body_bytes: int,
    on_accepted: Callable[[], None] = lambda: None,
    on_scrape: Callable[[], None] = lambda: None,
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[None]] | None = None,
    extra_routes: list[Route] | None = None,
    not_ready: Callable[[], str | None] = lambda: None,
) -> WebhookFastPath:
    async def receive_webhook(request: Request, name: str) -> Response:
        received = time.time()
        connector = connectors.get(name)
        if connector is None:
            metrics.webhooks.labels("unknown", "unknown_connector").inc()
            return _json(404, error=f"unknown connector {name!r}")
        try:
            body = await _read_body(request, max_body_bytes)
            connector.verify(request.headers, body)
            envelope = connector.envelope(body)
        except WebhookError as exc:
            return _refused(name, exc, metrics)
        try:
            inserted = await store.accept(name, envelope, body, received)
        except StoreError as exc:
            metrics.webhooks.labels(name, "store_error").inc()
            log.error(
                "webhook_store_failed", connector=name, event_id=envelope.event_id, error=str(exc)
            )
            return _json(503, error="the bridge can not store events right now; retry later")
        metrics.receive_to_stored.observe(time.time() - received)
        if inserted:
            metrics.webhooks.labels(name, "accepted").inc()
            on_accepted()
            return Response(ACCEPTED, media_type="application/json")
        metrics.webhooks.labels(name, "duplicate").inc()
        return Response(DUPLICATE, media_type="application/json")

    async def healthz(_: Request) -> Response:
        return _json(200, status="ok")

    async def readyz(_: Request) -> Response:
        try:
            await store.check_writable()
        except StoreError as exc:
            return _json(503, status="unavailable", error=str(exc))
        problem = not_ready()  # e.g. Credyt has not accepted the API key yet
        if problem is not None:
            return _json(503, status="unavailable", error=problem)
        return _json(200, status="ready")

    async def metrics_endpoint(_: Request) -> Response:
        on_scrape()
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def webhook_route(request: Request) -> Response:
        return await receive_webhook(request, request.path_params["connector"])

    routes = [
        Route("/webhooks/{connector}", webhook_route, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        *(extra_routes or []),
    ]
    return WebhookFastPath(Starlette(routes=routes, lifespan=lifespan), receive_webhook)


class WebhookFastPath:
    """The ASGI front: `POST /webhooks/{connector}` goes straight to its handler.

    Starlette's middleware stack and router were ~15% of the receiver's CPU under load;
    the webhook path needs neither. Everything else (health, metrics, the admin API,
    wrong methods, lifespan) goes to the Starlette app, `self.starlette`.
    """

    PREFIX = "/webhooks/"

    def __init__(
        self, starlette: Starlette, handler: Callable[[Request, str], Awaitable[Response]]
    ) -> None:
        self.starlette = starlette
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            if path.startswith(self.PREFIX):
                name = path[len(self.PREFIX) :]
                if name and "/" not in name:
                    response = await self.handler(Request(scope, receive), name)
                    await response(scope, receive, send)
                    return
        await self.starlette(scope, receive, send)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"body of {declared} bytes is over the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    stream: AsyncIterator[bytes] = request.stream()
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _refused(name: str, exc: WebhookError, metrics: Metrics) -> Response:
    if isinstance(exc, PayloadTooLargeError):
        metrics.webhooks.labels(name, "too_large").inc()
    else:
        metrics.webhooks.labels(name, "rejected").inc()
    if isinstance(exc, SignatureError):
        metrics.signature_failures.labels(name, exc.reason).inc()
    log.warning("webhook_rejected", connector=name, status=exc.status_code, error=str(exc))
    return _json(exc.status_code, error=str(exc))
