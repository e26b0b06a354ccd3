"""Secrets that interpolate to nothing, or to something short, are refused at config load.

`secrets: ["${OLD:-}", "${NEW}"]` with OLD unset once gave the connector an empty secret,
and a webhook signed with the empty key was accepted. Each refusal names the file, the
line and the key, and never prints the secret.
"""

from __future__ import annotations

import pytest

from bridge.config.loading import MIN_SECRET_LENGTH, parse_config
from bridge.errors import ConfigError
from tests.helpers.config_files import NEW
from tests.helpers.config_files import SECRETS_ENV as ENV
from tests.helpers.config_files import SECRETS_TEXT as TEXT


def errors(env: dict[str, str], text: str = TEXT) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "bridge.yaml", env)
    return str(caught.value).splitlines()


def test_the_full_config_loads() -> None:
    config = parse_config(TEXT, "bridge.yaml", ENV)
    assert config.connectors["stripe"].secrets == (ENV["OLD"], NEW)


def test_an_unset_old_secret_with_an_empty_default_is_refused_with_file_and_line() -> None:
    env = {k: v for k, v in ENV.items() if k != "OLD"}
    [message] = errors(env)
    assert message.startswith("bridge.yaml:9: connectors.stripe.secrets[0]:"), message
    assert "empty" in message


def test_an_empty_variable_is_reported_as_empty_not_as_unset() -> None:
    [message] = errors(ENV | {"NEW": ""})
    assert message.startswith("bridge.yaml:9: connectors.stripe.secrets[1]:"), message
    assert "NEW is empty" in message and "not set" not in message


@pytest.mark.parametrize("short", ["x", "whsec_123", "whsec_" + "s" * (MIN_SECRET_LENGTH - 7)])
def test_a_short_secret_is_refused_without_printing_it(short: str) -> None:
    [message] = errors(ENV | {"OLD": short})
    assert message.startswith("bridge.yaml:9: connectors.stripe.secrets[0]:"), message
    assert f"at least {MIN_SECRET_LENGTH} characters" in message
    assert short not in message


@pytest.mark.parametrize(
    "secret",
    [
        "whsec_" + "A1b2C3d4" * 4,  # a dashboard endpoint secret: whsec_ and 32 characters
        "whsec_" + "0123456789abcdef" * 4,  # `stripe listen`: whsec_ and 64 hex digits
        "pdl_ntfset_01hs0t3tw21j988db1pam5xg8m_" + "K7pQ2wXr9LmN4vB8sT1yZ6cF3hJ0dGaE",
    ],
)
def test_real_secret_shapes_pass(secret: str) -> None:
    config = parse_config(TEXT, "bridge.yaml", ENV | {"OLD": secret})
    assert config.connectors["stripe"].secrets[0] == secret


def test_an_empty_credyt_api_key_is_refused() -> None:
    [message] = errors(ENV | {"CREDYT_API_KEY": ""})
    assert message.startswith("bridge.yaml:3: credyt.api_key:"), message
    assert "CREDYT_API_KEY is empty" in message
    text = TEXT.replace("${CREDYT_API_KEY}", "${CREDYT_API_KEY:-}")
    [message] = errors({k: v for k, v in ENV.items() if k != "CREDYT_API_KEY"}, text)
    assert message.startswith("bridge.yaml:3: credyt.api_key:"), message
    assert "empty" in message


def test_an_admin_token_that_interpolates_to_empty_is_refused() -> None:
    [message] = errors({k: v for k, v in ENV.items() if k != "ADMIN_TOKEN"})
    assert message.startswith("bridge.yaml:5: server.admin_token:"), message
    assert "empty" in message


def test_without_resolving_secrets_only_the_secret_keys_may_stay_unset() -> None:
    """Read-only commands load this way: the secrets' variables may be missing, nothing else."""
    config = parse_config(TEXT, "bridge.yaml", {}, resolve_secrets=False)
    assert config.credyt.api_key == "${CREDYT_API_KEY}"  # as written, never a usable key
    assert config.connectors["stripe"].secrets[1] == "${NEW}"
    assert set(config.unresolved) == {
        "bridge.yaml:3: credyt.api_key: environment variable CREDYT_API_KEY is not set",
        "bridge.yaml:5: server.admin_token: is empty (remove the key to turn the admin API off)",
        "bridge.yaml:9: connectors.stripe.secrets[0]: is empty (an unset variable with an empty "
        "${VAR:-} default?)",
        "bridge.yaml:9: connectors.stripe.secrets[1]: environment variable NEW is not set",
    }
    with pytest.raises(ConfigError, match="DB_PATH is not set"):
        parse_config("database: ${DB_PATH}\n" + TEXT, "bridge.yaml", {}, resolve_secrets=False)
    assert parse_config(TEXT, "bridge.yaml", ENV, resolve_secrets=False).unresolved == ()
