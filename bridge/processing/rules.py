"""Rules: which normalized events become which Credyt credits, and for how much.

The building blocks are pure functions of the event and the config, so a replay of a
stored event gives the same adjustments and the same transaction ids (credits: UUIDv5
of `psp:payment key:rule`, the payment key scoped `account:payment` in a connected Credyt
account, bridge.processing.tenants; reversals, in bridge.processing.reversals: of the PSP refund
and the credit it reverses). `credit_payment` decides a payment event's credits against
what was already decided for its payment, with its customer and its asset's precision.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

from bridge.config.schema import ANY, Conditions, ConnectorConfig, CreditSpec, Rule
from bridge.credyt.assets import AssetPrecisions, quantize
from bridge.errors import CredytUnavailableError, EventError
from bridge.events import Kind, PaymentEvent
from bridge.money import encode_json, format_amount
from bridge.processing.customers import CustomerResolver
from bridge.processing.outcomes import failed, ignored, later, processed
from bridge.storage.records import Decided, InboxRow, NewAdjustment, ProcessingResult
from connectors import connector_names, connector_type

# The namespace of every transaction id the bridge derives. Never change it: the ids of
# past adjustments, and so Credyt's idempotency across a wiped database, depend on it.
TRANSACTION_NAMESPACE = uuid.UUID("3f0c6a4e-9a51-4c36-8f5e-0a8d9c2b7e11")

# How adjustment descriptions name each PSP, from its connector type.
PSP_TITLES = {name: connector_type(name).title for name in connector_names()}

# How long a payment event that names no customer (Stripe invoice_payment.paid) waits
# for another event of the same payment to credit it, before it is failed.
CUSTOMER_HOLD = 7 * 86400.0


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
        and not _pays_nothing(rule, event)
    ]
    return found[:1] if connector.match == "first" else found


def _pays_nothing(rule: Rule, event: PaymentEvent) -> bool:
    """An `amount: paid` rule has nothing to credit on a 0.00 payment; a fixed amount
    (1,000 credits a month) is granted even when a coupon made the invoice free."""
    return (
        event.kind is Kind.PAYMENT
        and rule.credit is not None
        and rule.credit.amount is None
        and event.amount_minor <= 0
    )


def conditions_hold(rule: Rule, event: PaymentEvent) -> bool:
    """Every `when:` condition holds, and none of the `unless:` conditions does."""
    return all(_checks(rule.when, event)) and not any(_checks(rule.unless, event))


def _checks(c: Conditions, event: PaymentEvent) -> list[bool]:
    """One verdict per condition `c` gives (none given: an empty list)."""
    verdicts = [
        any(_allows(allowed, v) for v in values if v is not None)
        for allowed, values in (
            (c.billing_reason, (event.attributes.get("billing_reason"),)),
            (c.origin, (event.attributes.get("origin"),)),
            (c.currency, (credited_currency(event),)),
            (c.price_ids, event.price_ids),
            (c.product_ids, event.product_ids),
            (c.account, (event.account,)),
            (c.application, (event.application,)),
        )
        if allowed
    ]
    if c.livemode is not None:
        verdicts.append(event.livemode is c.livemode)
    verdicts.extend(event.metadata.get(k) == v for k, v in c.metadata.items())
    return verdicts


def _allows(allowed: tuple[str, ...], value: str) -> bool:
    return value in allowed or (ANY in allowed and value != "")


def credited_currency(event: PaymentEvent) -> str:
    """The currency a payment is worth in to the integrator: its `amounts`' (with Stripe
    Adaptive Pricing the integrator's, not the customer's), else the event's."""
    return event.amounts.currency if event.amounts is not None else event.currency


def basis_amount(basis: str, event: PaymentEvent) -> Decimal:
    """The payment's amount on `basis` (paid, net, subtotal), in `credited_currency`.
    EventError when the payment does not say it (the event fails with that reason)."""
    if event.amounts is None:
        if basis == "paid":
            return event.amount
        value = None
    else:
        value = event.amounts.of(basis)
    if value is None:
        raise EventError(
            f"{event.event_type} {event.payment_key} does not say its {basis} amount "
            f"(no tax breakdown in the payload): a rule crediting amount: {basis} can not "
            f"credit it; credit amount: paid, or replay once the rule is changed"
        )
    return value


def credit_amount(rule: Rule, event: PaymentEvent) -> Decimal:
    spec = rule.credit
    assert spec is not None
    if spec.amount is None:
        base = basis_amount(spec.basis, event)
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


def credit_asset(rule: Rule, event: PaymentEvent) -> str:
    """The asset a credit rule credits: its own `asset`, else the payment's currency
    (the integrator's: `credited_currency`)."""
    assert rule.credit is not None
    return rule.credit.asset or credited_currency(event)


def build_credit(
    rule: Rule,
    event: PaymentEvent,
    connector: ConnectorConfig,
    customer_id: str,
    *,
    precision: int | None = None,
    now: datetime | None = None,
) -> NewAdjustment:
    """The credit `rule` makes of `event`; with `precision`, its amount is cut to that many
    decimal places toward zero (bridge/credyt/assets.py). `now` is the time of crediting, from
    which a relative expiry counts (default: the clock)."""
    spec = rule.credit
    assert spec is not None
    asset = credit_asset(rule, event)
    amount = credit_amount(rule, event)
    if precision is not None:
        amount = quantize(amount, precision)
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
    expires_at = _expires_at(spec, event, now or datetime.now(UTC))
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
        basis_minor=reversal_whole(spec, event),
    )


def reversal_whole(spec: CreditSpec, event: PaymentEvent) -> int | None:
    """What a credit's reversals are measured against when it is not the payment's gross
    (None): the payment's net, in the PSP minor units refunds are written in, for a
    `net` or `subtotal` credit of a payment that says its tax. A refund naming its own
    split (a Paddle adjustment) then takes its net's share of that net. A subtotal credit
    is measured by the net too: a refund says what it gave back without tax, never which
    list price and discount it stood for (docs/amounts.md)."""
    amounts = event.amounts
    if spec.amount is not None or spec.basis == "paid" or amounts is None or amounts.net is None:
        return None
    if amounts.currency != event.currency:  # Adaptive Pricing: refunds are in another
        return None
    return minor_units(amounts.net, event.amount)


def minor_units(value: Decimal, like: Decimal) -> int | None:
    """`value` in minor units, with the decimal places of `like` (an amount the PSP's
    minor units were converted from: bridge.money.to_major keeps them); None when it
    is not a whole number of them."""
    with localcontext() as ctx:
        ctx.prec = 60
        scaled = value.scaleb(-like.as_tuple().exponent)  # type: ignore[operator]
    return int(scaled) if scaled == scaled.to_integral_value() else None


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


def _expires_at(spec: CreditSpec, event: PaymentEvent, now: datetime) -> str | None:
    """When the credit expires. Never a credit that is dead on arrival:

    - a duration (`expires: 7d`) counts from the time of crediting, not from the payment,
      so a Stripe retry after an outage, a backfill or a replay still grants the full 7
      days (a live webhook is credited seconds after the payment: the same thing);
    - `period_end` whose billing period has already ended fails the event with a reason
      (EventError): the operator decides, e.g. gives the rule a duration and replays it.
    """
    if spec.expires.kind == "period_end" and event.period_end is not None:
        if event.period_end <= now:
            raise EventError(
                f"the billing period ended at {_rfc3339(event.period_end)}, before this "
                f"credit was made (expires: period_end): it would reach Credyt already "
                f"expired. Give the rule a duration (e.g. expires: 7d, counted from "
                f"crediting) or expires: never, then replay the event"
            )
        return _rfc3339(event.period_end)
    if spec.expires.kind == "after":
        return _rfc3339(now + timedelta(seconds=spec.expires.seconds))
    return None


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def credit_payment(
    row: InboxRow,
    event: PaymentEvent,
    config: ConnectorConfig,
    rules: list[Rule],
    recorded: list[Decided],
    resolver: CustomerResolver,
    assets: AssetPrecisions | None,
) -> ProcessingResult:
    """Credit a payment once: per rule (`match: all`) or once in all (`match: first`),
    whichever of the payment's events and ids it arrives under. `recorded`: what was
    decided for the payment so far; `assets`: None credits amounts as computed."""
    currency = credited_currency(event)
    if config.currencies and currency not in config.currencies:
        return failed(
            row,
            f"payment {event.payment_key} is in {currency}, which connector {config.name} "
            f"does not credit (currencies: {', '.join(config.currencies)}): add it, with "
            f"its asset, and replay the event",
        )
    credits = [a for a in recorded if a.kind == Kind.PAYMENT.value]
    if config.match == "first":
        mine = transaction_id(event.psp, event.payment_key, rules[0].name)
        other = [a for a in credits if a.transaction_id != mine]
        if other:
            return ignored(
                row,
                f"payment already credited by rule {other[0].rule} as "
                f"{other[0].payment_key} (match: first credits a payment once)",
                payment_key=event.payment_key,
            )
    else:
        rules = [
            r
            for r in rules
            if not any(a.rule == r.name and a.payment_key != event.payment_key for a in credits)
        ]
        if not rules:
            return ignored(
                row,
                f"every matching rule already credited this payment as {credits[0].payment_key}",
                payment_key=event.payment_key,
            )
    if event.customer_hint or event.psp_customer_id or not event.customer_later:
        customer = await resolver.resolve(
            event, config.customer_metadata_key, config.customer_metadata
        )
    elif credits:
        customer = credits[0].customer_id
    elif time.time() - row.received_at < CUSTOMER_HOLD:
        return later(
            row,
            f"held: {event.event_type} names no customer; waiting for another event of "
            f"payment {event.payment_key} (e.g. invoice.paid) to credit it",
            payment_key=event.payment_key,
        )
    else:
        return failed(
            row,
            f"{event.event_type} names no customer and no other event of payment "
            f"{event.payment_key} credited it within {CUSTOMER_HOLD:g}s",
        )
    precisions: dict[str, int | None] = {}
    for rule in rules:
        asset = credit_asset(rule, event)
        try:
            precisions[rule.name] = (
                None if assets is None else await assets.precision(asset, event.credyt_account)
            )
        except CredytUnavailableError as exc:
            return later(row, f"Credyt unavailable for the precision of asset {asset}: {exc}")
    adjustments = tuple(
        build_credit(rule, event, config, customer, precision=precisions[rule.name])
        for rule in rules
    )
    return processed(row, event, customer, adjustments)
