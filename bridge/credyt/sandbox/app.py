"""The sandbox's routes: Credyt's API, the control endpoints, and serving them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, Unpack

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bridge.credyt.client import ACCOUNT_HEADER
from bridge.credyt.sandbox.faults import FaultSettings
from bridge.credyt.sandbox.gate import CONTROL_PREFIX, Gate
from bridge.credyt.sandbox.state import SandboxState
from bridge.credyt.sandbox.wire import (
    ExactJSONResponse,
    FieldChecker,
    UsageEvent,
    invalid,
    json_object,
    problem,
    query_int,
    validate_adjustment,
    validate_usage_event,
    validation_error,
)
from bridge.errors import SandboxError
from bridge.receiving.servers import base_url, bind_socket, make_server

DEFAULT_PAGE_LIMIT = 20
MAX_PAGE_LIMIT = 100


async def create_customer(request: Request) -> Response:
    body = await json_object(request)
    check = FieldChecker(body)
    name = check.optional_str("name") or ""
    email = check.optional_str("email") or ""
    external_id = check.optional_str("external_id")
    check.done()
    customer_id = _sandbox(request).add_customer(external_id=external_id, name=name, email=email)
    return ExactJSONResponse({"id": customer_id}, status_code=201)


async def get_customer(request: Request) -> Response:
    customer = _sandbox(request).customer(request.path_params["customer_id"])
    return ExactJSONResponse(customer.as_json())


async def list_customers(request: Request) -> Response:
    state = _sandbox(request)
    external_id = request.query_params.get("external_id")
    if external_id is not None:  # Credyt's contract: a redirect to the one customer, or 404
        found = state.find_by_external_id(external_id)
        return Response(status_code=303, headers={"Location": f"/customers/{found.id}"})
    limit = query_int(request, "limit", DEFAULT_PAGE_LIMIT, 1, MAX_PAGE_LIMIT)
    offset = query_int(request, "offset", 0, 0, None)
    filters = {
        field: request.query_params[param]
        for param, field in (("email", "email"), ("name", "name"), ("customer_id", "id"))
        if param in request.query_params
    }
    return ExactJSONResponse(state.customer_page(filters=filters, limit=limit, offset=offset))


async def create_adjustment(request: Request) -> Response:
    state = _sandbox(request)
    customer_id = request.path_params["customer_id"]
    state.customer(customer_id)
    body = await json_object(request)
    record, is_new = state.apply_adjustment(customer_id, validate_adjustment(body), body)
    # The SDK's CreateAdjustmentResponse.id is "your unique ID": the transaction_id.
    created = {"id": record["transaction_id"], "created_at": record["received_at"]}
    if is_new:
        return ExactJSONResponse(created, status_code=201)
    status = request.app.state.duplicate_status
    if 200 <= status < 300:
        return ExactJSONResponse(created, status_code=status)
    return problem(
        status,
        "Adjustment already exists",
        f"An adjustment with transaction_id {record['transaction_id']} already exists.",
    )


async def get_transaction(request: Request) -> Response:
    state = _sandbox(request)
    customer_id = request.path_params["customer_id"]
    state.customer(customer_id)
    return ExactJSONResponse(state.transaction(customer_id, request.path_params["transaction_id"]))


async def get_account_self(request: Request) -> Response:
    state = _sandbox(request)
    return ExactJSONResponse(
        {"account_id": state.account_id, "environment": state.environment, "name": "Sandbox"}
    )


async def get_wallet(request: Request) -> Response:
    state = _sandbox(request)
    customer_id = request.path_params["customer_id"]
    state.customer(customer_id)
    return ExactJSONResponse({"accounts": state.accounts(customer_id)})


async def get_wallet_account(request: Request) -> Response:
    state = _sandbox(request)
    customer_id = request.path_params["customer_id"]
    account_id = request.path_params["account_id"]
    state.customer(customer_id)
    for account in state.accounts(customer_id):
        if account["id"] == account_id:
            return ExactJSONResponse(account | {"pending_in": 0, "pending_out": 0})
    raise SandboxError(404, "Account not found", f"No account {account_id} in this wallet.")


async def post_events(request: Request) -> Response:
    state = _sandbox(request)
    body = await json_object(request)
    customer_id = _usage_customer(state, body)
    events = body.get("events")
    if not isinstance(events, list) or not events:
        raise invalid("events", "events is required and must be a non-empty list.")
    parsed: list[UsageEvent] = []
    errors: dict[str, list[str]] = {}
    for index, raw in enumerate(events):
        event, event_errors = validate_usage_event(raw, index)
        errors |= event_errors
        if event is not None:
            parsed.append(event)
    if errors:
        raise validation_error(errors)
    accepted, duplicates = state.record_usage(customer_id, parsed)
    return ExactJSONResponse({"accepted": accepted, "duplicates": duplicates}, status_code=201)


async def get_asset(request: Request) -> Response:
    return ExactJSONResponse(_sandbox(request).asset(request.path_params["asset_code"]))


async def control_faults(request: Request) -> Response:
    body = await json_object(request)
    known = set(FaultSettings.__annotations__)
    unknown = sorted(set(body) - known)
    if unknown:
        raise invalid(unknown[0], f"unknown fault setting; use one of {sorted(known)}.")
    settings: dict[str, Any] = {
        k: float(v) if isinstance(v, Decimal) else v for k, v in body.items()
    }
    state = _sandbox(request)
    state.inject(**settings)
    return ExactJSONResponse(dict(state.faults.settings()))


async def control_state(request: Request) -> Response:
    return ExactJSONResponse(_sandbox(request).snapshot())


async def control_reset(request: Request) -> Response:
    _sandbox(request).reset()
    return ExactJSONResponse({"reset": True})


async def control_add_customer(request: Request) -> Response:
    body = await json_object(request)
    check = FieldChecker(body)
    external_id = check.optional_str("external_id")
    name = check.optional_str("name") or ""
    email = check.optional_str("email") or ""
    customer_id = check.optional_str("customer_id")
    check.done()
    new_id = _sandbox(request).add_customer(
        external_id=external_id, name=name, email=email, customer_id=customer_id
    )
    return ExactJSONResponse({"id": new_id}, status_code=201)


async def control_add_asset(request: Request) -> Response:
    body = await json_object(request)
    check = FieldChecker(body)
    code = check.required_str("code")
    precision = body.get("precision")
    check.done()
    _sandbox(request).add_asset(code, precision)  # type: ignore[arg-type]
    return ExactJSONResponse({"code": code, "precision": precision}, status_code=201)


def _usage_customer(state: SandboxState, body: Mapping[str, Any]) -> str:
    customer_id = body.get("customer_id")
    if isinstance(customer_id, str) and customer_id:
        return state.customer(customer_id).id
    external_id = body.get("customer_external_id")
    if isinstance(external_id, str) and external_id:
        return state.find_by_external_id(external_id).id
    raise invalid("customer_id", "customer_id or customer_external_id is required.")


def _sandbox(request: Request) -> SandboxState:
    """The state a request acts on: the connected account its X-CREDYT-ACCOUNT header
    names (control endpoints: `?account=`), else the key's own account."""
    state = request.app.state.sandbox
    if not isinstance(state, SandboxState):
        raise TypeError("app.state.sandbox is not a SandboxState")
    if request.url.path.startswith(CONTROL_PREFIX):
        return state.tenant(request.query_params.get("account"))
    return state.tenant(request.headers.get(ACCOUNT_HEADER))


async def _problem_from_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, SandboxError):
        return problem(exc.status_code, exc.title, exc.detail, errors=exc.errors)
    if isinstance(exc, HTTPException):
        return problem(exc.status_code, str(exc.detail), headers=exc.headers)
    raise exc


def create_sandbox_app(
    state: SandboxState | None = None,
    *,
    api_key: str | None = "key_sandbox",
    duplicate_status: int = 409,
) -> Starlette:
    """The sandbox as a Starlette app; its state is `app.state.sandbox`."""
    if not 200 <= duplicate_status <= 599:
        raise invalid("duplicate_status", "duplicate_status must be a 2xx, 4xx or 5xx code.")
    sandbox = state if state is not None else SandboxState()
    app = Starlette(
        routes=list(_routes()),
        middleware=[Middleware(Gate, state=sandbox, api_key=api_key)],
        exception_handlers={SandboxError: _problem_from_error, HTTPException: _problem_from_error},
    )
    app.state.sandbox = sandbox
    app.state.duplicate_status = duplicate_status
    return app


def _routes() -> Iterator[Route]:
    yield Route("/customers", create_customer, methods=["POST"])
    yield Route("/customers", list_customers, methods=["GET"])
    yield Route("/customers/{customer_id}", get_customer, methods=["GET"])
    yield Route("/customers/{customer_id}/wallet", get_wallet, methods=["GET"])
    yield Route("/customers/{customer_id}/wallet/adjustments", create_adjustment, methods=["POST"])
    yield Route(
        "/customers/{customer_id}/wallet/transactions/{transaction_id}",
        get_transaction,
        methods=["GET"],
    )
    yield Route("/customers/{customer_id}/wallet/{account_id}", get_wallet_account, methods=["GET"])
    yield Route("/accounts/self", get_account_self, methods=["GET"])
    yield Route("/events", post_events, methods=["POST"])
    yield Route("/assets/{asset_code}", get_asset, methods=["GET"])
    yield Route(CONTROL_PREFIX + "assets", control_add_asset, methods=["POST"])
    yield Route(CONTROL_PREFIX + "faults", control_faults, methods=["POST"])
    yield Route(CONTROL_PREFIX + "state", control_state, methods=["GET"])
    yield Route(CONTROL_PREFIX + "reset", control_reset, methods=["POST"])
    yield Route(CONTROL_PREFIX + "customers", control_add_customer, methods=["POST"])


def serve_sandbox(
    host: str = "127.0.0.1",
    port: int = 8090,
    *,
    api_key: str | None = "key_sandbox",
    customers: Sequence[str] = (),
    environment: str = "test",
    **faults: Unpack[FaultSettings],
) -> None:
    """Run the sandbox until interrupted.

    Each entry of `customers` is created up front: `cust_id`, or `cust_id=external_id`
    to make the customer findable by `GET /customers?external_id=`.
    """
    state = SandboxState()
    state.environment = environment
    for entry in customers:
        customer_id, _, external_id = entry.partition("=")
        state.add_customer(customer_id=customer_id, external_id=external_id or None)
    state.inject(**faults)
    sock = bind_socket(host, port)
    server = make_server(create_sandbox_app(state, api_key=api_key))
    structlog.get_logger().info("sandbox_listening", url=base_url(sock))
    try:
        asyncio.run(server.serve(sockets=[sock]))
    finally:
        sock.close()
