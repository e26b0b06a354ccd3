"""The admin API: the operator's commands over HTTP, behind a bearer token.

Mounted only when `server.admin_token` is set; without it no `/admin` route exists.
Every request needs `Authorization: Bearer <admin_token>` (compared in constant
time); anything else is 401. Each endpoint calls the same function as the CLI:

    GET  /admin/events                  ?status ?connector ?type ?customer ?since ?until ?limit
    GET  /admin/events/{ref}            raw, normalized, adjustments, attempts
    POST /admin/events/{ref}/replay     ?dry_run=true
    POST /admin/replay                  {"ids": [...]} or {"status": "failed", "since": "2h"},
                                        "dry_run": bool
    GET  /admin/adjustments             ?status ?limit
    GET  /admin/adjustments/{ref}       with every delivery attempt
    POST /admin/adjustments/retry       {"ids": [...]} or {"dead": true}
    POST /admin/adjustments/{ref}/approve  {"note": "..."}: send a held adjustment
    POST /admin/adjustments/{ref}/reject   {"note": "..."}: never send it
    GET  /admin/reconcile               the last `reconcile` run of each connector

Replays run in the serving process, so their new adjustments are delivered at once.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bridge.errors import BridgeError, NotFoundError, OperationError
from bridge.operating.approvals import decide
from bridge.operating.operations import (
    adjustment_detail,
    event_detail,
    event_summary,
    events_to_replay,
    find_event,
    parse_moment,
    plain,
    replay_events,
    retry_adjustments,
)
from bridge.processing.processor import ConnectorRuntime, Processor
from bridge.storage.records import EventFilter, EventStatus, row_dict
from bridge.storage.store import Store

Handler = Callable[[Request], Awaitable[Response]]
MAX_LIMIT = 1000


def admin_routes(
    *,
    token: str,
    store: Store,
    connectors: Mapping[str, ConnectorRuntime],
    processor: Processor,
    on_retry: Callable[[], None] = lambda: None,
) -> list[Route]:
    expected = f"Bearer {token}".encode()

    def guarded(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return JSONResponse(
                    {"error": "admin API: missing or wrong bearer token"},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="credyt-bridge admin"'},
                )
            try:
                return await handler(request)
            except NotFoundError as exc:
                return JSONResponse({"error": str(exc)}, status_code=404)
            except OperationError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            except BridgeError as exc:
                return JSONResponse({"error": str(exc)}, status_code=503)

        return endpoint

    async def list_events(request: Request) -> Response:
        q = request.query_params
        flt = EventFilter(
            status=q.get("status"),
            connector=q.get("connector"),
            event_type=q.get("type"),
            customer=q.get("customer"),
            since=parse_moment(q["since"]) if q.get("since") else None,
            until=parse_moment(q["until"]) if q.get("until") else None,
            limit=_limit(q.get("limit")),
        )
        return JSONResponse({"events": [event_summary(r) for r in store.list_events(flt)]})

    async def show_event(request: Request) -> Response:
        return JSONResponse(event_detail(store, connectors, request.path_params["ref"]))

    async def replay_one(request: Request) -> Response:
        row = find_event(store, request.path_params["ref"])
        dry_run = _query_flag(request.query_params.get("dry_run"), "dry_run")
        outcomes = await replay_events(processor, [row], dry_run=dry_run)
        return JSONResponse(outcomes[0].as_dict())

    async def replay_many(request: Request) -> Response:
        body = await _json_body(request)
        ids = _ids(body, "event")
        status = _body_text(body, "status")
        if status is not None and status not in set(EventStatus):
            raise OperationError(f"status must be one of: {', '.join(EventStatus)}")
        since, until = _body_text(body, "since"), _body_text(body, "until")
        rows = events_to_replay(
            store,
            ids,
            status=status,
            connector=_body_text(body, "connector"),
            since=parse_moment(since) if since else None,
            until=parse_moment(until) if until else None,
        )
        outcomes = await replay_events(processor, rows, dry_run=_body_flag(body, "dry_run"))
        return JSONResponse({"results": [o.as_dict() for o in outcomes]})

    async def list_adjustments(request: Request) -> Response:
        q = request.query_params
        rows = store.list_adjustments(q.get("status"), _limit(q.get("limit")))
        return JSONResponse({"adjustments": [plain(row_dict(r)) for r in rows]})

    async def show_adjustment(request: Request) -> Response:
        return JSONResponse(adjustment_detail(store, request.path_params["ref"]))

    async def retry(request: Request) -> Response:
        body = await _json_body(request)
        ids = _ids(body, "adjustment")
        count = await retry_adjustments(store, ids, dead=_body_flag(body, "dead"))
        on_retry()
        return JSONResponse({"retried": count})

    def deciding(approve: bool) -> Handler:
        async def endpoint(request: Request) -> Response:
            note = _body_text(await _json_body(request), "note")
            ref = request.path_params["ref"]
            record = await decide(store, ref, approve=approve, note=note)
            if approve:
                on_retry()
            return JSONResponse({"adjustment": ref, "decision": record})

        return endpoint

    async def last_reconcile(request: Request) -> Response:
        runs = [
            {"connector": r.connector, "finished_at": r.finished_at, "report": json.loads(r.report)}
            for r in store.last_reconciles()
        ]
        return JSONResponse({"runs": runs})

    return [
        Route("/admin/events", guarded(list_events), methods=["GET"]),
        Route("/admin/reconcile", guarded(last_reconcile), methods=["GET"]),
        Route("/admin/events/{ref}", guarded(show_event), methods=["GET"]),
        Route("/admin/events/{ref}/replay", guarded(replay_one), methods=["POST"]),
        Route("/admin/replay", guarded(replay_many), methods=["POST"]),
        Route("/admin/adjustments", guarded(list_adjustments), methods=["GET"]),
        Route("/admin/adjustments/retry", guarded(retry), methods=["POST"]),
        Route("/admin/adjustments/{ref}", guarded(show_adjustment), methods=["GET"]),
        Route("/admin/adjustments/{ref}/approve", guarded(deciding(True)), methods=["POST"]),
        Route("/admin/adjustments/{ref}/reject", guarded(deciding(False)), methods=["POST"]),
    ]


def _limit(text: str | None) -> int:
    if text is None:
        return 100
    # ASCII digits only: "²".isdigit() is True and int("²") raises
    if (
        not (text.isascii() and text.isdigit() and len(text) <= 6)
        or not 1 <= int(text) <= MAX_LIMIT
    ):
        raise OperationError(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(text)


TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no")


def _query_flag(text: str | None, name: str) -> bool:
    """A query flag: absent is false; true/1/yes or false/0/no (any case); else 400, so a
    typo (`dry_run=on`) never runs the real thing."""
    if text is None:
        return False
    if text.lower() in TRUE_WORDS:
        return True
    if text.lower() in FALSE_WORDS:
        return False
    raise OperationError(f"{name} must be one of {', '.join(TRUE_WORDS + FALSE_WORDS)}")


def _body_flag(body: dict[str, Any], name: str) -> bool:
    """A body flag: absent is false; otherwise a JSON boolean, nothing else ("false" is 400)."""
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise OperationError(f"{name} must be a JSON boolean (true or false)")
    return value


def _body_text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise OperationError(f"{name} must be a string")
    return value


def _ids(body: dict[str, Any], what: str) -> list[str]:
    ids = body.get("ids")
    if ids is None:
        return []
    if not isinstance(ids, list) or not all(
        isinstance(i, str | int) and not isinstance(i, bool) for i in ids
    ):
        raise OperationError(f"ids must be a list of {what} ids (strings or whole numbers)")
    return [str(i) for i in ids]


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise OperationError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise OperationError("the request body must be a JSON object")
    return body
