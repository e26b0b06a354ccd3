"""Duplicate credits: two `match: first` credits of one payment that no event linked
until a later one joined their ids; every credit after the first is taken back."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

from bridge.config.schema import ConnectorConfig, Rule
from bridge.events import Kind, PaymentEvent
from bridge.money import encode_json, format_amount
from bridge.processing.outcomes import processed
from bridge.processing.rules import PSP_TITLES, adjustment_metadata, transaction_id
from bridge.storage.records import Decided, InboxRow, NewAdjustment, ProcessingResult


def take_back_duplicates(
    row: InboxRow, event: PaymentEvent, config: ConnectorConfig, rule: Rule, recorded: list[Decided]
) -> ProcessingResult | None:
    """Two `match: first` credits in one payment: each was made under an id that nothing
    linked to the other yet (invoice.paid naming no PaymentIntent, then the marked
    payment_intent.succeeded), and this event's ids joined them. Every credit after the
    first is taken back in full (what refunds left of it), once: its key names it."""
    ours = [a for a in recorded if a.kind == Kind.PAYMENT.value and a.connector == config.name]
    adjustments = []
    for credit in ours[1:]:
        key = f"duplicate:{credit.transaction_id}"
        if any(a.reversal_key == key for a in recorded):
            continue
        taken = -sum(
            (Decimal(a.amount) for a in recorded if a.original == credit.transaction_id),
            Decimal(0),
        )
        amount = -(Decimal(credit.amount) - taken)
        if amount >= 0:
            continue
        metadata = adjustment_metadata(rule, event, config, {})
        metadata["original_transaction_id"] = credit.transaction_id
        metadata["duplicate_of"] = ours[0].transaction_id
        body: dict[str, Any] = {
            "transaction_id": transaction_id(event.psp, key, "reversal"),
            "account_name": credit.account,
            "asset": credit.asset,
            "amount": amount,
            "reason": "external_refund",
            "description": f"{PSP_TITLES.get(event.psp, event.psp)} payment "
            f"{credit.payment_key} credited twice: it is {ours[0].payment_key}",
            "metadata": metadata,
        }
        adjustments.append(
            NewAdjustment(
                transaction_id=body["transaction_id"],
                connector=config.name,
                rule=rule.name,
                kind=Kind.REVERSAL.value,
                payment_key=credit.payment_key,
                reversal_key=key,
                customer_id=credit.customer_id,
                asset=credit.asset,
                account=credit.account,
                amount=format_amount(amount),
                payment_amount_minor=credit.payment_amount_minor,
                body=encode_json(body),
                original=credit.transaction_id,
                reversed_minor=credit.payment_amount_minor,
                family="duplicate",
            )
        )
    if not adjustments:
        return None
    return replace(
        processed(row, event, ours[0].customer_id, tuple(adjustments)),
        reason=f"payment {ours[0].payment_key} was credited again as "
        f"{', '.join(a.payment_key for a in ours[1:])} before {event.event_type} linked "
        "their ids: the later credit is taken back (match: first credits a payment once)",
    )
