"""Reading Stripe payloads of every API version: exponents, ids, metadata, lines, periods."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bridge.errors import EventError
from bridge.money import checked_currency
from connectors.base import Raw, mapping, moment_of_unix, whole_number

_ACCOUNT_ID = re.compile(r"^acct_[A-Za-z0-9]{1,64}$")  # a Stripe connected account

# Currencies whose API amount is in whole units (exponent 0).
ZERO_DECIMAL = frozenset("BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split())
# Currencies with three decimals in the API (exponent 3).
THREE_DECIMAL = frozenset("BHD JOD KWD OMR TND".split())


def currency_exponent(currency: str) -> int:
    """How many decimals Stripe's API amounts in `currency` have."""
    code = checked_currency(currency)
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def required_str(obj: Raw, key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise EventError(f"{obj.get('object', 'object')} has no {key}")
    return value


def id_of(value: Any) -> str | None:
    """An id whether the field is a plain id or an expanded object."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, Mapping) and isinstance(value.get("id"), str):
        return str(value["id"])
    return None


def unique_ids(*values: str | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


def first_charge(intent: Raw) -> str | None:
    """Before 2022-11-15 a PaymentIntent lists its charges; later ones name latest_charge."""
    data = mapping(intent.get("charges")).get("data")
    if isinstance(data, list) and data and isinstance(data[0], Mapping):
        return id_of(data[0].get("id"))
    return None


def str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items() if v is not None}


def subscription_details_of(invoice: Raw) -> Raw:
    """basil on: invoice.parent.subscription_details; before: invoice.subscription_details."""
    parent = invoice.get("parent")
    if isinstance(parent, Mapping):
        details = parent.get("subscription_details")
        if isinstance(details, Mapping):
            return details
    details = invoice.get("subscription_details")
    return details if isinstance(details, Mapping) else {}


def invoice_lines(invoice: Raw) -> list[Raw]:
    lines = invoice.get("lines")
    data = lines.get("data") if isinstance(lines, Mapping) else None
    return [line for line in data if isinstance(line, Mapping)] if isinstance(data, list) else []


def line_price(line: Raw) -> tuple[str | None, str | None]:
    """(price id, product id) of a line in either shape."""
    pricing = line.get("pricing")
    if isinstance(pricing, Mapping) and isinstance(pricing.get("price_details"), Mapping):
        details = pricing["price_details"]
        return id_of(details.get("price")), id_of(details.get("product"))
    price = line.get("price")
    if isinstance(price, Mapping):
        return id_of(price.get("id")), id_of(price.get("product"))
    return id_of(price), None


def line_quantity(line: Raw) -> int:
    return whole_number(line.get("quantity"))


def period_end_of(lines: list[Raw]) -> datetime | None:
    ends = [
        line["period"]["end"]
        for line in lines
        if isinstance(line.get("period"), Mapping) and isinstance(line["period"].get("end"), int)
    ]
    return moment_of_unix("the invoice line's period end", max(ends)) if ends else None


def connected_account(raw: Mapping[str, Any]) -> str | None:
    """The event's `account` (acct_...): set when a Connect platform's endpoint receives an
    event of one of its connected accounts, absent (or null) for the platform's own.
    Anything else fails the event: read as "none", it would credit the platform."""
    account = raw.get("account")
    if account is None:
        return None
    if not isinstance(account, str) or not _ACCOUNT_ID.match(account):
        raise EventError(
            f"the event's account {str(account)[:80]!r} is not a Stripe account id (acct_...)"
        )
    return account


def application_of(obj: Mapping[str, Any]) -> str | None:
    """The Connect application (ca_...) that created a PaymentIntent or Charge. A Checkout
    Session has no `application` of its own: it is read from its PaymentIntent when that
    is expanded (webhooks send only its id, so a session's usually stays None)."""
    found = id_of(obj.get("application"))
    if found is None and isinstance(obj.get("payment_intent"), Mapping):
        found = id_of(obj["payment_intent"].get("application"))
    return found
