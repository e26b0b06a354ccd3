"""Exact money: PSP minor units to Credyt major units (each connector knows its exponents).

No floats anywhere: amounts arrive as integers or strings of minor units and leave as
Decimal major units.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from bridge.errors import EventError

# The shape of an ISO 4217 code; anything else in a PSP payload fails the event.
_CURRENCY = re.compile(r"^[A-Za-z]{3}$")
# No PSP amount has more than 18 digits (Stripe's limit is 8). Longer ones are broken
# payloads, and they would meet Decimal's 28-digit context once multiplied by a rate.
MAX_MINOR_DIGITS = 18


def checked_currency(currency: str) -> str:
    """The upper-case code of an ISO 4217 currency; EventError for anything else."""
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise EventError(f"currency {currency!r} is not a three-letter ISO 4217 code")
    return currency.upper()


def parse_minor(value: object, *, field: str) -> int:
    """An integer amount of minor units from a PSP payload (int or digit string)."""
    if isinstance(value, bool):
        raise EventError(f"{field} is not an amount: {value!r}")
    if isinstance(value, int):
        if len(str(abs(value))) > MAX_MINOR_DIGITS:
            raise EventError(f"{field} has more than {MAX_MINOR_DIGITS} digits: not an amount")
        return value
    if isinstance(value, str):
        text = value.strip()
        digits = text.removeprefix("-")
        if digits.isascii() and digits.isdigit():
            if len(digits) > MAX_MINOR_DIGITS:
                raise EventError(f"{field} has more than {MAX_MINOR_DIGITS} digits: not an amount")
            return int(text)
    raise EventError(f"{field} is not an integer amount of minor units: {value!r}")


def to_major(minor: int, exponent: int) -> Decimal:
    """Minor units to an exact Decimal of major units: 4999, 2 -> Decimal('49.99')."""
    # Built from its digits, not with scaleb(), which rounds to the context's 28 digits.
    sign, digits, _ = Decimal(minor).as_tuple()
    return Decimal((sign, digits, -exponent))


def parse_decimal(value: object, *, field: str) -> Decimal:
    """A Decimal from config text or a number, never through float."""
    if isinstance(value, bool) or isinstance(value, float):
        raise EventError(f"{field}: write decimal amounts as strings or integers, got {value!r}")
    try:
        result = Decimal(str(value))
    except InvalidOperation as exc:
        raise EventError(f"{field} is not a decimal number: {value!r}") from exc
    if not result.is_finite():
        raise EventError(f"{field} is not a finite number: {value!r}")
    return result


def format_amount(amount: Decimal) -> str:
    """Plain decimal text, no exponent, no trailing zeros: 49.990 -> '49.99', 1E+6 -> '1000000'."""
    normalized = amount.normalize()
    if normalized == normalized.to_integral_value():
        return str(normalized.quantize(Decimal(1)))
    return format(normalized, "f")


def encode_json(value: object) -> str:
    """Compact JSON where Decimal amounts are written as exact number literals."""
    import json

    if isinstance(value, Decimal):
        return format_amount(value)
    if isinstance(value, dict):
        items = (f"{json.dumps(str(k))}:{encode_json(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(encode_json(v) for v in value) + "]"
    if isinstance(value, float):  # no float reaches Credyt: it would not be exact
        raise TypeError(f"encode_json refuses the float {value!r}: use Decimal")
    return json.dumps(value)
