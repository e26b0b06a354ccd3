"""Config files the config tests and the `check` command tests share: the shipped
example with the variables it documents, and a config whose secrets interpolate."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config.example.yaml"
EXAMPLE_ENV = {
    "CREDYT_API_KEY": "key_test_example",
    "STRIPE_WEBHOOK_SECRET": "whsec_example_abcdefghijklmnopqrstuvwx",
    "PADDLE_WEBHOOK_SECRET": "pdl_ntfset_example_abcdefghijklmnopqrstuvwx",
}

# `secrets: ["${OLD:-}", "${NEW}"]`: OLD unset interpolates to an empty secret.
NEW = "whsec_" + "n" * 32
SECRETS_TEXT = """\
credyt:
  api_url: http://127.0.0.1:9
  api_key: ${CREDYT_API_KEY}
server:
  admin_token: ${ADMIN_TOKEN:-}
connectors:
  stripe:
    type: stripe
    secrets: ["${OLD:-}", "${NEW}"]
"""
SECRETS_ENV = {
    "CREDYT_API_KEY": "key_1",
    "NEW": NEW,
    "OLD": "whsec_" + "o" * 32,
    "ADMIN_TOKEN": "t" * 24,
}


def line_of(text: str, fragment: str) -> int:
    for number, line in enumerate(text.splitlines(), 1):
        if fragment in line:
            return number
    raise AssertionError(fragment)
