"""Reading Paddle Billing payloads: exponents, ids, custom data, items, RFC 3339 times."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bridge.errors import EventError
from bridge.money import checked_currency
from connectors.base import Raw, checked_moment, whole_number

# Currencies whose amounts have no decimals. Everything else Paddle sells in has two.
ZERO_DECIMAL = frozenset({"JPY", "KRW"})


def currency_exponent(currency: str) -> int:
    """How many decimals Paddle's amounts in `currency` have."""
    return 0 if checked_currency(currency) in ZERO_DECIMAL else 2


def required_str(obj: Raw, key: str, what: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise EventError(f"{what} has no {key}")
    return value


def optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def str_map(value: Any) -> dict[str, str]:
    """custom_data as str -> str: strings as they are, anything else as compact JSON."""
    if not isinstance(value, Mapping):
        return {}
    return {
        str(k): v if isinstance(v, str) else json.dumps(v, separators=(",", ":"), sort_keys=True)
        for k, v in value.items()
        if v is not None
    }


def transaction_items(txn: Raw) -> list[Raw]:
    items = txn.get("items")
    return [item for item in items if isinstance(item, Mapping)] if isinstance(items, list) else []


def item_quantity(item: Raw) -> int:
    return whole_number(item.get("quantity"))


def parse_time(value: Any) -> datetime | None:
    """An aware datetime from an RFC 3339 string (naive ones are taken as UTC)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def checked_time(what: str, value: Any) -> datetime | None:
    """`parse_time`, refusing a moment no real payment has (year 9999): EventError."""
    return checked_moment(what, value, parse_time(value))
