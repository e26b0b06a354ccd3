"""The YAML config: interpolation, typed validation with file:line:key errors.

`credyt-bridge check` on the same files runs in tests/acceptance/test_check_command.py.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from bridge.config.loading import load_config, parse_config
from bridge.config.schema import Config
from bridge.config.yamlsource import parse_duration
from bridge.errors import ConfigError
from tests.helpers.config_files import EXAMPLE, EXAMPLE_ENV, ROOT, line_of

GOOD = """\
database: ${BRIDGE_DATABASE:-bridge.db}
credyt:
  api_url: ${CREDYT_API_URL:-https://api.credyt.ai}
  api_key: ${CREDYT_API_KEY}
delivery:
  max_attempts: 5
  backoff_initial: 500ms
  max_age: 2d
connectors:
  stripe:
    type: stripe
    secrets: ["${STRIPE_WEBHOOK_SECRET}", "whsec_${SUFFIX:-old}_abcdefghijklmnopqrstuvwx"]
    tolerance: 10m
    rules:
      - name: subscription-payment
        on: invoice.paid
        when: {billing_reason: [subscription_create, subscription_cycle]}
        credit:
          amount: paid
          expires: period_end
      - name: tokens
        on: [invoice.paid, invoice.payment_succeeded]
        credit:
          amount: "1000"
          per_unit: true
          asset: tok
          rate: "1.5"
          expires: 30d
"""
GOOD_ENV = {"CREDYT_API_KEY": "key_1", "STRIPE_WEBHOOK_SECRET": "whsec_1_abcdefghijklmnopqrstuvwx"}


def errors_of(text: str, env: dict[str, str] | None = None, file: str = "bridge.yaml") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, file, GOOD_ENV if env is None else env)
    return str(caught.value).splitlines()


def one_error(text: str, env: dict[str, str] | None = None) -> str:
    [message] = errors_of(text, env)
    return message


def with_line(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


# -- interpolation ---------------------------------------------------------------------


def test_variables_and_defaults_are_interpolated() -> None:
    config = parse_config(GOOD, "bridge.yaml", GOOD_ENV)
    assert config.database == "bridge.db"
    assert config.credyt.api_url == "https://api.credyt.ai"
    assert config.credyt.api_key == "key_1"
    assert config.connectors["stripe"].secrets == (
        "whsec_1_abcdefghijklmnopqrstuvwx",
        "whsec_old_abcdefghijklmnopqrstuvwx",
    )


def test_set_variables_override_defaults() -> None:
    env = GOOD_ENV | {
        "BRIDGE_DATABASE": "/data/b.db",
        "CREDYT_API_URL": "http://127.0.0.1:8090/",
        "SUFFIX": "new",
    }
    config = parse_config(GOOD, "bridge.yaml", env)
    assert config.database == "/data/b.db"
    assert config.credyt.api_url == "http://127.0.0.1:8090"
    assert config.connectors["stripe"].secrets == (
        "whsec_1_abcdefghijklmnopqrstuvwx",
        "whsec_new_abcdefghijklmnopqrstuvwx",
    )


def test_os_environ_is_the_default_source(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in GOOD_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SUFFIX", "fromenv")
    config = parse_config(GOOD, "bridge.yaml")
    assert config.connectors["stripe"].secrets[1] == "whsec_fromenv_abcdefghijklmnopqrstuvwx"


def test_values_are_typed() -> None:
    config = parse_config(GOOD, "bridge.yaml", GOOD_ENV)
    stripe = config.connectors["stripe"]
    assert stripe.tolerance == 600.0
    assert config.delivery.max_attempts == 5
    assert config.delivery.backoff_initial == 0.5
    assert config.delivery.max_age == 2 * 86400
    first, tokens = stripe.rules
    assert first.on == ("invoice.paid",)
    assert first.when.billing_reason == ("subscription_create", "subscription_cycle")
    assert first.credit is not None and first.credit.amount is None
    assert first.credit.expires.kind == "period_end"
    assert first.line == line_of(GOOD, "- name: subscription-payment")
    assert tokens.credit is not None
    assert tokens.credit.amount == Decimal("1000")
    assert tokens.credit.rate == Decimal("1.5")
    assert tokens.credit.per_unit is True
    assert tokens.credit.expires.seconds == 30 * 86400
    assert tokens.on == ("invoice.paid", "invoice.payment_succeeded")


# -- mistakes name the file, the line and the key ------------------------------------------


def test_unknown_key() -> None:
    text = with_line(GOOD, "  max_attempts: 5", "  max_atempts: 5")
    message = one_error(text)
    assert message.startswith(f"bridge.yaml:{line_of(text, 'max_atempts')}: delivery.max_atempts:")
    assert "unknown key" in message and "max_attempts" in message


def test_unknown_top_level_key() -> None:
    text = GOOD + "colour: blue\n"
    assert one_error(text).startswith(f"bridge.yaml:{line_of(text, 'colour')}: colour: unknown key")


def test_wrong_type() -> None:
    text = with_line(GOOD, "  max_attempts: 5", "  max_attempts: many")
    message = one_error(text)
    assert message.startswith(f"bridge.yaml:{line_of(text, 'many')}: delivery.max_attempts:")
    assert "whole number" in message


def test_mapping_expected() -> None:
    text = with_line(GOOD, "        when: {billing_reason", "        when: [billing_reason")
    text = text.replace("subscription_cycle]}", "subscription_cycle]]")
    message = one_error(text)
    assert message.startswith(
        f"bridge.yaml:{line_of(text, 'when:')}: connectors.stripe.rules[0].when:"
    )
    assert "mapping" in message


def test_missing_secret_variable() -> None:
    message = one_error(GOOD, {"CREDYT_API_KEY": "key_1"})
    line = line_of(GOOD, "secrets:")
    assert message.startswith(f"bridge.yaml:{line}: connectors.stripe.secrets[0]:")
    assert "STRIPE_WEBHOOK_SECRET" in message and "not set" in message


def test_no_secrets_at_all() -> None:
    text = with_line(
        GOOD,
        '    secrets: ["${STRIPE_WEBHOOK_SECRET}", "whsec_${SUFFIX:-old}_abcdefghijklmnopqrstuvwx"]'
        "\n",
        "",
    )
    message = one_error(text)
    assert "connectors.stripe.secrets: at least one" in message


def test_rule_naming_an_unknown_event_type() -> None:
    text = with_line(GOOD, "        on: invoice.paid\n", "        on: invoice.payed\n")
    message = one_error(text)
    assert message.startswith(
        f"bridge.yaml:{line_of(text, 'invoice.payed')}: connectors.stripe.rules[0].on:"
    )
    assert "'invoice.payed'" in message and "invoice.paid" in message


def test_duplicate_rule_names() -> None:
    text = with_line(GOOD, "- name: tokens", "- name: subscription-payment")
    message = one_error(text)
    second = [n for n, line in enumerate(text.splitlines(), 1) if "- name: subscription" in line]
    assert len(second) == 2
    assert message.startswith(f"bridge.yaml:{second[1]}: connectors.stripe.rules[1].name:")
    assert "'subscription-payment'" in message


@pytest.mark.parametrize(("key", "old"), [("amount", 'amount: "1000"'), ("rate", 'rate: "1.5"')])
def test_float_amounts_must_be_strings(key: str, old: str) -> None:
    text = with_line(GOOD, old, f"{key}: 10.5")
    message = one_error(text)
    assert message.startswith(
        f"bridge.yaml:{line_of(text, f'{key}: 10.5')}: connectors.stripe.rules[1].credit.{key}:"
    )
    assert "string" in message and "float" in message


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("    tolerance: 10m", "    tolerance: 10 minutes", "connectors.stripe.tolerance"),
        ("  backoff_initial: 500ms", "  backoff_initial: soon", "delivery.backoff_initial"),
        ("          expires: 30d", "          expires: 30days", "connectors.stripe.rules[1]"),
    ],
)
def test_bad_duration(old: str, new: str, key: str) -> None:
    text = with_line(GOOD, old, new)
    message = one_error(text)
    assert message.startswith(f"bridge.yaml:{line_of(text, new.strip())}: {key}")
    assert "duration" in message


def test_several_errors_are_reported_at_once() -> None:
    text = with_line(GOOD, "  max_attempts: 5", "  max_attempts: many")
    text = with_line(text, "        on: invoice.paid\n", "        on: invoice.payed\n")
    text = with_line(text, 'amount: "1000"', "amount: 10.5")
    text = with_line(text, "    tolerance: 10m", "    tolerance: long")
    messages = errors_of(text, {"CREDYT_API_KEY": "k"})
    assert len(messages) == 5, messages
    joined = "\n".join(messages)
    for key in (
        "delivery.max_attempts",
        "connectors.stripe.rules[0].on",
        "connectors.stripe.rules[1].credit.amount",
        "connectors.stripe.tolerance",
        "connectors.stripe.secrets[0]",
    ):
        assert f": {key}:" in joined, key
    assert all(re.match(r"^bridge\.yaml:\d+: \S+: ", m) for m in messages)


def test_invalid_yaml_names_the_line() -> None:
    text = GOOD + "connectors: [\n"
    with pytest.raises(ConfigError, match=r"^bridge\.yaml:\d+: not valid YAML"):
        parse_config(text, "bridge.yaml", GOOD_ENV)


def test_no_connectors() -> None:
    assert "connectors: at least one connector" in one_error(
        "credyt: {api_key: k}\nconnectors: {}\n", {}
    )


def test_a_rule_with_both_credit_and_reverse() -> None:
    text = with_line(
        GOOD,
        "          expires: period_end\n",
        "          expires: period_end\n        reverse: {}\n",
    )
    assert "exactly one of credit: or reverse:" in one_error(text)


def test_load_config_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "conf.yaml"
    path.write_text(with_line(GOOD, "  max_attempts: 5", "  max_attempts: x"))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}:6: delivery.max_attempts"):
        load_config(path, GOOD_ENV)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml", GOOD_ENV)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("12h", 43200),
        ("30d", 2592000),
        ("2w", 1209600),
        ("250ms", 0.25),
        (5, 5),
    ],
)
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


# -- config.example.yaml -----------------------------------------------------------------------


def example(env: dict[str, str]) -> Config:
    return load_config(EXAMPLE, env)


def test_example_loads_with_the_documented_variables() -> None:
    config = example(EXAMPLE_ENV)
    assert config.database == "bridge.db"
    assert config.credyt.api_url == "https://api.credyt.ai"
    assert config.credyt.api_key == "key_test_example"
    assert sorted(config.connectors) == ["paddle", "stripe"]
    stripe = config.connectors["stripe"]
    assert stripe.secrets == ("whsec_example_abcdefghijklmnopqrstuvwx",)
    assert stripe.tolerance == 300
    rule = next(r for r in stripe.rules if "invoice.paid" in r.on)
    assert rule.credit is not None and rule.credit.amount is None
    assert rule.credit.asset is None  # the invoice currency
    assert rule.credit.reason == "external_topup"
    assert config.connectors["paddle"].secrets == ("pdl_ntfset_example_abcdefghijklmnopqrstuvwx",)


def test_example_honours_the_optional_variables() -> None:
    config = example(
        EXAMPLE_ENV | {"CREDYT_API_URL": "http://127.0.0.1:8090", "BRIDGE_DATABASE": "/x/b.db"}
    )
    assert config.credyt.api_url == "http://127.0.0.1:8090"
    assert config.database == "/x/b.db"


def test_example_without_variables_names_each_missing_one() -> None:
    with pytest.raises(ConfigError) as caught:
        example({})
    text = str(caught.value)
    for name in EXAMPLE_ENV:
        assert name in text


def test_the_demo_embeds_the_same_example() -> None:
    assert (ROOT / "bridge" / "config" / "config.example.yaml").read_text() == EXAMPLE.read_text()
