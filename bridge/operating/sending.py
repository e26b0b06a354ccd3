"""Producing signed test webhooks, as a PSP would send them (`credyt-bridge send`, the demo)."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import httpx

from bridge.errors import BridgeError
from connectors import SampleRequest, connector_type


@dataclass(frozen=True)
class SendRequest:
    psp: str
    event_type: str
    url: str
    secret: str
    customer: str | None = None  # Credyt customer id, put in the payment's metadata
    psp_customer: str | None = None
    amount: str = "20.00"  # major units
    currency: str = "USD"
    event_id: str | None = None
    object_id: str | None = None
    payment: str | None = None  # for reversals: the payment they reverse
    tax: str = "0"  # major units of tax inside `amount` (tax-exclusive pricing)


def new_id(prefix: str) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return prefix + "".join(secrets.choice(alphabet) for _ in range(24))


def minor_units(amount: str, psp: str, currency: str, option: str = "--amount") -> int:
    try:
        value = Decimal(amount).scaleb(connector_type(psp).exponent(currency))
    except InvalidOperation as exc:
        raise BridgeError(f"{option} {amount!r} is not a decimal number") from exc
    if not value.is_finite():
        raise BridgeError(f"{option} {amount!r} is not a finite amount")
    if value < 0:
        raise BridgeError(f"{option} {amount} is negative; PSPs send refunds as their own events")
    if value != value.to_integral_value():
        raise BridgeError(f"{option} {amount} has more decimals than {currency.upper()} allows")
    return int(value)


def build_webhook(req: SendRequest) -> tuple[bytes, dict[str, str]]:
    kind = connector_type(req.psp)
    prefix = next(
        (p for start, p in kind.object_prefixes.items() if req.event_type.startswith(start)),
        "obj_",
    )
    amount_minor = minor_units(req.amount, req.psp, req.currency)
    tax_minor = minor_units(req.tax, req.psp, req.currency, "--tax")
    if tax_minor > amount_minor:
        raise BridgeError(f"--tax {req.tax} is more than --amount {req.amount}, which includes it")
    request = SampleRequest(
        event_type=req.event_type,
        event_id=req.event_id or new_id("evt_"),
        object_id=req.object_id or new_id(prefix),
        customer=req.customer,
        psp_customer=req.psp_customer,
        amount_minor=amount_minor,
        currency=req.currency,
        payment=req.payment,
        tax_minor=tax_minor,
    )
    try:
        event = kind.sample(request)
    except (ValueError, TypeError) as exc:
        raise BridgeError(str(exc)) from exc
    body = json.dumps(event).encode()
    return body, kind.sign(body, req.secret)


def send_webhook(req: SendRequest, timeout: float = 10.0) -> tuple[int, str]:
    body, headers = build_webhook(req)
    try:
        response = httpx.post(req.url, content=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise BridgeError(f"could not reach {req.url}: {exc}") from exc
    return response.status_code, response.text
