"""Stripe's events read as the bridge's payments and reversals, in every API version.

Before API version 2025-03-31 ("basil") an invoice carries `subscription`,
`subscription_details`, `payment_intent` and `charge`; from basil on these moved under
`invoice.parent.subscription_details` and `invoice_payment` objects. Every reader below
accepts both; `connectors.stripe.payloads` reads the fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.errors import EventError
from bridge.events import Ignored, Kind, LineItem, Normalized, PaymentEvent
from bridge.money import parse_minor, to_major
from connectors.base import (
    Raw,
    WebhookConnector,
    amounts_of,
    attributes,
    mapping,
    moment_of_unix,
)
from connectors.stripe.amounts import intent_amounts, invoice_amounts, session_amounts
from connectors.stripe.payloads import (
    application_of,
    connected_account,
    currency_exponent,
    first_charge,
    id_of,
    invoice_lines,
    line_price,
    line_quantity,
    period_end_of,
    required_str,
    str_map,
    subscription_details_of,
    unique_ids,
)


class StripeReaders(WebhookConnector):
    """The readers of the Stripe event types the bridge acts on (`event_readers`)."""

    def _base(self, raw: Raw, obj: Raw, **fields: Any) -> PaymentEvent:
        created = raw.get("created")
        return PaymentEvent(
            psp=self.psp,
            event_id=str(raw["id"]),
            event_type=str(raw["type"]),
            occurred_at=(
                moment_of_unix("the event's created time", created)
                if isinstance(created, int) and not isinstance(created, bool)
                else None
            ),
            livemode=raw.get("livemode") if isinstance(raw.get("livemode"), bool) else None,
            account=connected_account(raw),
            application=application_of(obj),
            # major units derived here, so they always agree with amount_minor
            amount=to_major(fields["amount_minor"], currency_exponent(fields["currency"])),
            raw=raw,
            **fields,
        )

    def _invoice_paid(self, raw: Raw, invoice: Raw) -> Normalized:
        """invoice.paid / invoice.payment_succeeded: the invoice's amount_paid, keyed by invoice."""
        invoice_id = required_str(invoice, "id")
        status = invoice.get("status")
        if isinstance(status, str) and status != "paid":
            return Ignored(f"invoice {invoice_id} has status {status}: it paid nothing yet")
        if "amount_paid" not in invoice and invoice.get("paid") is True:
            # Before amount_paid existed (API versions until 2018) a paid invoice had
            # paid its amount_due, as the API itself reported it then.
            amount_minor = parse_minor(invoice.get("amount_due"), field="invoice.amount_due")
        else:
            amount_minor = parse_minor(invoice.get("amount_paid"), field="invoice.amount_paid")
        if amount_minor < 0:
            return Ignored(f"invoice {invoice_id} paid nothing (amount_paid {amount_minor})")
        # 0.00 (a 100% coupon) is a payment still: fixed-amount rules grant on it, and
        # `amount: paid` rules skip it (bridge.processing.rules).
        currency = required_str(invoice, "currency").upper()
        subscription_details = subscription_details_of(invoice)
        object_ids = {"invoice": invoice_id}
        subscription = id_of(subscription_details.get("subscription")) or id_of(
            invoice.get("subscription")
        )
        if subscription:
            object_ids["subscription"] = subscription
        for key in ("payment_intent", "charge"):  # before basil only
            value = id_of(invoice.get(key))
            if value:
                object_ids[key] = value
        return self._base(
            raw,
            invoice,
            kind=Kind.PAYMENT,
            payment_key=invoice_id,
            payment_ids=unique_ids(object_ids.get("payment_intent"), object_ids.get("charge")),
            currency=currency,
            amount_minor=amount_minor,
            amounts=invoice_amounts(invoice, amount_minor, currency),
            object_ids=object_ids,
            **self._invoice_fields(invoice),
        )

    def _invoice_fields(self, invoice: Raw) -> dict[str, Any]:
        """What an invoice tells about its payment: customer, reason, lines, period."""
        lines = invoice_lines(invoice)
        metadata = str_map(invoice.get("metadata"))
        subscription_metadata = str_map(subscription_details_of(invoice).get("metadata"))
        return {
            "customer_hint": self._customer_hint(metadata, subscription_metadata),
            "psp_customer_id": id_of(invoice.get("customer")),
            "attributes": attributes(billing_reason=invoice.get("billing_reason")),
            "price_ids": tuple(p for p in (line_price(line)[0] for line in lines) if p),
            "product_ids": tuple(p for p in (line_price(line)[1] for line in lines) if p),
            "quantity": sum(line_quantity(line) for line in lines) or 1,
            "lines": tuple(LineItem(*line_price(line), line_quantity(line)) for line in lines),
            "metadata": {**subscription_metadata, **metadata},
            "period_end": period_end_of(lines),
        }

    def _invoice_payment_paid(self, raw: Raw, payment: Raw) -> Normalized:
        """invoice_payment.paid (basil on): one payment of an invoice, keyed by the invoice.

        It links the invoice to its PaymentIntent (basil invoices no longer name it), so
        a refund or dispute, which names the PaymentIntent, finds the invoice's credit.
        It names no customer and no metadata: unless its invoice is expanded, the
        processor takes the customer of the invoice's credit (from invoice.paid), or
        holds the event until that credit exists. Keyed by the invoice, it never credits
        an invoice that invoice.paid already credited.
        """
        payment_id = required_str(payment, "id")
        status = payment.get("status")
        if status is not None and status != "paid":
            return Ignored(f"invoice payment {payment_id} has status {status}, not paid")
        invoice_ref = payment.get("invoice")
        invoice_id = id_of(invoice_ref)
        if not invoice_id:
            raise EventError(f"invoice_payment {payment_id} has no invoice")
        amount_minor = parse_minor(payment.get("amount_paid") or 0, field="amount_paid")
        if amount_minor <= 0:
            return Ignored(f"invoice payment {payment_id} paid nothing ({amount_minor})")
        currency = required_str(payment, "currency").upper()
        details = mapping(payment.get("payment"))
        object_ids = {"invoice": invoice_id, "invoice_payment": payment_id}
        for key in ("payment_intent", "charge"):
            value = id_of(details.get(key))
            if value:
                object_ids[key] = value
        return self._base(
            raw,
            payment,
            kind=Kind.PAYMENT,
            payment_key=invoice_id,
            payment_ids=unique_ids(object_ids.get("payment_intent"), object_ids.get("charge")),
            currency=currency,
            amount_minor=amount_minor,
            amounts=amounts_of(currency, currency_exponent(currency), paid=amount_minor),
            object_ids=object_ids,
            # Only an expanded invoice says these; a plain id gives empty values.
            **self._invoice_fields(mapping(invoice_ref)),
        )

    def _checkout_session(self, raw: Raw, session: Raw) -> Normalized:
        """checkout.session.completed / .async_payment_succeeded: a paid payment-mode
        session's amount_total, keyed by its invoice if it made one, else its PaymentIntent."""
        session_id = required_str(session, "id")
        mode = session.get("mode")
        if mode != "payment":
            why = CHECKOUT_MODES.get(str(mode), "is not a one-off payment")
            return Ignored(f"checkout session {session_id} has mode {mode}, which {why}")
        status = session.get("payment_status")
        if status != "paid":
            why = CHECKOUT_PAYMENT_STATUSES.get(str(status), "is not paid")
            return Ignored(f"checkout session {session_id} is {status}, which {why}")
        amount_minor = parse_minor(session.get("amount_total"), field="amount_total")
        if amount_minor <= 0:
            return Ignored(f"checkout session {session_id} paid nothing ({amount_minor})")
        currency = required_str(session, "currency").upper()
        invoice_id = id_of(session.get("invoice"))
        intent_id = id_of(session.get("payment_intent"))
        object_ids = {"checkout_session": session_id}
        if invoice_id:
            object_ids["invoice"] = invoice_id
        if intent_id:
            object_ids["payment_intent"] = intent_id
        metadata = str_map(session.get("metadata"))
        return self._base(
            raw,
            session,
            kind=Kind.PAYMENT,
            payment_key=invoice_id or intent_id or session_id,
            payment_ids=unique_ids(intent_id, session_id),
            currency=currency,
            amount_minor=amount_minor,
            amounts=session_amounts(session, amount_minor, currency),
            customer_hint=self._customer_hint(metadata),
            psp_customer_id=id_of(session.get("customer")),
            # A guest checkout (a Payment Link without customer creation) names no
            # customer and no invoice: no later event of the payment will name one.
            customer_later=bool(invoice_id),
            attributes=attributes(mode=mode, payment_status=status),
            metadata=metadata,
            object_ids=object_ids,
        )

    def _payment_intent_succeeded(self, raw: Raw, intent: Raw) -> Normalized:
        """payment_intent.succeeded: amount_received, keyed by the PaymentIntent (before
        basil, by its invoice when it paid one: the same key as invoice.paid)."""
        intent_id = required_str(intent, "id")
        status = intent.get("status")
        if status is not None and status != "succeeded":
            return Ignored(f"payment intent {intent_id} has status {status}, not succeeded")
        amount_minor = parse_minor(intent.get("amount_received"), field="amount_received")
        if amount_minor <= 0:
            return Ignored(f"payment intent {intent_id} received nothing ({amount_minor})")
        currency = required_str(intent, "currency").upper()
        invoice_id = id_of(intent.get("invoice"))  # before basil only
        charge_id = id_of(intent.get("latest_charge")) or first_charge(intent)
        object_ids = {"payment_intent": intent_id}
        if invoice_id:
            object_ids["invoice"] = invoice_id
        if charge_id:
            object_ids["charge"] = charge_id
        metadata = str_map(intent.get("metadata"))
        return self._base(
            raw,
            intent,
            kind=Kind.PAYMENT,
            payment_key=invoice_id or intent_id,
            payment_ids=unique_ids(intent_id, charge_id),
            currency=currency,
            amount_minor=amount_minor,
            amounts=intent_amounts(intent, amount_minor, currency),
            customer_hint=self._customer_hint(metadata),
            psp_customer_id=id_of(intent.get("customer")),
            metadata=metadata,
            object_ids=object_ids,
        )

    def _refund(self, raw: Raw, refund: Raw) -> Normalized:
        """refund.created / refund.updated: a succeeded refund debits, keyed by its id."""
        refund_id = required_str(refund, "id")
        status = required_str(refund, "status")
        if status != "succeeded":
            why = REFUND_STATUSES.get(status, "is not succeeded")
            return Ignored(f"refund {refund_id} has status {status}, which {why}")
        return self._reversal(raw, refund, Kind.REVERSAL, refund_id, refund.get("amount"))

    def _charge_refunded(self, raw: Raw, charge: Raw) -> Normalized:
        """charge.refunded: the charge's cumulative amount_refunded; the processor debits
        only what earlier charge.refunded events of this charge did not, and not at all
        when a rule debits refund.created / refund.updated one by one."""
        charge_id = required_str(charge, "id")
        return self._reversal(
            raw,
            charge,
            Kind.REVERSAL,
            charge_id,
            charge.get("amount_refunded"),
            charge_id=charge_id,
            cumulative=True,
            covered_by=("refund.created", "refund.updated"),
        )

    def _dispute(self, raw: Raw, dispute: Raw) -> Normalized:
        """charge.dispute.*: funds withdrawn debit, won back credit back, keyed by the dispute."""
        dispute_id = required_str(dispute, "id")
        event_type = str(raw["type"])
        status = str(dispute.get("status"))
        if status.startswith("warning_"):
            return Ignored(
                f"dispute {dispute_id} is an inquiry (status {status}): no funds were withdrawn"
            )
        if event_type == "charge.dispute.closed" and status != "won":
            why = "its debit stands" if status == "lost" else "nothing to credit back"
            return Ignored(f"dispute {dispute_id} closed with status {status}: {why}")
        kind = DISPUTE_KINDS[event_type]
        # The reinstatement has its own key: both its events (funds_reinstated, closed
        # as won) name it, and it never collides with the debit's key.
        key = dispute_id if kind is Kind.REVERSAL else f"{dispute_id}:reinstated"
        return self._reversal(raw, dispute, kind, key, dispute.get("amount"))

    def _reversal(
        self,
        raw: Raw,
        obj: Raw,
        kind: Kind,
        reversal_key: str,
        amount: Any,
        *,
        charge_id: str | None = None,
        cumulative: bool = False,
        covered_by: tuple[str, ...] = (),
    ) -> Normalized:
        """A refund, charge or dispute, keyed to its payment by PaymentIntent or Charge."""
        object_id = required_str(obj, "id")
        what = str(obj.get("object") or "object")
        amount_minor = parse_minor(amount, field=f"{what} {object_id} amount")
        if amount_minor <= 0:
            return Ignored(f"{what} {object_id} reverses nothing (amount {amount_minor})")
        currency = required_str(obj, "currency").upper()
        intent_id = id_of(obj.get("payment_intent"))
        charge_id = charge_id or id_of(obj.get("charge"))
        invoice_id = id_of(obj.get("invoice"))  # charges before basil
        payment_key = intent_id or charge_id
        if not payment_key:
            raise EventError(f"{what} {object_id} names no payment_intent and no charge")
        object_ids = {what: object_id}
        for key, value in (
            ("payment_intent", intent_id),
            ("charge", charge_id),
            ("invoice", invoice_id),
        ):
            if value:
                object_ids[key] = value
        metadata = str_map(obj.get("metadata"))
        return self._base(
            raw,
            obj,
            kind=kind,
            payment_key=payment_key,
            payment_ids=unique_ids(intent_id, charge_id, invoice_id),
            reversal_key=reversal_key,
            cumulative=cumulative,
            covered_by=covered_by,
            currency=currency,
            amount_minor=amount_minor,
            customer_hint=self._customer_hint(metadata),
            psp_customer_id=id_of(obj.get("customer")),
            attributes=attributes(status=obj.get("status"), reason=obj.get("reason")),
            metadata=metadata,
            object_ids=object_ids,
        )

    def _customer_hint(self, *metadatas: Mapping[str, str]) -> str | None:
        for metadata in metadatas:
            value = metadata.get(self.customer_metadata_key)
            if value:
                return value
        return None

    # Stripe event types the bridge acts on, and the reader for each. Every other type is
    # stored and marked ignored.
    event_readers = {
        # payments: credit
        "invoice.paid": _invoice_paid,
        "invoice.payment_succeeded": _invoice_paid,
        "invoice_payment.paid": _invoice_payment_paid,
        "checkout.session.completed": _checkout_session,
        "checkout.session.async_payment_succeeded": _checkout_session,
        "payment_intent.succeeded": _payment_intent_succeeded,
        # reversals: debit (and credit back a dispute that was won)
        "refund.created": _refund,
        "refund.updated": _refund,
        "charge.refunded": _charge_refunded,
        "charge.dispute.created": _dispute,
        "charge.dispute.funds_withdrawn": _dispute,
        "charge.dispute.funds_reinstated": _dispute,
        "charge.dispute.closed": _dispute,
    }


# Dispute events and what each becomes (charge.dispute.closed only when won).
DISPUTE_KINDS = {
    "charge.dispute.created": Kind.REVERSAL,
    "charge.dispute.funds_withdrawn": Kind.REVERSAL,
    "charge.dispute.funds_reinstated": Kind.REINSTATEMENT,
    "charge.dispute.closed": Kind.REINSTATEMENT,
}

# Refund statuses other than `succeeded`, and why each is not debited.
REFUND_STATUSES = {
    "pending": "is not final yet; refund.updated follows when it succeeds",
    "requires_action": "is not final yet; refund.updated follows when it succeeds",
    "failed": "returned no money",
    "canceled": "returned no money",
}

# Checkout Session modes other than `payment`, and why each is not credited here.
CHECKOUT_MODES = {
    "subscription": "is credited through its invoice (invoice.paid)",
    "setup": "saves a payment method and takes no money",
}

# Checkout Session payment statuses other than `paid`, and why each is not credited.
CHECKOUT_PAYMENT_STATUSES = {
    "unpaid": "waits for a delayed payment (checkout.session.async_payment_succeeded)",
    "no_payment_required": "took no money",
}
