"""Rules: which normalized events become which Credyt adjustments, and for how much.

Pure functions of the event and the config, so a replay of a stored event gives the
same adjustments and the same transaction ids (credits: UUIDv5 of `psp:payment key:rule`;
reversals, in bridge.processing: of the PSP refund and the credit it reverses).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

from bridge.config import ConnectorConfig, CreditSpec, Rule
from bridge.events import Kind, PaymentEvent
from bridge.money import encode_json, format_amount
from bridge.records import NewAdjustment

# The namespace of every transaction id the bridge derives. Never change it: the ids of
# past adjustments, and so Credyt's idempotency across a wiped database, depend on it.
TRANSACTION_NAMESPACE = uuid.UUID("3f0c6a4e-9a51-4c36-8f5e-0a8d9c2b7e11")

PSP_TITLES = {"stripe": "Stripe", "paddle": "Paddle"}


def transaction_id(psp: str, key: str, rule: str) -> str:
    return str(uuid.uuid5(TRANSACTION_NAMESPACE, f"{psp}:{key}:{rule}"))


def matching_rules(event: PaymentEvent, connector: ConnectorConfig) -> list[Rule]:
    """The rules that apply: all of them, or the first, as `match:` says."""
    wanted_action = "credit" if event.kind is Kind.PAYMENT else "reverse"
    found = [
        rule
        for rule in connector.rules
        if event.event_type in rule.on
        and rule.action == wanted_action
        and conditions_hold(rule, event)
    ]
    return found[:1] if connector.match == "first" else found


def conditions_hold(rule: Rule, event: PaymentEvent) -> bool:
    c = rule.when
    checks = (
        (c.billing_reason, (event.attributes.get("billing_reason"),)),
        (c.origin, (event.attributes.get("origin"),)),
        (c.currency, (event.currency,)),
        (c.price_ids, event.price_ids),
        (c.product_ids, event.product_ids),
    )
    for allowed, values in checks:
        if allowed and not any(v in allowed for v in values if v is not None):
            return False
    if c.livemode is not None and event.livemode is not c.livemode:
        return False
    return all(event.metadata.get(k) == v for k, v in c.metadata.items())


def credit_amount(rule: Rule, event: PaymentEvent) -> Decimal:
    spec = rule.credit
    assert spec is not None
    if spec.amount is None:
        base = event.amount
    else:
        base = spec.amount * (units(rule, event) if spec.per_unit else 1)
    return base * spec.rate


def units(rule: Rule, event: PaymentEvent) -> int:
    """Units bought: of the rule's prices or products when it names them, else of all lines."""
    prices, products = rule.when.price_ids, rule.when.product_ids
    if not (prices or products) or not event.lines:
        return event.quantity
    return sum(
        line.quantity
        for line in event.lines
        if (not prices or line.price_id in prices) and (not products or line.product_id in products)
    )


def build_credit(
    rule: Rule, event: PaymentEvent, connector: ConnectorConfig, customer_id: str
) -> NewAdjustment:
    spec = rule.credit
    assert spec is not None
    asset = spec.asset or event.currency
    amount = credit_amount(rule, event)
    title = PSP_TITLES.get(event.psp, event.psp)
    body: dict[str, Any] = {
        "transaction_id": transaction_id(event.psp, event.payment_key, rule.name),
        "account_name": spec.account,
        "asset": asset,
        "amount": amount,
        "reason": spec.reason,
        "description": spec.description or f"{title} payment {event.payment_key}",
        "metadata": adjustment_metadata(rule, event, connector, spec.metadata),
    }
    expires_at = _expires_at(spec, event)
    if expires_at is not None:
        body["expires_at"] = expires_at
    return NewAdjustment(
        transaction_id=body["transaction_id"],
        connector=connector.name,
        rule=rule.name,
        kind=Kind.PAYMENT.value,
        payment_key=event.payment_key,
        reversal_key=None,
        customer_id=customer_id,
        asset=asset,
        account=spec.account,
        amount=format_amount(amount),
        payment_amount_minor=event.amount_minor,
        body=encode_json(body),
    )


def proportional(original: Decimal, part_minor: int, whole_minor: int, places: int = 0) -> Decimal:
    """`original * part / whole`, rounded (half even) to the original's decimal places,
    and to at least `places` (the PSP currency's: a USD credit recorded as "18.2" for
    18.20 still has cents, so 606/1820 of it is 6.06, not 6.1).

    The result never has more places than the credit it is a part of, so reversals sum
    to the credit exactly when the whole is reversed (the processor computes running
    totals with this and debits their differences).
    """
    with localcontext() as ctx:
        ctx.prec = 60
        exact = original * Decimal(part_minor) / Decimal(whole_minor)
    keep = max(places, -original.as_tuple().exponent)  # type: ignore[operator]
    return exact.quantize(Decimal(1).scaleb(-keep), rounding=ROUND_HALF_EVEN)


def adjustment_metadata(
    rule: Rule, event: PaymentEvent, connector: ConnectorConfig, extra: dict[str, str]
) -> dict[str, str]:
    metadata = {
        "psp": event.psp,
        "connector": connector.name,
        "event_id": event.event_id,
        "event_type": event.event_type,
        "rule": rule.name,
    }
    metadata.update(event.object_ids)
    metadata.update(extra)
    return metadata


def _expires_at(spec: CreditSpec, event: PaymentEvent) -> str | None:
    if spec.expires.kind == "period_end" and event.period_end is not None:
        return _rfc3339(event.period_end)
    if spec.expires.kind == "after" and event.occurred_at is not None:
        return _rfc3339(event.occurred_at + timedelta(seconds=spec.expires.seconds))
    return None


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
