"""`credyt.max_rate`: a rate above 0 per second, unset by default, precise errors."""

from __future__ import annotations

import pytest

from bridge.config.loading import parse_config
from tests.helpers.config_files import line_of
from tests.unit.test_config import GOOD, GOOD_ENV, one_error, with_line

KEY_LINE = "  api_key: ${CREDYT_API_KEY}"


def with_max_rate(value: str) -> str:
    return with_line(GOOD, KEY_LINE, f"{KEY_LINE}\n  max_rate: {value}")


def test_max_rate_is_unset_by_default() -> None:
    assert parse_config(GOOD, "bridge.yaml", GOOD_ENV).credyt.max_rate is None


@pytest.mark.parametrize(("text", "rate"), [("500", 500.0), ("12.5", 12.5), ('"40"', 40.0)])
def test_max_rate_is_read(text: str, rate: float) -> None:
    config = parse_config(with_max_rate(text), "bridge.yaml", GOOD_ENV)
    assert config.credyt.max_rate == rate


@pytest.mark.parametrize("bad", ["0", "-3", "fast", "true", ".nan", ".inf", "2000000"])
def test_a_bad_max_rate_names_the_line_and_key(bad: str) -> None:
    text = with_max_rate(bad)
    message = one_error(text)
    assert message.startswith(f"bridge.yaml:{line_of(text, 'max_rate')}: credyt.max_rate:")
    assert "per second" in message
