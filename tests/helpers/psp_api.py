"""A stand-in for Stripe's and Paddle's APIs on a loopback port (test-only).

It answers the list endpoints the bridge reads, in the PSPs' formats and with their
pagination: events (`backfill`) and the objects that move money (`reconcile`):

    Stripe  GET /v1/events, /v1/invoices, /v1/payment_intents, /v1/checkout/sessions,
            /v1/refunds, /v1/disputes       created[gte|lt], status, starting_after, limit
    Paddle  GET /events, /transactions, /adjustments     after, per_page, meta.pagination

Objects are kept newest first with an index by id, so a page costs its own size and
100,000 objects page through in linear time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bridge.receiving.servers import serve_in_thread

STRIPE_KEY = "sk_test_backfill_0123456789"
PADDLE_KEY = "pdl_sdbx_apikey_backfill_0123456789"

STRIPE_OBJECT_LISTS = ("invoices", "payment_intents", "checkout/sessions", "refunds", "disputes")
PADDLE_OBJECT_LISTS = ("transactions", "adjustments")


def _paddle_created(obj: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(obj["created_at"]).replace("Z", "+00:00")).timestamp()


@dataclass
class ObjectList:
    """One list's objects, newest first, and where each sits."""

    items: list[dict[str, Any]] = field(default_factory=list)
    where: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, objects: list[dict[str, Any]], created: Any) -> ObjectList:
        items = sorted(objects, key=lambda o: (created(o), o["id"]), reverse=True)
        return cls(items, {o["id"]: i for i, o in enumerate(items)})


@dataclass
class PspApi:
    """What the stand-in lists, and the query strings it was asked."""

    stripe_events: list[dict[str, Any]] = field(default_factory=list)
    paddle_events: list[dict[str, Any]] = field(default_factory=list)
    page_size: int = 2  # small pages, so every listing takes several
    queries: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    # Paddle: answers to give instead of page i (0-based, counting pages served)
    paddle_failures: dict[int, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    paddle_pages: int = 0
    stripe_objects: dict[str, ObjectList] = field(default_factory=dict)
    paddle_objects: dict[str, ObjectList] = field(default_factory=dict)
    record_queries: bool = True  # False for 100,000-object runs

    def set_stripe_objects(self, name: str, objects: list[dict[str, Any]]) -> None:
        assert name in STRIPE_OBJECT_LISTS, name
        self.stripe_objects[name] = ObjectList.of(objects, lambda o: int(o["created"]))

    def set_paddle_objects(self, name: str, objects: list[dict[str, Any]]) -> None:
        assert name in PADDLE_OBJECT_LISTS, name
        self.paddle_objects[name] = ObjectList.of(objects, _paddle_created)


def _stripe_refused(request: Request) -> Response | None:
    if request.headers.get("authorization") != f"Bearer {STRIPE_KEY}":
        error = {"type": "invalid_request_error", "message": "Invalid API Key provided"}
        return JSONResponse({"error": error}, status_code=401)
    return None


def _paddle_refused(request: Request) -> Response | None:
    if request.headers.get("authorization") != f"Bearer {PADDLE_KEY}":
        error = {"type": "request_error", "code": "authentication_malformed"}
        return JSONResponse({"error": error}, status_code=403)
    return None


def create_psp_api(api: PspApi) -> Starlette:
    async def stripe_events(request: Request) -> Response:
        api.queries.append(str(request.url.query))
        refused = _stripe_refused(request)
        if refused:
            return refused
        q = request.query_params
        types = {v for k, v in q.multi_items() if k.startswith("types[")}
        gte = int(q.get("created[gte]", "0"))
        listed = sorted(
            (e for e in api.stripe_events if e["created"] >= gte and e["type"] in types),
            key=lambda e: (e["created"], e["id"]),
            reverse=True,
        )
        after = q.get("starting_after")
        if after:
            listed = listed[[e["id"] for e in listed].index(after) + 1 :]
        size = min(int(q.get("limit", "10")), api.page_size)
        body = {
            "object": "list",
            "url": "/v1/events",
            "has_more": len(listed) > size,
            "data": listed[:size],
        }
        return JSONResponse(body)

    async def stripe_event(request: Request) -> Response:
        refused = _stripe_refused(request)
        if refused:
            return refused
        wanted = request.path_params["event_id"]
        for event in api.stripe_events:
            if event["id"] == wanted:
                return JSONResponse(event)
        error = {"type": "invalid_request_error", "message": f"No such event: '{wanted}'"}
        return JSONResponse({"error": error}, status_code=404)

    async def stripe_objects(request: Request) -> Response:
        if api.record_queries:
            api.queries.append(f"{request.url.path}?{request.url.query}")
        refused = _stripe_refused(request)
        if refused:
            return refused
        name = request.url.path.removeprefix("/v1/")
        listing = api.stripe_objects.get(name, ObjectList())
        q = request.query_params
        gte, lt = int(q.get("created[gte]", "0")), int(q.get("created[lt]", str(2**62)))
        status = q.get("status")
        size = min(int(q.get("limit", "10")), api.page_size)
        after = q.get("starting_after")
        start = listing.where[after] + 1 if after else 0
        page: list[dict[str, Any]] = []
        more = False
        for obj in listing.items[start:]:
            if not gte <= int(obj["created"]) < lt or (status and obj.get("status") != status):
                continue
            if len(page) == size:
                more = True
                break
            page.append(obj)
        return JSONResponse(
            {"object": "list", "url": request.url.path, "has_more": more, "data": page}
        )

    async def paddle_events(request: Request) -> Response:
        api.queries.append(str(request.url.query))
        api.headers.append(dict(request.headers))
        refused = _paddle_refused(request)
        if refused:
            return refused
        pending = api.paddle_failures.get(api.paddle_pages) or []
        if pending:
            status, headers = pending.pop(0)
            error = {"type": "api_error", "code": "too_many_requests" if status == 429 else "x"}
            return JSONResponse({"error": error}, status_code=status, headers=headers)
        api.paddle_pages += 1
        q = request.query_params
        assert q.get("order_by") == "id[DESC]"
        types = set(q.get("event_type", "").split(","))
        listed = sorted(
            (e for e in api.paddle_events if e["event_type"] in types),
            key=lambda e: e["event_id"],
            reverse=True,
        )
        after = q.get("after")
        if after:
            listed = [e for e in listed if e["event_id"] < after]
        size = min(int(q.get("per_page", "50")), api.page_size)
        page = listed[:size]
        return _paddle_page(
            request, page, len(listed) > size, size, page[-1]["event_id"] if page else None
        )

    async def paddle_objects(request: Request) -> Response:
        if api.record_queries:
            api.queries.append(f"{request.url.path}?{request.url.query}")
        refused = _paddle_refused(request)
        if refused:
            return refused
        name = request.url.path.strip("/")
        listing = api.paddle_objects.get(name, ObjectList())
        q = request.query_params
        gte = q.get("created_at[GTE]")
        lt = q.get("created_at[LT]")
        low = _paddle_created({"created_at": gte}) if gte else float("-inf")
        high = _paddle_created({"created_at": lt}) if lt else float("inf")
        status = q.get("status")
        size = min(int(q.get("per_page", "50")), api.page_size)
        after = q.get("after")
        start = listing.where[after] + 1 if after else 0
        page: list[dict[str, Any]] = []
        more = False
        for obj in listing.items[start:]:
            if not low <= _paddle_created(obj) < high or (status and obj.get("status") != status):
                continue
            if len(page) == size:
                more = True
                break
            page.append(obj)
        return _paddle_page(request, page, more, size, page[-1]["id"] if page else None)

    routes = [
        Route("/v1/events", stripe_events, methods=["GET"]),
        Route("/v1/events/{event_id}", stripe_event, methods=["GET"]),
        Route("/events", paddle_events, methods=["GET"]),
    ]
    routes += [
        Route(f"/v1/{name}", stripe_objects, methods=["GET"]) for name in STRIPE_OBJECT_LISTS
    ]
    routes += [Route(f"/{name}", paddle_objects, methods=["GET"]) for name in PADDLE_OBJECT_LISTS]
    return Starlette(routes=routes)


def _paddle_page(
    request: Request, page: list[dict[str, Any]], more: bool, size: int, last: str | None
) -> Response:
    q = dict(request.query_params)
    following = {**q, "after": last} if last else q
    pagination = {
        "per_page": size,
        "next": f"{request.url.replace(query=urlencode(following))}",
        "has_more": more,
        "estimated_total": len(page),
    }
    return JSONResponse({"data": page, "meta": {"request_id": "req_1", "pagination": pagination}})


@contextmanager
def serve_psp_api(api: PspApi | None = None) -> Iterator[tuple[PspApi, str]]:
    """The stand-in on a free loopback port: (what it lists, its base URL)."""
    api = api or PspApi()
    with serve_in_thread(create_psp_api(api)) as url:
        yield api, url
