"""The sandbox's wire format: exact JSON in and out, problem documents, and the
validation of request bodies into the fields that move money.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from bridge.errors import SandboxError

REASONS = frozenset({"gift", "external_topup", "external_refund", "other"})
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_PROBLEM_TYPES = {
    400: "https://tools.ietf.org/html/rfc9110#section-15.5.1",
    404: "https://tools.ietf.org/html/rfc9110#section-15.5.5",
    409: "https://tools.ietf.org/html/rfc9110#section-15.5.10",
    422: "https://tools.ietf.org/html/rfc9110#section-15.5.21",
    429: "https://tools.ietf.org/html/rfc6585#section-4",
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


def invalid(name: str, message: str) -> SandboxError:
    return validation_error({name: [message]})


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


async def json_object(request: Request) -> dict[str, Any]:
    try:
        body = loads_exact(await request.body())
    except ValueError as exc:
        raise SandboxError(400, "Malformed JSON", f"The body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise invalid("body", "The body must be a JSON object.")
    return body


def query_int(request: Request, name: str, default: int, low: int, high: int | None) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    if not text.isdigit() or int(text) < low or (high is not None and int(text) > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise invalid(name, f"{name} must be an integer {bounds}.")
    return int(text)


def _is_rfc3339(value: object) -> bool:
    if not isinstance(value, str) or not _RFC3339.match(value):
        return False
    try:
        datetime.fromisoformat(value.upper())
    except ValueError:
        return False
    return True


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
