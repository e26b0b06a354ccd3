"""Exact money: minor units to major units, JSON without floats, proportions."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from bridge.errors import EventError
from bridge.money import (
    encode_json,
    format_amount,
    parse_decimal,
    parse_minor,
    to_major,
)
from bridge.processing.rules import proportional
from connectors.paddle import currency_exponent as paddle_exponent
from connectors.stripe import currency_exponent as stripe_exponent


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [
        ("usd", 2),
        ("EUR", 2),
        ("jpy", 0),
        ("KRW", 0),
        ("clp", 0),
        ("xpf", 0),
        ("kwd", 3),
        ("BHD", 3),
        ("tnd", 3),
        ("isk", 2),  # zero-decimal in ISO, two-decimal in Stripe's API
        ("HUF", 2),
        ("twd", 2),
    ],
)
def test_stripe_exponents(currency: str, exponent: int) -> None:
    assert stripe_exponent(currency) == exponent


@pytest.mark.parametrize(
    ("currency", "exponent"), [("JPY", 0), ("krw", 0), ("USD", 2), ("KWD", 2), ("EUR", 2)]
)
def test_paddle_exponents(currency: str, exponent: int) -> None:
    assert paddle_exponent(currency) == exponent


@pytest.mark.parametrize(
    ("minor", "exponent", "text"),
    [
        (0, 2, "0.00"),
        (4999, 2, "49.99"),
        (1, 2, "0.01"),
        (-250, 2, "-2.50"),
        (1500, 0, "1500"),
        (12345, 3, "12.345"),
        (1, 3, "0.001"),
        (10**20 + 1, 2, "1000000000000000000.01"),
    ],
)
def test_to_major_is_exact(minor: int, exponent: int, text: str) -> None:
    major = to_major(minor, exponent)
    assert isinstance(major, Decimal)
    assert major == Decimal(text)
    assert format(major, "f") == text


@pytest.mark.parametrize(("value", "minor"), [(4999, 4999), ("4999", 4999), ("-5", -5), (" 7 ", 7)])
def test_parse_minor_accepts_integers_and_digit_strings(value: object, minor: int) -> None:
    assert parse_minor(value, field="amount") == minor


@pytest.mark.parametrize(
    "value",
    [49.99, 1.0, True, False, None, "", "12.5", "1e3", "abc", "0x10", [1], {"a": 1}, "9" * 31],
)
def test_parse_minor_rejects_floats_bools_and_garbage(value: object) -> None:
    with pytest.raises(EventError, match="amount"):
        parse_minor(value, field="amount")


@pytest.mark.parametrize(("value", "text"), [("1.10", "1.10"), (3, "3"), ("-0.5", "-0.5")])
def test_parse_decimal(value: object, text: str) -> None:
    assert parse_decimal(value, field="rate") == Decimal(text)


@pytest.mark.parametrize("value", [0.1, True, "x", "NaN", "Infinity"])
def test_parse_decimal_refuses_floats_and_non_numbers(value: object) -> None:
    with pytest.raises(EventError):
        parse_decimal(value, field="rate")


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (Decimal("49.990"), "49.99"),
        (Decimal("20.00"), "20"),
        (Decimal("1E+6"), "1000000"),
        (Decimal("0.001"), "0.001"),
        (Decimal("-12.3450"), "-12.345"),
        (Decimal("1E-10"), "0.0000000001"),
        (Decimal("0"), "0"),
    ],
)
def test_format_amount_is_plain_and_exact(amount: Decimal, text: str) -> None:
    assert format_amount(amount) == text


def test_encode_json_writes_exact_number_literals() -> None:
    body = {"amount": Decimal("12.345"), "nested": [Decimal("0.1"), {"x": Decimal("1E+3")}], "n": 1}
    text = encode_json(body)
    assert text == '{"amount":12.345,"nested":[0.1,{"x":1000}],"n":1}'
    assert json.loads(text, parse_float=Decimal) == {
        "amount": Decimal("12.345"),
        "nested": [Decimal("0.1"), {"x": 1000}],
        "n": 1,
    }


def test_encode_json_refuses_floats() -> None:
    with pytest.raises(TypeError, match="float"):
        encode_json({"amount": 0.1})
    with pytest.raises(TypeError):
        encode_json({"metadata": {"nested": [1.5]}})


def test_encode_json_escapes_strings() -> None:
    text = encode_json({'a"b': 'line\n"quoted"', "none": None, "flag": True})
    assert json.loads(text) == {'a"b': 'line\n"quoted"', "none": None, "flag": True}


def test_sums_stay_exact_through_the_body() -> None:
    """0.1 + 0.2 is 0.30000000000000004 in floats; here it is 0.3 all the way to the wire."""
    total = to_major(10, 2) + to_major(20, 2)
    text = encode_json({"amount": total})
    assert text == '{"amount":0.3}'
    assert json.loads(text, parse_float=Decimal)["amount"] == Decimal("0.3")
    many = sum((to_major(1, 2) for _ in range(1000)), Decimal(0))
    assert encode_json({"amount": many}) == '{"amount":10}'


def test_a_huge_amount_keeps_every_digit() -> None:
    big = to_major(123456789012345678901234567, 2)
    assert encode_json({"amount": big}) == '{"amount":1234567890123456789012345.67}'


@pytest.mark.parametrize(
    ("original", "part", "whole", "result"),
    [
        ("49.99", 4999, 4999, "49.99"),
        ("49.99", 0, 4999, "0.00"),
        ("100", 1, 3, "33"),  # rounded to the original's places
        ("100.00", 1, 3, "33.33"),
        ("100.00", 2, 3, "66.67"),
        ("1500", 500, 1500, "500"),
        ("12.345", 1000, 12345, "1.000"),
        ("20.00", 1000, 2000, "10.00"),
        ("0.05", 1, 2, "0.02"),  # never past the original's places (half even), so
        # running totals of reversals end exactly at the credit
        ("0.05", 1, 3, "0.02"),  # inexact: rounded to the original's places
        ("1.00", 2, 3, "0.67"),
        ("1000000", 1, 4, "250000"),
    ],
)
def test_proportional(original: str, part: int, whole: int, result: str) -> None:
    value = proportional(Decimal(original), part, whole)
    assert value == Decimal(result)
    assert str(value) == result


def test_proportional_keeps_the_currency_places_of_a_recorded_credit() -> None:
    """A recorded credit has no trailing zeros (18.20 is "18.2"): the PSP currency's
    places still count, so 606/1820 of it is 6.06, not 6.1."""
    assert proportional(Decimal("18.2"), 606, 1820, 2) == Decimal("6.06")
    assert proportional(Decimal("18.2"), 606, 1820) == Decimal("6.1")


def test_proportional_of_a_converted_amount() -> None:
    """A credit of 49.99 USD at rate 1000 TOK, refunded 1000 of 4999 cents: exact tokens."""
    credit = Decimal("49.99") * Decimal("1000")
    assert proportional(credit, 1000, 4999) == Decimal("10000.00")
