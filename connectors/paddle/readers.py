"""Paddle Billing's events read as the bridge's payments and reversals.

Events acted on: `transaction.completed` (credit `details.totals.grand_total`, or its
net or subtotal: connectors.paddle.amounts) and
`adjustment.created` / `adjustment.updated` once `approved` (refunds and chargebacks
debit, their reversals credit back). `transaction.paid` comes earlier and may lack
`subscription_id` and `invoice_number`; it is stored and ignored. Amounts are strings
of minor units; JPY and KRW have no decimals.

Adjustment actions (Paddle's `Action` enum): `refund` and `chargeback` debit.
`chargeback_reverse` credits back. `chargeback_warning` and its reverse are ignored:
a warning may be followed by a real `chargeback` under another adjustment id, and
debiting both would take the money twice. `credit` and `credit_reverse` change what
is owed on an unpaid invoice, return no money, and are ignored. Statuses:
`pending_approval` (most refunds start here; the approval arrives as
`adjustment.updated`), `approved`, `rejected`, `reversed`: only `approved` is acted on.
"""

from __future__ import annotations

from typing import Any

from bridge.errors import EventError
from bridge.events import Ignored, Kind, LineItem, Normalized, PaymentEvent
from bridge.money import parse_minor, to_major
from connectors.base import Raw, WebhookConnector, attributes, mapping
from connectors.paddle.amounts import adjustment_amounts, transaction_amounts
from connectors.paddle.payloads import (
    checked_time,
    currency_exponent,
    item_quantity,
    optional_str,
    required_str,
    str_map,
    transaction_items,
)


class PaddleReaders(WebhookConnector):
    """The readers of the Paddle event types the bridge acts on (`event_readers`)."""

    def _base(self, raw: Raw, **fields: Any) -> PaymentEvent:
        return PaymentEvent(
            psp=self.psp,
            event_id=str(raw["event_id"]),
            event_type=str(raw["event_type"]),
            occurred_at=checked_time("occurred_at", raw.get("occurred_at")),
            livemode=None,
            # major units derived here, so they always agree with amount_minor
            amount=to_major(fields["amount_minor"], currency_exponent(fields["currency"])),
            raw=raw,
            **fields,
        )

    def _transaction_completed(self, raw: Raw, txn: Raw) -> Normalized:
        """transaction.completed: the transaction's grand_total, keyed by transaction id."""
        txn_id = required_str(txn, "id", "transaction")
        origin = txn.get("origin")
        if isinstance(origin, str) and origin in IGNORED_ORIGINS:
            return Ignored(f"transaction {txn_id} {IGNORED_ORIGINS[origin]} (origin {origin})")
        totals = mapping(mapping(txn.get("details")).get("totals"))
        grand_total = totals.get("grand_total")
        if grand_total is None:
            raise EventError(f"transaction {txn_id} has no details.totals.grand_total")
        amount_minor = parse_minor(
            grand_total, field=f"transaction {txn_id} details.totals.grand_total"
        )
        # A zero grand_total (a 100% discount) is a payment still: fixed-amount rules
        # grant on it, `amount: paid` rules skip it (bridge.processing.rules).
        if amount_minor < 0:
            raise EventError(f"transaction {txn_id} has a negative grand_total ({amount_minor})")
        currency = required_str(txn, "currency_code", f"transaction {txn_id}").upper()
        items = transaction_items(txn)
        prices = [mapping(item.get("price")) for item in items]
        object_ids = {"transaction": txn_id}
        for key, field in (
            ("subscription", "subscription_id"),
            ("customer", "customer_id"),
            ("invoice_number", "invoice_number"),
        ):
            value = txn.get(field)
            if isinstance(value, str) and value:
                object_ids[key] = value
        metadata = str_map(txn.get("custom_data"))
        return self._base(
            raw,
            kind=Kind.PAYMENT,
            payment_key=txn_id,
            currency=currency,
            amount_minor=amount_minor,
            amounts=transaction_amounts(totals, amount_minor, currency, f"transaction {txn_id}"),
            customer_hint=metadata.get(self.customer_metadata_key) or None,
            psp_customer_id=optional_str(txn.get("customer_id")),
            attributes=attributes(
                origin=txn.get("origin"),
                status=txn.get("status"),
                collection_mode=txn.get("collection_mode"),
            ),
            price_ids=tuple(p for p in (optional_str(p.get("id")) for p in prices) if p),
            product_ids=tuple(p for p in (optional_str(p.get("product_id")) for p in prices) if p),
            quantity=sum(item_quantity(item) for item in items) or 1,
            lines=tuple(
                LineItem(
                    optional_str(price.get("id")),
                    optional_str(price.get("product_id")),
                    item_quantity(item),
                )
                for item, price in zip(items, prices, strict=True)
            ),
            metadata=metadata,
            period_end=checked_time(
                "billing_period.ends_at", mapping(txn.get("billing_period")).get("ends_at")
            ),
            object_ids=object_ids,
        )

    def _adjustment(self, raw: Raw, adjustment: Raw) -> Normalized:
        """adjustment.created / .updated: an approved refund or chargeback, keyed by its id."""
        adj_id = required_str(adjustment, "id", "adjustment")
        action = required_str(adjustment, "action", f"adjustment {adj_id}")
        kind = ADJUSTMENT_KINDS.get(action)
        if kind is None:
            why = IGNORED_ACTIONS.get(action, "is not an action the bridge acts on")
            return Ignored(f"adjustment {adj_id} has action {action}, which {why}")
        status = required_str(adjustment, "status", f"{action} {adj_id}")
        if status != "approved":
            why = ADJUSTMENT_STATUS_REASONS.get(status, f"has status {status}, not approved")
            return Ignored(f"{action} {adj_id} {why}")
        txn_id = required_str(adjustment, "transaction_id", f"{action} {adj_id}")
        totals = mapping(adjustment.get("totals"))
        total = totals.get("total")
        if total is None:
            raise EventError(f"{action} {adj_id} has no totals.total")
        amount_minor = parse_minor(total, field=f"{action} {adj_id} totals.total")
        if amount_minor == 0:
            return Ignored(f"{action} {adj_id} has a zero total")
        if amount_minor < 0:
            raise EventError(f"{action} {adj_id} has a negative total ({amount_minor})")
        currency = optional_str(adjustment.get("currency_code")) or optional_str(
            totals.get("currency_code")
        )
        if not currency:
            raise EventError(f"{action} {adj_id} has no currency_code")
        currency = currency.upper()
        object_ids = {"adjustment": adj_id, "transaction": txn_id}
        for key, field in (("subscription", "subscription_id"), ("customer", "customer_id")):
            value = adjustment.get(field)
            if isinstance(value, str) and value:
                object_ids[key] = value
        return self._base(
            raw,
            kind=kind,
            payment_key=txn_id,
            reversal_key=adj_id,
            currency=currency,
            amount_minor=amount_minor,
            # the refund's own split, shown by `events show` (the debit's proportion is
            # totals.total of the transaction's grand_total: docs/amounts.md)
            amounts=adjustment_amounts(totals, amount_minor, currency, f"{action} {adj_id}"),
            psp_customer_id=optional_str(adjustment.get("customer_id")),
            attributes=attributes(action=action, status=status),
            object_ids=object_ids,
        )

    # Paddle event types the bridge acts on, and the reader for each. Every other type is
    # stored and marked ignored.
    event_readers = {
        "transaction.completed": _transaction_completed,
        "adjustment.created": _adjustment,
        "adjustment.updated": _adjustment,
    }


# Transaction origins that never carry a payment: a payment-method update is a
# zero-value transaction.
IGNORED_ORIGINS = {
    "subscription_payment_method_change": "is a payment method change, not a payment",
}

# Adjustment actions the bridge acts on once approved, and the kind each becomes.
ADJUSTMENT_KINDS = {
    "refund": Kind.REVERSAL,
    "chargeback": Kind.REVERSAL,
    "chargeback_reverse": Kind.REINSTATEMENT,
}

# Adjustment actions that return no money, and why they are not acted on. Actions in
# neither table are ignored as unknown.
IGNORED_ACTIONS = {
    "credit": "reduces what is owed on an unpaid invoice; no money was returned",
    "credit_reverse": "reverses a credit on an unpaid invoice; no money moved",
    "chargeback_warning": "is a warning; the chargeback itself, if it comes, is debited",
    "chargeback_warning_reverse": "reverses a warning that was never debited",
}

# Adjustment statuses other than `approved`, and why each is not acted on.
ADJUSTMENT_STATUS_REASONS = {
    "pending_approval": "is pending approval; its approval arrives as adjustment.updated",
    "rejected": "was rejected by Paddle; no money moved",
    "reversed": "was reversed by Paddle; a debit already made for it is left as it is",
}
