"""A connector's rules in the configuration: when they apply (`when:`, `unless:`), what
they credit (`credit:` with its amount basis and expiry) or reverse (`reverse:`).
Loaded by `bridge.config.loading`, with the same file, line and key in every error."""

from __future__ import annotations

import re
from decimal import Decimal

from bridge.config.schema import (
    REASONS,
    UNKNOWN_ORIGINAL,
    Conditions,
    CreditSpec,
    Expiry,
    ReverseSpec,
    Rule,
)
from bridge.config.yamlsource import Section
from bridge.events import BASES

ASSET_CODE = re.compile(r"^[A-Za-z0-9_]{2,32}$")


def parse_rule(section: Section, kind: str, events: frozenset[str]) -> Rule:
    from connectors import connector_types, known_conditions

    section.only("name", "on", "when", "unless", "credit", "reverse")
    name = section.text("name", required=True) or f"rule{section.path[-1]}"
    on = section.texts("on")
    if not on:
        section.error("on", "name at least one event type")
    for event_type in on:
        if events and event_type not in events:
            section.error(
                "on",
                f"unknown {kind} event type {event_type!r} (known: {', '.join(sorted(events))})",
            )
    has_credit, has_reverse = section.has("credit"), section.has("reverse")
    if has_credit == has_reverse:
        section.error(None, "a rule has exactly one of credit: or reverse:")
    when, unless = section.section("when"), section.section("unless")
    if kind in connector_types():
        usable = known_conditions(kind)
        for conditions in (when, unless):
            for key in conditions.data:
                if key not in usable and key in CONDITION_KEYS:
                    conditions.error(
                        key, f"{kind} events have no {key}; a rule on it could never match"
                    )
    credit = _credit(section.section("credit")) if has_credit else None
    if credit is not None and credit.amount is None and kind in connector_types():
        for event_type in on:
            error = connector_types()[kind].amount_basis_error(event_type, credit.basis)
            if error is not None:
                section.section("credit").error("amount", error)
    return Rule(
        name=name,
        on=on,
        when=_conditions(when),
        unless=_conditions(unless),
        credit=credit,
        reverse=_reverse(section.section("reverse")) if has_reverse else None,
        line=section.source.line(section.path),
    )


CONDITION_KEYS = (
    "billing_reason",
    "origin",
    "currency",
    "price_ids",
    "product_ids",
    "livemode",
    "metadata",
    "account",
    "application",
)


def _conditions(section: Section) -> Conditions:
    section.only(*CONDITION_KEYS)
    return Conditions(
        billing_reason=section.texts("billing_reason"),
        origin=section.texts("origin"),
        currency=tuple(c.upper() for c in section.texts("currency")),
        price_ids=section.texts("price_ids"),
        product_ids=section.texts("product_ids"),
        livemode=section.flag("livemode", None),
        metadata=section.text_map("metadata"),
        account=section.texts("account"),
        application=section.texts("application"),
    )


def _credit(section: Section) -> CreditSpec:
    section.only(
        "asset",
        "amount",
        "per_unit",
        "rate",
        "account",
        "reason",
        "description",
        "expires",
        "metadata",
    )
    asset = section.text("asset")
    if asset is not None and not ASSET_CODE.match(asset):
        section.error("asset", f"not an asset code: {asset!r}")
    amount: Decimal | None = None
    raw_amount = section.data.get("amount", "paid")
    basis = raw_amount if raw_amount in BASES else "paid"
    if raw_amount not in BASES:
        amount = section.decimal("amount")
        if amount is not None and amount <= 0:
            section.error("amount", "a fixed credit must be positive")
    per_unit = bool(section.flag("per_unit", False))
    if per_unit and raw_amount in BASES:
        section.error("per_unit", "per_unit needs a fixed amount")
    rate = section.decimal("rate", Decimal(1)) or Decimal(1)
    if rate <= 0:
        section.error("rate", "must be positive")
    if (rate != 1 or amount is not None) and asset is None and section.has("rate"):
        section.error("asset", "a rate converts into a custom asset: name the asset")
    return CreditSpec(
        asset=asset.upper() if asset and asset.isalpha() and len(asset) == 3 else asset,
        amount=amount,
        basis=str(basis),
        per_unit=per_unit,
        rate=rate,
        account=section.text("account", "default") or "default",
        reason=section.choice("reason", REASONS, "external_topup"),
        description=section.text("description"),
        expires=_expiry(section),
        metadata=section.text_map("metadata"),
    )


def _expiry(section: Section) -> Expiry:
    value = section.data.get("expires")
    if value is None or value == "never":
        return Expiry()
    if value == "period_end":
        return Expiry("period_end")
    seconds = section.duration("expires", None)
    if seconds is None:
        return Expiry()
    return Expiry("after", seconds)


def _reverse(section: Section) -> ReverseSpec:
    section.only("reason", "description", "unknown_original", "hold_for", "metadata")
    return ReverseSpec(
        reason=section.choice("reason", REASONS, "external_refund"),
        description=section.text("description"),
        unknown_original=section.choice("unknown_original", UNKNOWN_ORIGINAL, "hold"),
        hold_for=section.duration("hold_for", 7 * 86400.0) or 7 * 86400.0,
        metadata=section.text_map("metadata"),
    )
