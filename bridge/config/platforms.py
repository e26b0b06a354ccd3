"""The config keys of platforms and safety rails: which Credyt account a connector acts
for, Stripe Connect's account mapping, who may name the wallet, and amount limits.

`loading` calls these for each connector and for the top-level `limits:`;
docs/configuration.md documents every key.
"""

from __future__ import annotations

import re

from bridge.config.schema import CUSTOMER_METADATA, UNMAPPED_ACCOUNT, AmountLimit
from bridge.config.yamlsource import Section

# What X-CREDYT-ACCOUNT may carry, and a Stripe connected account id: both go into
# headers and ids, so letters, digits, `_` and `-` only.
_ACCOUNT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_STRIPE_ACCOUNT = re.compile(r"^acct_[A-Za-z0-9]{1,64}$")
_ASSET = re.compile(r"^[A-Za-z0-9_]{2,32}$")

PLATFORM_KEYS = ("credyt", "accounts", "unmapped_account", "customer_metadata")


def credyt_account(section: Section) -> str | None:
    """A connector's `credyt: {account: ...}`: the Credyt account it acts for."""
    credyt = section.section("credyt")
    credyt.only("account")
    account = credyt.text("account")
    if account is not None and not _ACCOUNT.match(account):
        credyt.error("account", f"must be 1 to 64 letters, digits, _ or -, got {account!r}")
        return None
    return account


def account_map(section: Section, kind: str) -> dict[str, str]:
    """A connector's `accounts: {acct_...: <credyt account>}` (Stripe Connect only)."""
    mapping = section.text_map("accounts")
    if mapping and kind != "stripe":
        section.error("accounts", "maps Stripe Connect accounts; only a stripe connector has it")
        return {}
    for stripe_account, credyt in mapping.items():
        if not _STRIPE_ACCOUNT.match(stripe_account):
            section.error("accounts", f"{stripe_account!r} is not a Stripe account id (acct_...)")
        if not _ACCOUNT.match(credyt):
            section.error(
                "accounts",
                f"{stripe_account}: {credyt!r} is not a Credyt account (letters, digits, _ or -)",
            )
    return mapping


def unmapped_account(section: Section) -> str:
    return section.choice("unmapped_account", UNMAPPED_ACCOUNT, "fail")


def customer_metadata(section: Section) -> str:
    return section.choice("customer_metadata", CUSTOMER_METADATA, "trust")


def amount_limits(section: Section) -> dict[str, AmountLimit]:
    """Top-level `limits: {USD: {max_adjustment: "500", max_per_customer_day: "2000"}}`."""
    found: dict[str, AmountLimit] = {}
    for code, limit in section.items():
        if not _ASSET.match(str(code)):
            section.error(str(code), "must be an asset code (2-32 letters, digits or _)")
            continue
        limit.only("max_adjustment", "max_per_customer_day")
        values = {}
        for key in ("max_adjustment", "max_per_customer_day"):
            value = limit.decimal(key)
            if value is not None and value <= 0:
                limit.error(key, "must be positive")
                value = None
            values[key] = value
        found[str(code).upper()] = AmountLimit(**values)
    return found
