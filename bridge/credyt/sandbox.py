"""A local Credyt-compatible API: wallets, idempotent adjustments, customers, usage events.

The demo, the tests and the benchmarks run the bridge against this sandbox instead of
the real Credyt API. It speaks the same wire format (as Credyt's docs and its official
SDK describe it; tests/test_credyt_contract.py checks it with the SDK):

    POST /customers                              201 {"id": "cust_..."}; 409 on a taken external_id
    GET  /customers/{id}                         200 customer, or 404
    GET  /customers?external_id=X                303 See Other, Location /customers/{id};
                                                 404 when no customer has that external_id
    GET  /customers?email&name&customer_id&limit&offset
                                                 200 page of customer summaries
    POST /customers/{id}/wallet/adjustments      201 {"id": transaction_id, "created_at"}; a
                                                 repeated transaction_id changes nothing and
                                                 answers `duplicate_status` (409 "Adjustment
                                                 already exists" by default)
    GET  /customers/{id}/wallet/transactions/{transaction_id}
                                                 200 the adjustment recorded under that id
                                                 for that customer, or 404
    GET  /customers/{id}/wallet                  200 {"accounts": [...]}
    GET  /customers/{id}/wallet/{name:ASSET}     200 the account with pending_in/pending_out
    GET  /accounts/self                          200 {"account_id", "environment", "name"};
                                                 `environment` is SandboxState.environment
                                                 (`test` unless set)
    POST /events                                 201 {"accepted", "duplicates"}
    GET  /assets/{code}                          200 the asset with its `precision`, or 404

Every API request needs the header ``X-CREDYT-API-KEY`` (401 with an empty body
otherwise) unless the app was built with ``api_key=None``. Every API request's method
and raw path (with its query) is logged in ``SandboxState.requests``, so a test can
prove which URLs the bridge did, and did not, ask for. Request JSON is parsed with
``parse_float=Decimal`` and answers render Decimals as their exact text, so money never
passes through a float. Errors are problem documents; validation errors (422) name each
bad field under ``errors``.

Sandbox convention for usage events: an event whose ``data.cost`` is a number debits that
much from the customer's ``default:<data.asset>`` account (``data.asset`` defaults to
``USD``). Each event ``id`` is an idempotency key across the whole sandbox; a repeated id is
counted as a duplicate and debits nothing.

Control endpoints (no key, never faulted) drive tests and demos over HTTP:

    POST /_sandbox/faults      same keys as SandboxState.inject(); replaces the fault settings
    GET  /_sandbox/state       customers, wallets, adjustments, conflicts, counters, faults
    POST /_sandbox/reset       forget everything
    POST /_sandbox/customers   same keys as SandboxState.add_customer(); 201 {"id": ...}
    POST /_sandbox/assets      {"code", "precision"}: add a custom asset; 201

Faults apply to API requests only (``only`` narrows them to one group: ``adjustments``,
``customers``, ``wallet``, ``events``, ``accounts`` or ``assets``), in this order:
``delay`` (every answer waits that long first), then the key check, then ``fail_next``
(answer ``fail_status``, change nothing), then ``rate_limit_next`` (429 with
``Retry-After`` when ``retry_after`` is set, change nothing), then ``drop_next``
(adjustment POSTs only: the request is processed as usual, then the connection closes
after the status line and headers, so the client sees a broken response). The counters
count down as faults fire.

Errors raised on purpose: SandboxError (in bridge.errors' tree), a refused sandbox
operation; it carries the HTTP status and problem fields it is answered with (409 taken
id, 404 unknown, 422 invalid).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import secrets
import string
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypedDict, Unpack

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge.errors import SandboxError
from bridge.receiving.servers import base_url, bind_socket, make_server

API_KEY_HEADER = "X-CREDYT-API-KEY"
CONTROL_PREFIX = "/_sandbox/"
REASONS = frozenset({"gift", "external_topup", "external_refund", "other"})
FAULT_GROUPS = frozenset({"adjustments", "customers", "wallet", "events", "accounts", "assets"})
DEFAULT_PAGE_LIMIT = 20
MAX_PAGE_LIMIT = 100

_ID_ALPHABET = string.ascii_lowercase + string.digits
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_ADJUSTMENTS_PATH = re.compile(r"^/customers/[^/]+/wallet/adjustments/?$")

_PROBLEM_TYPES = {
    400: "https://tools.ietf.org/html/rfc9110#section-15.5.1",
    404: "https://tools.ietf.org/html/rfc9110#section-15.5.5",
    409: "https://tools.ietf.org/html/rfc9110#section-15.5.10",
    422: "https://tools.ietf.org/html/rfc9110#section-15.5.21",
    429: "https://tools.ietf.org/html/rfc6585#section-4",
}


class FaultSettings(TypedDict, total=False):
    """The keyword arguments of SandboxState.inject() and of POST /_sandbox/faults."""

    fail_next: int
    fail_status: int
    rate_limit_next: int
    retry_after: float | None
    delay: float
    drop_next: int
    only: str | None


@dataclass
class Faults:
    """The injected failures still to fire; counters count down as they do."""

    fail_next: int = 0
    fail_status: int = 500
    rate_limit_next: int = 0
    retry_after: float | None = None
    delay: float = 0.0
    drop_next: int = 0
    only: str | None = None

    def applies_to(self, group: str) -> bool:
        return self.only is None or self.only == group


@dataclass(frozen=True, slots=True)
class FaultAction:
    """What the gate does with one admitted API request."""

    fail_status: int | None = None
    rate_limited: bool = False
    retry_after: float | None = None
    drop: bool = False


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    external_id: str | None
    name: str
    email: str
    created_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "external_id": self.external_id,
            "name": self.name,
            "email": self.email,
            "active_subscription_count": 0,
            "created_at": self.created_at,
        }

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "external_id": self.external_id,
            "name": self.name,
            "email": self.email,
            "active_subscription_count": 0,
        }


@dataclass(frozen=True, slots=True)
class AdjustmentRequest:
    """The validated fields of an adjustment body that move money."""

    transaction_id: str
    asset: str
    amount: Decimal
    account_name: str


@dataclass(frozen=True, slots=True)
class UsageEvent:
    id: str
    cost: Decimal | None
    asset: str
    body: Mapping[str, Any]


class SandboxState:
    """Everything the sandbox knows; safe to read and drive from other threads."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.customers: dict[str, Customer] = {}
        self.wallets: dict[str, dict[str, Decimal]] = {}
        self.adjustments: list[dict[str, Any]] = []
        self.usage_events: list[dict[str, Any]] = []
        self.conflicts: list[dict[str, Any]] = []
        self.faults = Faults()
        self.request_count = 0
        self.adjustment_requests = 0
        self.requests: list[str] = []  # "GET /customers?external_id=x", newest last
        self.environment = "test"  # what GET /accounts/self says the key is for
        self.account_id = "acc_sandbox"
        self._by_transaction: dict[str, dict[str, Any]] = {}
        self._event_ids: set[str] = set()
        self.assets: dict[str, int] = {}  # custom assets added: code -> precision
        # False: a custom asset nobody added is answered with precision 2, as the wallets
        # take any asset; True: it is a 404, as in Credyt.
        self.strict_assets = False

    def reset(self) -> None:
        """Forget customers, wallets, records, counters and faults."""
        with self._lock:
            self.customers.clear()
            self.wallets.clear()
            self.adjustments.clear()
            self.usage_events.clear()
            self.conflicts.clear()
            self._by_transaction.clear()
            self._event_ids.clear()
            self.assets.clear()
            self.faults = Faults()
            self.request_count = 0
            self.adjustment_requests = 0
            self.requests.clear()
            self.environment = "test"

    def add_customer(
        self,
        *,
        external_id: str | None = None,
        name: str = "",
        email: str = "",
        customer_id: str | None = None,
    ) -> str:
        """Create a customer and return its id; a taken id or external_id is a 409."""
        with self._lock:
            new_id = customer_id or _new_id("cust_")
            if new_id in self.customers:
                raise SandboxError(409, "Customer already exists", f"Customer {new_id} exists.")
            if external_id and self._by_external_id(external_id):
                raise SandboxError(
                    409,
                    "Customer already exists",
                    f"A customer with external_id {external_id} already exists.",
                )
            self.customers[new_id] = Customer(new_id, external_id or None, name, email, _now())
            return new_id

    def customer(self, customer_id: str) -> Customer:
        with self._lock:
            found = self.customers.get(customer_id)
        if found is None:
            raise SandboxError(404, "Customer not found", f"No customer {customer_id}.")
        return found

    def find_by_external_id(self, external_id: str) -> Customer:
        """The customer with this external_id, or a 404."""
        with self._lock:
            found = self._by_external_id(external_id)
        if found is None:
            raise SandboxError(
                404, "Customer not found", f"No customer with external_id {external_id}."
            )
        return found

    def customer_page(
        self, *, filters: Mapping[str, str] | None = None, limit: int, offset: int
    ) -> dict[str, Any]:
        """A page of the customers whose `email`, `name` and `id` match `filters`."""
        wanted = dict(filters or {})
        with self._lock:
            matching = [
                c
                for c in self.customers.values()
                if all(getattr(c, field) == value for field, value in wanted.items())
            ]
        return {
            "items": [c.summary() for c in matching[offset : offset + limit]],
            "total_count": len(matching),
            "limit": limit,
            "offset": offset,
        }

    def balance(self, customer_id: str, asset: str, account: str = "default") -> Decimal:
        with self._lock:
            return self.wallets.get(customer_id, {}).get(f"{account}:{asset}", Decimal("0"))

    def accounts(self, customer_id: str) -> list[dict[str, Any]]:
        with self._lock:
            wallet = dict(self.wallets.get(customer_id, {}))
        return [_account_json(account_id, wallet[account_id]) for account_id in sorted(wallet)]

    def inject(
        self,
        *,
        fail_next: int = 0,
        fail_status: int = 500,
        rate_limit_next: int = 0,
        retry_after: float | None = None,
        delay: float = 0.0,
        drop_next: int = 0,
        only: str | None = None,
    ) -> None:
        """Replace the fault settings; keys left out are cleared (no arguments: no faults)."""
        faults = Faults(
            fail_next, fail_status, rate_limit_next, retry_after, delay, drop_next, only
        )
        _check_faults(faults)
        with self._lock:
            self.faults = faults

    def transaction(self, customer_id: str, transaction_id: str) -> dict[str, Any]:
        """The adjustment recorded under `transaction_id` for this customer (Credyt's
        GetTransactionResponse), or a 404."""
        with self._lock:
            record = self._by_transaction.get(transaction_id.lower())
        if record is None or record["customer_id"] != customer_id:
            raise SandboxError(
                404, "Transaction not found", f"No transaction {transaction_id} in this wallet."
            )
        body = record["body"]
        answer = {
            "id": record["transaction_id"],
            "type": "adjustment",
            "account_id": f"{body.get('account_name') or 'default'}:{body['asset']}",
            "asset": body["asset"],
            "amount": Decimal(body["amount"]),
            "created_at": record["received_at"],
            "executed_at": record["received_at"],
        }
        for optional in ("description", "metadata"):
            if body.get(optional) is not None:
                answer[optional] = body[optional]
        return answer

    def admit(self, group: str, request: str = "") -> float:
        """Count one API request and return how long its answer must wait."""
        with self._lock:
            self.request_count += 1
            if request:
                self.requests.append(request)
            if group == "adjustments":
                self.adjustment_requests += 1
            return self.faults.delay if self.faults.applies_to(group) else 0.0

    def take_fault(self, group: str) -> FaultAction:
        """The fault one authorized API request meets, counted down as it fires."""
        with self._lock:
            faults = self.faults
            if not faults.applies_to(group):
                return FaultAction()
            if faults.fail_next > 0:
                faults.fail_next -= 1
                return FaultAction(fail_status=faults.fail_status)
            if faults.rate_limit_next > 0:
                faults.rate_limit_next -= 1
                return FaultAction(rate_limited=True, retry_after=faults.retry_after)
            if group == "adjustments" and faults.drop_next > 0:
                faults.drop_next -= 1
                return FaultAction(drop=True)
            return FaultAction()

    def apply_adjustment(
        self, customer_id: str, request: AdjustmentRequest, body: Mapping[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """Record and apply an adjustment once per transaction_id; returns (record, is_new)."""
        with self._lock:
            self.customer(customer_id)
            first = self._by_transaction.get(request.transaction_id)
            if first is not None:
                self._note_conflict(first, customer_id, body)
                return first, False
            received_at = _now()
            record = {
                "id": _new_id("adj_"),
                "transaction_id": request.transaction_id,
                "customer_id": customer_id,
                "body": body,
                "received_at": received_at,
            }
            self.adjustments.append(record)
            self._by_transaction[request.transaction_id] = record
            self._credit(customer_id, f"{request.account_name}:{request.asset}", request.amount)
            return record, True

    def record_usage(self, customer_id: str, events: Sequence[UsageEvent]) -> tuple[int, int]:
        """Debit each new event's cost; returns (accepted, duplicates)."""
        accepted = 0
        with self._lock:
            for event in events:
                if event.id in self._event_ids:
                    continue
                self._event_ids.add(event.id)
                accepted += 1
                self.usage_events.append(
                    {"customer_id": customer_id, "event": event.body, "received_at": _now()}
                )
                if event.cost is not None:
                    self._credit(customer_id, f"default:{event.asset}", -event.cost)
        return accepted, len(events) - accepted

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy of the whole state (amounts stay Decimal)."""
        with self._lock:
            return {
                "customers": [c.as_json() for c in self.customers.values()],
                "wallets": {cid: dict(wallet) for cid, wallet in self.wallets.items()},
                "adjustments": list(self.adjustments),
                "conflicts": list(self.conflicts),
                "usage_events": list(self.usage_events),
                "request_count": self.request_count,
                "adjustment_requests": self.adjustment_requests,
                "faults": asdict(self.faults),
            }

    def _by_external_id(self, external_id: str) -> Customer | None:
        return next((c for c in self.customers.values() if c.external_id == external_id), None)

    def _credit(self, customer_id: str, account_id: str, amount: Decimal) -> None:
        wallet = self.wallets.setdefault(customer_id, {})
        wallet[account_id] = wallet.get(account_id, Decimal("0")) + amount

    def _note_conflict(
        self, first: Mapping[str, Any], customer_id: str, body: Mapping[str, Any]
    ) -> None:
        if first["body"] == body and first["customer_id"] == customer_id:
            return
        self.conflicts.append(
            {
                "transaction_id": first["transaction_id"],
                "first": first["body"],
                "second": body,
                "first_customer_id": first["customer_id"],
                "second_customer_id": customer_id,
                "received_at": _now(),
            }
        )

    def add_asset(self, code: str, precision: int) -> None:
        """Create (or redefine) a custom asset with `precision` decimal places."""
        whole = isinstance(precision, int) and not isinstance(precision, bool)
        if not whole or not 0 <= precision <= 18:
            raise _invalid("precision", "precision must be a whole number from 0 to 18.")
        with self._lock:
            self.assets[code] = precision

    def asset(self, code: str) -> dict[str, Any]:
        """The asset as `GET /assets/{code}` answers it (the SDK's GetAssetResponse)."""
        with self._lock:
            precision = self.assets.get(code)
            strict = self.strict_assets
        if precision is None:
            precision = iso_precision(code)
        if precision is None and not strict and _CUSTOM_CODE.match(code):
            precision = 2
        if precision is None:
            raise SandboxError(404, "Asset not found", f"No asset {code}.")
        return {
            "code": code,
            "name": code,
            "precision": precision,
            "label": code,
            "rates": [],
            "created_at": _SANDBOX_EPOCH,
        }


# --- JSON in and out, exactly -------------------------------------------------------


def dumps_exact(value: object) -> str:
    """JSON text in which a Decimal is written as its exact plain digits, never a float."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"not a finite amount: {value}")
        return format(value, "f")
    if isinstance(value, datetime):
        return json.dumps(_rfc3339(value))
    if isinstance(value, Mapping):
        items = (f"{json.dumps(str(k))}:{dumps_exact(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps_exact(v) for v in value) + "]"
    return json.dumps(value)


def loads_exact(raw: bytes | str) -> Any:
    """Parse JSON keeping fractional numbers as Decimal; NaN and Infinity are refused."""
    return json.loads(raw, parse_float=Decimal, parse_constant=_refuse_constant)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


class ExactJSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps_exact(content).encode()


class ProblemResponse(ExactJSONResponse):
    media_type = "application/problem+json"


def problem(
    status: int,
    title: str,
    detail: str = "",
    *,
    errors: Mapping[str, list[str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    document: dict[str, Any] = {
        "type": _PROBLEM_TYPES.get(status, "about:blank"),
        "title": title,
        "status": status,
    }
    if detail:
        document["detail"] = detail
    if errors:
        document["errors"] = dict(errors)
    return ProblemResponse(document, status_code=status, headers=headers)


# --- validation ---------------------------------------------------------------------


class FieldChecker:
    """Reads fields from a request object, collecting one message list per bad field."""

    def __init__(self, body: Mapping[str, Any], prefix: str = "") -> None:
        self.body = body
        self.prefix = prefix
        self.errors: dict[str, list[str]] = {}

    def fail(self, name: str, message: str) -> None:
        self.errors.setdefault(self.prefix + name, []).append(message)

    def required_str(self, name: str) -> str:
        value = self.body.get(name)
        if not isinstance(value, str) or not value:
            self.fail(name, f"{name} is required and must be a non-empty string.")
            return ""
        return value

    def optional_str(self, name: str) -> str | None:
        value = self.body.get(name)
        if value is not None and not isinstance(value, str):
            self.fail(name, f"{name} must be a string.")
            return None
        return value

    def optional_time(self, name: str) -> None:
        value = self.body.get(name)
        if value is not None and not _is_rfc3339(value):
            self.fail(name, f"{name} must be an RFC 3339 date-time string.")

    def uuid(self, name: str) -> str:
        value = self.body.get(name)
        if not isinstance(value, str) or not _UUID.match(value):
            self.fail(name, f"{name} is required and must be a UUID string.")
            return ""
        return value.lower()

    def required_number(self, name: str) -> Decimal:
        value = self.body.get(name)
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            self.fail(name, f"{name} is required and must be a JSON number.")
            return Decimal(0)
        return Decimal(value)

    def optional_number(self, name: str) -> Decimal | None:
        return None if self.body.get(name) is None else self.required_number(name)

    def choice(self, name: str, allowed: frozenset[str]) -> None:
        if self.body.get(name) not in allowed:
            self.fail(name, f"{name} must be one of: {', '.join(sorted(allowed))}.")

    def string_map(self, name: str) -> None:
        value = self.body.get(name)
        if value is None:
            return
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            self.fail(name, f"{name} must be an object whose values are all strings.")

    def done(self) -> None:
        if self.errors:
            raise validation_error(self.errors)


def validation_error(errors: Mapping[str, list[str]]) -> SandboxError:
    """A 422 problem naming every bad field."""
    return SandboxError(
        422,
        "One or more validation errors occurred.",
        "Invalid fields: " + ", ".join(errors),
        errors=errors,
    )


def validate_adjustment(body: Mapping[str, Any]) -> AdjustmentRequest:
    check = FieldChecker(body)
    transaction_id = check.uuid("transaction_id")
    asset = check.required_str("asset")
    amount = check.required_number("amount")
    check.choice("reason", REASONS)
    account_name = check.optional_str("account_name") or "default"
    check.optional_str("description")
    check.optional_time("effective_at")
    check.optional_time("expires_at")
    check.string_map("metadata")
    check.done()
    return AdjustmentRequest(transaction_id, asset, amount, account_name)


def validate_usage_event(
    body: object, index: int
) -> tuple[UsageEvent | None, dict[str, list[str]]]:
    prefix = f"events[{index}]."
    if not isinstance(body, dict):
        return None, {prefix.rstrip("."): ["each event must be an object."]}
    check = FieldChecker(body, prefix)
    event_id = check.required_str("id")
    check.required_str("event_type")
    if not _is_rfc3339(body.get("occurred_at")):
        check.fail("occurred_at", "occurred_at is required and must be an RFC 3339 date-time.")
    check.optional_str("subject")
    check.optional_str("description")
    data = body.get("data")
    if data is None:
        data = {}
    elif not isinstance(data, dict):
        check.fail("data", "data must be an object.")
        data = {}
    data_check = FieldChecker(data, prefix + "data.")
    cost = data_check.optional_number("cost")
    if cost is not None and cost < 0:
        data_check.fail("cost", "cost must not be negative.")
    asset = data_check.optional_str("asset") or "USD"
    errors = check.errors | data_check.errors
    return UsageEvent(event_id, cost, asset, body), errors


# --- HTTP handlers ------------------------------------------------------------------


async def create_customer(request: Request) -> Response:
    body = await _json_object(request)
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
    limit = _query_int(request, "limit", DEFAULT_PAGE_LIMIT, 1, MAX_PAGE_LIMIT)
    offset = _query_int(request, "offset", 0, 0, None)
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
    body = await _json_object(request)
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
    body = await _json_object(request)
    customer_id = _usage_customer(state, body)
    events = body.get("events")
    if not isinstance(events, list) or not events:
        raise _invalid("events", "events is required and must be a non-empty list.")
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


async def control_faults(request: Request) -> Response:
    body = await _json_object(request)
    known = set(FaultSettings.__annotations__)
    unknown = sorted(set(body) - known)
    if unknown:
        raise _invalid(unknown[0], f"unknown fault setting; use one of {sorted(known)}.")
    settings: dict[str, Any] = {
        k: float(v) if isinstance(v, Decimal) else v for k, v in body.items()
    }
    state = _sandbox(request)
    state.inject(**settings)
    return ExactJSONResponse(asdict(state.faults))


async def control_state(request: Request) -> Response:
    return ExactJSONResponse(_sandbox(request).snapshot())


async def control_reset(request: Request) -> Response:
    _sandbox(request).reset()
    return ExactJSONResponse({"reset": True})


async def control_add_customer(request: Request) -> Response:
    body = await _json_object(request)
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


def _usage_customer(state: SandboxState, body: Mapping[str, Any]) -> str:
    customer_id = body.get("customer_id")
    if isinstance(customer_id, str) and customer_id:
        return state.customer(customer_id).id
    external_id = body.get("customer_external_id")
    if isinstance(external_id, str) and external_id:
        return state.find_by_external_id(external_id).id
    raise _invalid("customer_id", "customer_id or customer_external_id is required.")


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = loads_exact(await request.body())
    except ValueError as exc:
        raise SandboxError(400, "Malformed JSON", f"The body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise _invalid("body", "The body must be a JSON object.")
    return body


def _query_int(request: Request, name: str, default: int, low: int, high: int | None) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    if not text.isdigit() or int(text) < low or (high is not None and int(text) > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise _invalid(name, f"{name} must be an integer {bounds}.")
    return int(text)


def _invalid(name: str, message: str) -> SandboxError:
    return validation_error({name: [message]})


def _sandbox(request: Request) -> SandboxState:
    state = request.app.state.sandbox
    if not isinstance(state, SandboxState):
        raise TypeError("app.state.sandbox is not a SandboxState")
    return state


async def _problem_from_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, SandboxError):
        return problem(exc.status_code, exc.title, exc.detail, errors=exc.errors)
    if isinstance(exc, HTTPException):
        return problem(exc.status_code, str(exc.detail), headers=exc.headers)
    raise exc


# --- auth and faults ----------------------------------------------------------------


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
    headers = {} if retry_after is None else {"Retry-After": _seconds_text(retry_after)}
    return problem(429, "Too Many Requests", "sandbox fault: rate_limit_next", headers=headers)


def _headers_only(send: Send) -> Send:
    """A send that passes the status line and headers on and loses the body.

    The app then returns without completing its response, so uvicorn closes the
    connection and the client reads a Content-Length it never receives.
    """

    async def send_start_only(message: Message) -> None:
        if message["type"] == "http.response.start":
            await send(message)

    return send_start_only


# --- building and serving -----------------------------------------------------------


def create_sandbox_app(
    state: SandboxState | None = None,
    *,
    api_key: str | None = "key_sandbox",
    duplicate_status: int = 409,
) -> Starlette:
    """The sandbox as a Starlette app; its state is `app.state.sandbox`."""
    if not 200 <= duplicate_status <= 599:
        raise _invalid("duplicate_status", "duplicate_status must be a 2xx, 4xx or 5xx code.")
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


# --- small helpers ------------------------------------------------------------------


def _check_faults(faults: Faults) -> None:
    counts = {
        "fail_next": faults.fail_next,
        "rate_limit_next": faults.rate_limit_next,
        "drop_next": faults.drop_next,
    }
    for name, count in counts.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise _invalid(name, f"{name} must be a whole number, 0 or more.")
    if not isinstance(faults.fail_status, int) or not 100 <= faults.fail_status <= 599:
        raise _invalid("fail_status", "fail_status must be an HTTP status code.")
    if not _is_seconds(faults.delay):
        raise _invalid("delay", "delay must be a number of seconds, 0 or more.")
    if faults.retry_after is not None and not _is_seconds(faults.retry_after):
        raise _invalid("retry_after", "retry_after must be a number of seconds, 0 or more.")
    if faults.only is not None and faults.only not in FAULT_GROUPS:
        raise _invalid("only", f"only must be one of: {', '.join(sorted(FAULT_GROUPS))}.")


def _is_seconds(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def _seconds_text(seconds: float) -> str:
    """Retry-After text: whole seconds as an integer, anything finer as a decimal."""
    return str(int(seconds)) if seconds == int(seconds) else str(seconds)


def _is_rfc3339(value: object) -> bool:
    if not isinstance(value, str) or not _RFC3339.match(value):
        return False
    try:
        datetime.fromisoformat(value.upper())
    except ValueError:
        return False
    return True


def _account_json(account_id: str, available: Decimal) -> dict[str, Any]:
    name, _, asset = account_id.rpartition(":")
    return {"id": account_id, "name": name, "asset": asset, "available": available}


def _new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(26))


def _now() -> datetime:
    return datetime.now(UTC)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


# --- assets -------------------------------------------------------------------------

# ISO 4217 currencies whose minor unit is not two decimal places. The sandbox answers
# `GET /assets/{code}` for these with their ISO exponent, for any other three-letter
# currency code with 2, and for custom assets with what `add_asset` (or
# `POST /_sandbox/assets`) gave them. Any other code is answered with precision 2, or,
# with `strict_assets` set, 404 as in Credyt.
ISO_ZERO_DECIMAL = frozenset(
    "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split()
)
ISO_THREE_DECIMAL = frozenset("BHD IQD JOD KWD LYD OMR TND".split())
ISO_FOUR_DECIMAL = frozenset("CLF UYW".split())
_CURRENCY_CODE = re.compile(r"^[A-Z]{3}$")
_CUSTOM_CODE = re.compile(r"^[A-Za-z0-9_]{2,32}$")
_SANDBOX_EPOCH = "2025-01-01T00:00:00.000000Z"


def iso_precision(code: str) -> int | None:
    if not _CURRENCY_CODE.match(code):
        return None
    if code in ISO_ZERO_DECIMAL:
        return 0
    if code in ISO_THREE_DECIMAL:
        return 3
    if code in ISO_FOUR_DECIMAL:
        return 4
    return 2


async def get_asset(request: Request) -> Response:
    return ExactJSONResponse(_sandbox(request).asset(request.path_params["asset_code"]))


async def control_add_asset(request: Request) -> Response:
    body = await _json_object(request)
    check = FieldChecker(body)
    code = check.required_str("code")
    precision = body.get("precision")
    check.done()
    _sandbox(request).add_asset(code, precision)  # type: ignore[arg-type]
    return ExactJSONResponse({"code": code, "precision": precision}, status_code=201)
