"""The operator console: server-rendered pages over the operations the CLI runs.

Mounted next to `/admin` only when `server.admin_token` is set; without it no
`/console` route exists (404). Every page but the log-in needs a session cookie
(see auth.py); every POST needs the session's CSRF token in its form.

    GET  /console                          overview: counts, oldest pending, breaker, chart
    GET  /console/login, POST /console/login, POST /console/logout
    GET  /console/events                   ?status ?connector ?type ?customer ?since ?until ?before
    GET  /console/events/{ref}             raw body, normalized form, adjustments, attempts
    POST /console/replay                   ids=... or status=... (dry run; confirm=yes runs it)
    GET  /console/adjustments              ?status ?limit
    GET  /console/adjustments/{ref}        with every delivery attempt
    POST /console/adjustments/retry        ids=... or dead=yes
    GET  /console/static/{name}            the stylesheet and the copy-button script
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote

import structlog
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bridge.console import pages
from bridge.console.auth import (
    LOGIN_COOKIE,
    LOGIN_FORM_SECONDS,
    SESSION_COOKIE,
    LoginThrottle,
    Session,
    SessionSigner,
    csrf_matches,
)
from bridge.console.rendering import SECURITY_HEADERS, page, static_file
from bridge.errors import BridgeError, NotFoundError, OperationError
from bridge.operating.operations import (
    adjustment_detail,
    event_detail,
    events_to_replay,
    parse_moment,
    replay_events,
    retry_adjustments,
)
from bridge.processing.processor import ConnectorRuntime, Processor
from bridge.storage.records import EventStatus
from bridge.storage.store import Store

log = structlog.get_logger("bridge.console")

MAX_FORM_BYTES = 64 * 1024
MAX_IDS = 500  # events or adjustments one form may name
MAX_REPLAY = 500  # events one console replay takes; more: narrow the filter or use the CLI


@dataclass(frozen=True)
class Form:
    fields: dict[str, list[str]]

    def first(self, name: str) -> str:
        values = self.fields.get(name)
        return values[0].strip() if values else ""

    def all(self, name: str) -> list[str]:
        return [v.strip() for v in self.fields.get(name, []) if v.strip()]


@dataclass(frozen=True)
class Visit:
    request: Request
    session: Session
    form: Form


Handler = Callable[[Visit], Awaitable[Response]]


async def read_form(request: Request) -> Form:
    """An urlencoded form of at most MAX_FORM_BYTES; anything else is an OperationError."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise OperationError(f"the form is over {MAX_FORM_BYTES} bytes")
    if not body:
        return Form({})  # no fields, so no CSRF token either: refused as such
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise OperationError("send the form as application/x-www-form-urlencoded")
    try:
        text = body.decode()
        return Form(parse_qs(text, keep_blank_values=True, max_num_fields=MAX_IDS + 20))
    except (UnicodeDecodeError, ValueError):
        raise OperationError("the form is not valid urlencoded UTF-8") from None


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


def _safe_next(target: str) -> str:
    """Only a console path: never another host (`//evil`, `/\\evil`)."""
    if target.startswith("/console") and "//" not in target and "\\" not in target:
        return target
    return "/console"


def _cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=request.scope.get("scheme") == "https",
    )


def console_routes(
    *,
    token: str,
    store: Store,
    connectors: Mapping[str, ConnectorRuntime],
    processor: Processor,
    breaker_state: Callable[[], str] = lambda: "closed",
    on_retry: Callable[[], None] = lambda: None,
    throttle: LoginThrottle | None = None,
) -> list[Route]:
    signer = SessionSigner(token)
    limiter = throttle or LoginThrottle()

    def render(visit: Visit, name: str, status_code: int = 200, **context: Any) -> Response:
        return page(name, status_code, csrf=visit.session.csrf, signed_in=True, **context)

    def failure(status_code: int, message: str, signed_in: bool = False) -> Response:
        return page("error.html", status_code, message=message, signed_in=signed_in, csrf="")

    def signed_in(
        handler: Handler, *, post: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            session = signer.session(request.cookies.get(SESSION_COOKIE))
            if session is None:
                if post:
                    return failure(403, "your session has ended: log in again")
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return _redirect(f"/console/login?next={quote(target, safe='')}")
            form = Form({})
            try:
                if post:
                    form = await read_form(request)
                    if not csrf_matches(session.csrf, form.first("csrf") or None):
                        log.warning("console_csrf_refused", path=request.url.path)
                        return failure(403, "missing or wrong CSRF token: reload the page", True)
                return await handler(Visit(request, session, form))
            except NotFoundError as exc:
                return failure(404, str(exc), True)
            except OperationError as exc:
                return failure(400, str(exc), True)
            except BridgeError as exc:
                log.error("console_store_failed", path=request.url.path, error=str(exc))
                return failure(503, "the store can not answer right now; try again", True)

        return endpoint

    # -- log-in ------------------------------------------------------------------------

    def login_page(request: Request, status_code: int = 200, message: str = "") -> Response:
        cookie, form_token = signer.new_login_form()
        nxt = _safe_next(request.query_params.get("next", "/console"))
        response = page(
            "login.html", status_code, csrf=form_token, next=nxt, message=message, signed_in=False
        )
        _cookie(response, request, LOGIN_COOKIE, cookie, LOGIN_FORM_SECONDS)
        return response

    async def login_form(request: Request) -> Response:
        if signer.session(request.cookies.get(SESSION_COOKIE)) is not None:
            return _redirect("/console")
        return login_page(request)

    async def login(request: Request) -> Response:
        client = request.client.host if request.client else "unknown"
        try:
            form = await read_form(request)
        except OperationError as exc:
            return failure(400, str(exc))
        expected = signer.login_form_token(request.cookies.get(LOGIN_COOKIE))
        if expected is None or not csrf_matches(expected, form.first("csrf") or None):
            log.warning("console_csrf_refused", path=request.url.path)
            return login_page(request, 403, "the log-in form expired: try again")
        wait = limiter.retry_after(client)
        if wait:
            log.warning("console_login_throttled", client=client, retry_after=wait)
            response = failure(429, f"too many failed log-ins: try again in {wait} s")
            response.headers["Retry-After"] = str(wait)
            return response
        if not signer.token_matches(form.first("token")):
            limiter.failed(client)
            log.warning("console_login_refused", client=client)
            return login_page(request, 401, "that is not the admin token")
        limiter.succeeded(client)
        cookie, _ = signer.new_session()
        log.info("console_login", client=client)
        response = _redirect(_safe_next(form.first("next") or "/console"))
        _cookie(response, request, SESSION_COOKIE, cookie, signer.lifetime)
        response.delete_cookie(LOGIN_COOKIE, path="/console")
        return response

    async def logout(visit: Visit) -> Response:
        response = _redirect("/console/login")
        response.delete_cookie(SESSION_COOKIE, path="/console")
        return response

    # -- pages ---------------------------------------------------------------------------

    async def overview(visit: Visit) -> Response:
        return render(visit, "overview.html", **pages.overview(store, breaker_state()))

    async def events(visit: Visit) -> Response:
        query = pages.event_query(visit.request.query_params)
        return render(visit, "events.html", **pages.events_page(store, query))

    async def event(visit: Visit) -> Response:
        detail = event_detail(store, connectors, visit.request.path_params["ref"])
        ref = str(detail["event"]["id"])
        return render(
            visit,
            "event.html",
            detail=detail,
            cli=pages.command("credyt-bridge", "events", "show", ref),
            replay_cli=pages.command("credyt-bridge", "replay", ref, "--dry-run"),
        )

    async def replay(visit: Visit) -> Response:
        form = visit.form
        ids = form.all("ids")
        selection = {k: form.first(k) for k in ("status", "connector", "since", "until")}
        if len(ids) > MAX_IDS:
            raise OperationError(f"name at most {MAX_IDS} events at once")
        if selection["status"] and selection["status"] not in set(EventStatus):
            raise OperationError(f"status must be one of: {', '.join(EventStatus)}")
        rows = events_to_replay(
            store,
            ids,
            status=selection["status"] or None,
            connector=selection["connector"] or None,
            since=parse_moment(selection["since"]) if selection["since"] else None,
            until=parse_moment(selection["until"]) if selection["until"] else None,
        )
        if len(rows) > MAX_REPLAY:
            raise OperationError(
                f"{len(rows)} events match; the console replays at most {MAX_REPLAY}: "
                "narrow the filter, or use the command line"
            )
        confirmed = form.first("confirm") == "yes"
        outcomes = await replay_events(processor, rows, dry_run=not confirmed)
        log.info("console_replay", events=len(rows), dry_run=not confirmed)
        words = ["credyt-bridge", "replay", *(str(r.id) for r in rows)] if ids else []
        cli = (
            pages.command(*words, *([] if confirmed else ["--dry-run"]))
            if ids
            else pages.replay_filter_cli(selection, dry_run=not confirmed)
        )
        return render(
            visit,
            "replay.html",
            outcomes=[o.as_dict() for o in outcomes],
            confirmed=confirmed,
            ids=[str(r.id) for r in rows] if ids else [],
            selection=selection,
            cli=cli,
        )

    async def adjustments(visit: Visit) -> Response:
        q = visit.request.query_params
        data = pages.adjustments_page(store, q.get("status", ""), q.get("limit", ""))
        return render(visit, "adjustments.html", **data)

    async def adjustment(visit: Visit) -> Response:
        detail = adjustment_detail(store, visit.request.path_params["ref"])
        return render(
            visit,
            "adjustment.html",
            adj=detail,
            cli=pages.command("credyt-bridge", "outbox", "list", "--status", detail["status"]),
            retry_cli=pages.command("credyt-bridge", "outbox", "retry", str(detail["id"])),
        )

    async def retry(visit: Visit) -> Response:
        ids = visit.form.all("ids")
        if len(ids) > MAX_IDS:
            raise OperationError(f"name at most {MAX_IDS} adjustments at once")
        dead = visit.form.first("dead") == "yes"
        count = await retry_adjustments(store, ids, dead=dead)
        on_retry()
        log.info("console_retry", adjustments=count, dead=dead)
        cli = pages.command("credyt-bridge", "outbox", "retry", *(ids or ["--dead"]))
        return render(visit, "retried.html", count=count, cli=cli)

    async def static(request: Request) -> Response:
        return static_file(request.path_params["name"])

    return [
        Route("/console", signed_in(overview), methods=["GET"]),
        Route("/console/login", login_form, methods=["GET"]),
        Route("/console/login", login, methods=["POST"]),
        Route("/console/logout", signed_in(logout, post=True), methods=["POST"]),
        Route("/console/events", signed_in(events), methods=["GET"]),
        Route("/console/events/{ref}", signed_in(event), methods=["GET"]),
        Route("/console/replay", signed_in(replay, post=True), methods=["POST"]),
        Route("/console/adjustments", signed_in(adjustments), methods=["GET"]),
        Route("/console/adjustments/retry", signed_in(retry, post=True), methods=["POST"]),
        Route("/console/adjustments/{ref}", signed_in(adjustment), methods=["GET"]),
        Route("/console/static/{name}", static, methods=["GET"]),
    ]
