"""Reversals: refunds, chargebacks and their reinstatements, against a payment's credits.

Each debit (or credit back) is keyed by the PSP's refund (adjustment, dispute) and the
credit it reverses, never by a rule's name: whichever rule, connector or event of the
refund arrives, what was already reversed for it counts. A credit is reversed in
proportion to the PSP amount and never past zero; a reversal that arrives before any
credit is skipped, held or debited as its rule's `unknown_original` says. A decision
that moves no money but whose PSP amount counts (a dispute of a charge already
refunded in full, its reinstatement) is recorded for its units alone, never sent
(`NewAdjustment.deliver`). When a later event links the ids of two `match: first`
credits of one payment, the second is taken back (`bridge.processing.duplicates`).
"""

from __future__ import annotations

import time
from dataclasses import replace
from decimal import Decimal
from typing import Any

from bridge.config.schema import ConnectorConfig, Rule
from bridge.events import Kind, PaymentEvent
from bridge.money import encode_json, format_amount
from bridge.processing.customers import CustomerResolver
from bridge.processing.outcomes import failed, ignored, later, processed
from bridge.processing.rules import (
    PSP_TITLES,
    adjustment_metadata,
    minor_units,
    proportional,
    transaction_id,
)
from bridge.storage.records import Decided, InboxRow, NewAdjustment, ProcessingResult


async def reverse_payment(
    row: InboxRow,
    event: PaymentEvent,
    config: ConnectorConfig,
    rules: list[Rule],
    recorded: list[Decided],
    resolver: CustomerResolver,
) -> ProcessingResult:
    """What a refund, chargeback or reinstatement event takes from (or gives back to)
    the payment's credits, by the first of the matching `rules`.

    A cumulative event (Stripe's charge.refunded) is not applied when a rule debits the
    same refunds one by one from their own events."""
    covering = next(
        (r for r in config.rules if r.reverse and set(r.on) & set(event.covered_by)), None
    )
    if event.cumulative and covering is not None:
        return ignored(
            row,
            f"{event.event_type} reports refunds cumulatively and rule {covering.name} "
            f"debits them one by one ({', '.join(event.covered_by)}): not applied twice",
            payment_key=event.payment_key,
        )
    rule = rules[0]
    credits = [a for a in recorded if a.kind == Kind.PAYMENT.value]
    ref = _reference(event)
    if not event.cumulative and any(a.reversal_key == ref and a.original is None for a in recorded):
        # Applied before the credit was known (unknown_original: debit): a replay or
        # a later event of the same refund must not apply it again.
        return ignored(
            row,
            f"{ref} was already applied before the bridge had a credit for payment "
            f"{event.payment_key}",
            payment_key=event.payment_key,
        )
    if not credits:
        return await _reverse_unknown(row, event, config, rule, recorded, resolver)
    adjustments = []
    for credit in credits:
        adjustment = _reversal_of(credit, rule, event, config, recorded)
        if adjustment is not None:
            adjustments.append(adjustment)
    if not adjustments:
        return ignored(
            row,
            f"nothing left to reverse on this payment for {ref}",
            payment_key=event.payment_key,
        )
    if not any(a.deliver for a in adjustments):  # recorded for its units, nothing sent
        what = "reverse" if event.kind is Kind.REVERSAL else "give back"
        return replace(
            ignored(
                row,
                f"nothing left to {what} on this payment for {ref}: its PSP amount is "
                "counted for later reversals of the payment, nothing is sent to Credyt",
                payment_key=event.payment_key,
            ),
            customer_id=credits[0].customer_id,
            adjustments=tuple(adjustments),
        )
    return processed(row, event, credits[0].customer_id, tuple(adjustments))


async def _reverse_unknown(
    row: InboxRow,
    event: PaymentEvent,
    config: ConnectorConfig,
    rule: Rule,
    recorded: list[Decided],
    resolver: CustomerResolver,
) -> ProcessingResult:
    """A reversal of a payment the bridge has no credit for: `unknown_original`."""
    spec = rule.reverse
    assert spec is not None
    what = f"the bridge has no credit for payment {event.payment_key}"
    if spec.unknown_original == "skip":
        return ignored(
            row,
            f"{what}; rule {rule.name} skips such reversals",
            payment_key=event.payment_key,
        )
    if spec.unknown_original == "hold":
        if time.time() - row.received_at < spec.hold_for:
            return later(row, f"held: {what} yet", payment_key=event.payment_key)
        return failed(row, f"{what} after holding the reversal {spec.hold_for:g}s")
    family = _family(event)
    minor = event.amount_minor
    if event.cumulative:  # only what earlier debits of the same kind did not take
        minor -= sum(
            _signed_minor(a) for a in recorded if a.original is None and a.family == family
        )
        if minor <= 0:
            return ignored(
                row,
                f"{what}; {event.event_type} adds nothing to what was already applied",
                payment_key=event.payment_key,
            )
    customer = await resolver.resolve(event, config.customer_metadata_key, config.customer_metadata)
    sign = -1 if event.kind is Kind.REVERSAL else 1
    amount = proportional(event.amount, minor, event.amount_minor) * sign
    body = _reversal_body(rule, event, config, event.currency, "default", amount, None)
    adjustment = _new_reversal(
        body, rule, event, config, customer, event.currency, "default", amount, minor
    )
    return replace(
        processed(row, event, customer, (adjustment,)),
        reason=f"{what}; rule {rule.name} {'debits' if sign < 0 else 'credits back'} "
        f"{event.currency} {abs(amount)} without it (unknown_original: debit)",
    )


def _reference(event: PaymentEvent) -> str:
    """The PSP's own name for a reversal: refund, adjustment or dispute id."""
    return event.reversal_key or event.event_id


def _family(event: PaymentEvent) -> str:
    """What a cumulative count includes: refunds (charge.refunded) or disputes."""
    return "dispute" if "dispute" in event.object_ids else "refund"


def _signed_minor(a: Decided) -> int:
    """The PSP minor units a decided reversal took (+) or gave back (-)."""
    return a.reversed_minor if a.kind == Kind.REVERSAL.value else -a.reversed_minor


def _reversal_of(
    credit: Decided,
    rule: Rule,
    event: PaymentEvent,
    config: ConnectorConfig,
    recorded: list[Decided],
) -> NewAdjustment | None:
    """The debit (or credit back) of one original credit, in proportion to the PSP amount.
    None when this event adds nothing; amount 0 (not delivered) when it moves no money
    but its units count for a later target.

    Computed as a target, not an increment: everything reversed of this credit so far
    (under any key, rule or connector, and a debit made before the credit was known) is
    counted in PSP minor units, the new total is capped at the whole payment, and the
    debit is the credit's proportion of that total minus what was already taken. So
    reversals never add up to more than the credit, and the last full refund takes
    exactly what remains, in the credit's own decimal places. The total may be below
    zero while a reinstatement waits for its reversal (see below): the target follows
    it there, so every event's share is counted whatever the order.

    The units are the gross (refunded / paid), or the net for a credit that recorded
    the payment's net (`basis_minor`: net and subtotal credits) when the refund names
    its own split (a Paddle adjustment's totals): refunded net / paid net."""
    ref = _reference(event)
    if not event.cumulative and any(
        a.reversal_key == ref and a.original == credit.transaction_id for a in recorded
    ):
        return None  # this refund already reversed this credit
    original = Decimal(credit.amount)
    whole, part, net_whole = _measure(credit, event)
    mine = [a for a in recorded if a.original == credit.transaction_id]
    # Debits made before the bridge knew any credit count against the first credit in
    # their asset.
    first = next(
        (c for c in recorded if c.kind == Kind.PAYMENT.value and c.asset == credit.asset), None
    )
    unknown = [
        a
        for a in recorded
        if a.original is None
        and a.kind != Kind.PAYMENT.value
        and first is not None
        and first.transaction_id == credit.transaction_id
        and a.asset == credit.asset
    ]
    places = max(0, -event.amount.as_tuple().exponent)  # type: ignore[operator]
    gross = credit.payment_amount_minor
    taken = -sum((Decimal(a.amount) for a in mine), Decimal(0)) + sum(
        (proportional(original, _signed_minor(a), gross, places) for a in unknown), Decimal(0)
    )
    family = _family(event)
    counted = [*mine, *unknown]
    same = sum(_in_units(a, whole, gross) for a in counted if a.family == family)
    others = sum(_in_units(a, whole, gross) for a in counted if a.family != family)
    if event.kind is Kind.REVERSAL:
        after = part if event.cumulative else same + part
        if after <= same:
            return None
        # No floor at zero: a reinstatement recorded before its reversal credited back
        # in full, so `taken` (and the net PSP count) is below zero until that reversal
        # arrives, and a refund in between must take only its own share from there. A
        # floor made that refund take the reinstatement back and the next one nothing,
        # whose units the reversal's own target then never counted.
        minor = after - same
    else:  # a reinstatement may arrive before its reversal: that one then counts it
        after = same - part
        minor = part
    # A target either way: what the PSP took in all, capped at the whole payment. A
    # reversal takes what the target adds, a reinstatement gives back what it removes,
    # never the opposite. One that moves nothing is still recorded for its units (a
    # dispute of a refunded charge): its reinstatement then gives back only what it took.
    target = proportional(original, min(whole, after + others), whole, places)
    sign = -1 if event.kind is Kind.REVERSAL else 1
    moved = (target - taken) * -sign
    if moved <= 0 and minor <= 0:
        return None
    amount = moved * sign if moved > 0 else Decimal(0)
    body = _reversal_body(rule, event, config, credit.asset, credit.account, amount, credit)
    body["metadata"]["original_transaction_id"] = credit.transaction_id
    return replace(
        _new_reversal(
            body,
            rule,
            event,
            config,
            credit.customer_id,
            credit.asset,
            credit.account,
            amount,
            minor,
            original=credit,
        ),
        basis_minor=net_whole,
        deliver=amount != 0,
    )


def _measure(credit: Decided, event: PaymentEvent) -> tuple[int, int, int | None]:
    """The whole and the part this reversal of `credit` is measured in (PSP minor units),
    and the net whole when they are nets (None: gross). A cumulative event is a Stripe
    total refunded so far: gross, like every refund without its own split."""
    net_whole = credit.basis_minor
    split = event.amounts
    if net_whole is None or event.cumulative or split is None or split.net is None:
        return credit.payment_amount_minor, event.amount_minor, None
    if split.currency != event.currency:
        return credit.payment_amount_minor, event.amount_minor, None
    part = minor_units(split.net, event.amount)
    if part is None or net_whole <= 0:
        return credit.payment_amount_minor, event.amount_minor, None
    return net_whole, part, net_whole


def _in_units(a: Decided, whole: int, gross: int) -> int:
    """What an earlier reversal `a` took (+) or gave back (-), in the units of `whole`:
    it recorded its own whole (`basis_minor`, None: the credit's `gross`); one measured
    in the other units is converted by its share of its whole (rounded half even)."""
    mine = a.basis_minor if a.basis_minor is not None else gross
    if mine == whole or mine <= 0:
        return _signed_minor(a)
    return int(proportional(Decimal(_signed_minor(a)), whole, mine))


def _reversal_body(
    rule: Rule,
    event: PaymentEvent,
    config: ConnectorConfig,
    asset: str,
    account: str,
    amount: Decimal,
    original: Decided | None,
) -> dict[str, Any]:
    spec = rule.reverse
    assert spec is not None
    title = PSP_TITLES.get(event.psp, event.psp)
    what = "reversal" if event.kind is Kind.REVERSAL else "reinstatement"
    return {
        "transaction_id": transaction_id(event.psp, _reversal_key(event, original), "reversal"),
        "account_name": account,
        "asset": asset,
        "amount": amount,
        "reason": spec.reason,
        "description": spec.description
        or f"{title} {what} {event.reversal_key} of {event.payment_key}",
        "metadata": adjustment_metadata(rule, event, config, spec.metadata),
    }


def _reversal_key(event: PaymentEvent, original: Decided | None) -> str:
    """The PSP reversal (with the cumulative total it reached) and the credit it
    reverses: what happened at the PSP, never a config label."""
    base = _reference(event)
    if event.cumulative:
        base = f"{base}:{event.amount_minor}"
    return f"{base}:{original.transaction_id if original is not None else 'unknown'}"


def _new_reversal(
    body: dict[str, Any],
    rule: Rule,
    event: PaymentEvent,
    config: ConnectorConfig,
    customer: str,
    asset: str,
    account: str,
    amount: Decimal,
    minor: int,
    *,
    original: Decided | None = None,
) -> NewAdjustment:
    return NewAdjustment(
        transaction_id=body["transaction_id"],
        connector=config.name,
        rule=rule.name,
        kind=event.kind.value,
        payment_key=original.payment_key if original is not None else event.payment_key,
        reversal_key=_reference(event),
        customer_id=customer,
        asset=asset,
        account=account,
        amount=format_amount(amount),
        payment_amount_minor=event.amount_minor,
        body=encode_json(body),
        original=original.transaction_id if original is not None else None,
        reversed_minor=minor,
        family=_family(event),
    )
