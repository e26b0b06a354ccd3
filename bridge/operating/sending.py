"""Producing signed test webhooks, as a PSP would send them (`credyt-bridge send`, the demo)."""

from __future__ import annotations

import difflib
import json
import secrets
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import httpx

from bridge.errors import BridgeError
from connectors import SampleRequest, connector_type, known_event_types


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


@dataclass(frozen=True)
class Webhook:
    """A signed test webhook, and the ids it carries (to paste into `events show`)."""

    event_id: str
    body: bytes
    headers: dict[str, str]
    object_ids: dict[str, str]  # what the connector reads from it: invoice, customer...


def sample_event_types(psp: str) -> list[str]:
    """The event types `send` produces for `psp`: the ones its rules may name."""
    return sorted(known_event_types(psp))


def check_event_type(psp: str, event_type: str) -> None:
    """BridgeError naming the closest supported types if `send` cannot produce it."""
    known = sample_event_types(psp)
    if event_type in known:
        return
    close = difflib.get_close_matches(event_type, known, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise BridgeError(
        f"send makes no {psp} event {event_type!r}; {hint}it makes: {', '.join(known)}"
    )


def object_ids(psp: str, event: dict[str, object]) -> dict[str, str]:
    """The ids the connector reads from `event` (payment, invoice, customer...)."""
    reader = connector_type(psp)(
        secrets=("unused-for-reading",),
        tolerance=0,
        customer_metadata_key="credyt_customer_id",
        mode="any",
    )
    try:
        normalized = reader.normalize(event)
    except (BridgeError, ValueError, KeyError, TypeError):  # ids are a courtesy, not a must
        return {}
    ids = dict(getattr(normalized, "object_ids", {}) or {})
    customer = getattr(normalized, "psp_customer_id", None)
    if customer:
        ids.setdefault("customer", customer)
    return ids


def build_webhook(req: SendRequest) -> tuple[bytes, dict[str, str]]:
    webhook = prepare_webhook(req)
    return webhook.body, webhook.headers


def prepare_webhook(req: SendRequest) -> Webhook:
    check_event_type(req.psp, req.event_type)
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
    return Webhook(
        event_id=request.event_id,
        body=body,
        headers=kind.sign(body, req.secret) if req.secret else {},
        object_ids=object_ids(req.psp, event),
    )


def send_webhook(req: SendRequest, timeout: float = 10.0) -> tuple[int, str]:
    status, answer, _ = send_prepared(req.url, prepare_webhook(req), timeout)
    return status, answer


def send_prepared(url: str, webhook: Webhook, timeout: float = 10.0) -> tuple[int, str, Webhook]:
    try:
        response = httpx.post(url, content=webhook.body, headers=webhook.headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise BridgeError(f"could not reach {url}: {exc}; is the bridge serving there?") from exc
    return response.status_code, response.text, webhook
