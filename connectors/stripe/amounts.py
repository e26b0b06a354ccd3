"""What a Stripe payment was worth on each basis: paid, net of tax, subtotal.

Read from Stripe's API reference (docs/amounts.md has the whole map and the sources):

- Invoice: `amount_paid` (what was collected now, tax included; a customer balance
  applied is not in it), `total` (after discounts, tax included), `total_excluding_tax`,
  `subtotal_excluding_tax` (before invoice-level discounts and tax). Tax: `total -
  total_excluding_tax`; invoices older than `total_excluding_tax` say it as `tax`
  (before 2025-03-31) or `total_taxes[].amount` (from 2025-03-31, "basil"; it replaced
  `total_tax_amounts[]`). Each figure is credited in the share `amount_paid / total`.
- Checkout Session: `amount_total`, `amount_subtotal`, `total_details.amount_tax` and
  `.amount_discount`. With Adaptive Pricing a session created before 2025-03-30 has
  `currency` and amounts in the customer's currency and the integrator's under
  `currency_conversion` (`source_currency`, `amount_total`, `amount_subtotal`); later
  sessions keep the integrator's `currency` and describe the customer's under
  `presentment_details` (`presentment_currency`, `presentment_amount`).
- PaymentIntent: `amount_received` only, no tax information.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from bridge.events import Amounts
from bridge.money import parse_minor, to_major
from connectors.base import Raw, amounts_of, mapping, optional_minor, share
from connectors.stripe.payloads import currency_exponent

# Payment event types and the bases their objects carry (`amount: paid | net | subtotal`).
AMOUNT_BASES = {
    "invoice.paid": ("paid", "net", "subtotal"),
    "invoice.payment_succeeded": ("paid", "net", "subtotal"),
    "invoice_payment.paid": ("paid",),
    "checkout.session.completed": ("paid", "net", "subtotal"),
    "checkout.session.async_payment_succeeded": ("paid", "net", "subtotal"),
    "payment_intent.succeeded": ("paid",),
}

# Why an event type lacks the tax breakdown `net` and `subtotal` need.
MISSING_BASIS_REASONS = {
    "payment_intent.succeeded": (
        "a PaymentIntent carries only amount_received, no tax information; credit "
        "checkout.session.completed or invoice.paid by net, or use amount: paid"
    ),
    "invoice_payment.paid": (
        "an invoice_payment carries only amount_paid; invoice.paid of the same invoice "
        "has the tax breakdown (use amount: paid on invoice_payment.paid)"
    ),
}


def invoice_amounts(invoice: Raw, paid: int, currency: str) -> Amounts:
    """An invoice's amounts, each in the share of its total that `paid` paid."""
    what = f"invoice {invoice.get('id')}"
    total = optional_minor(invoice, "total", what)
    total_excluding_tax = optional_minor(invoice, "total_excluding_tax", what)
    tax = (
        total - total_excluding_tax
        if total is not None and total_excluding_tax is not None
        else _invoice_tax(invoice, what)
    )
    if total_excluding_tax is None and total is not None and tax is not None:
        total_excluding_tax = total - tax
    subtotal = optional_minor(invoice, "subtotal_excluding_tax", what)
    if subtotal is None:
        plain_subtotal = optional_minor(invoice, "subtotal", what)
        inclusive = _inclusive_tax(invoice, what)
        if plain_subtotal is not None and (inclusive is not None or tax in (None, 0)):
            subtotal = plain_subtotal - (inclusive or 0)
    discount = (
        subtotal - total_excluding_tax
        if subtotal is not None and total_excluding_tax is not None
        else None
    )
    whole = total if total is not None and total > 0 else None
    return amounts_of(
        currency,
        currency_exponent(currency),
        paid=paid,
        tax=share(tax, paid, whole),
        subtotal=share(subtotal, paid, whole),
        discount=share(discount, paid, whole),
    )


def _invoice_tax(invoice: Raw, what: str) -> int | None:
    """`tax` (before basil), else the sum of `total_taxes` (basil on) or of
    `total_tax_amounts` (before basil), else 0 for `tax: null`; None when the invoice
    says nothing of tax."""
    tax = optional_minor(invoice, "tax", what)
    if tax is not None:
        return tax
    for key in ("total_taxes", "total_tax_amounts"):
        entries = invoice.get(key)
        if isinstance(entries, list):
            return sum(_entry_amount(entry, f"{what} {key}") for entry in entries)
    # `tax: null` is how Stripe says no tax was computed (invoices of 2016 say it too).
    return 0 if "tax" in invoice else None


def _inclusive_tax(invoice: Raw, what: str) -> int | None:
    """The tax included in the prices (part of `subtotal`), from either tax list."""
    found: int | None = None
    for key, inclusive in (("total_taxes", "tax_behavior"), ("total_tax_amounts", "inclusive")):
        entries = invoice.get(key)
        if not isinstance(entries, list):
            continue
        found = sum(
            _entry_amount(entry, f"{what} {key}")
            for entry in entries
            if isinstance(entry, Mapping) and entry.get(inclusive) in (True, "inclusive")
        )
    return found


def _entry_amount(entry: Any, what: str) -> int:
    return parse_minor(mapping(entry).get("amount", 0), field=f"{what} amount")


def session_amounts(session: Raw, paid: int, currency: str) -> Amounts:
    """A Checkout Session's amounts in the integrator's currency, in both Adaptive
    Pricing shapes (`currency_conversion` before 2025-03-30, `presentment_details` after)."""
    what = f"checkout session {session.get('id')}"
    details = mapping(session.get("total_details"))
    tax = optional_minor(details, "amount_tax", what + " total_details")
    discount = optional_minor(details, "amount_discount", what + " total_details")
    subtotal = optional_minor(session, "amount_subtotal", what)
    conversion = mapping(session.get("currency_conversion"))
    source = conversion.get("source_currency")
    if isinstance(source, str) and source:
        # The session's own figures are the customer's currency; the integrator's are here.
        credited = source.upper()
        integrator_paid = parse_minor(
            conversion.get("amount_total"), field=f"{what} currency_conversion.amount_total"
        )
        integrator_subtotal = optional_minor(
            conversion, "amount_subtotal", what + " currency_conversion"
        )
        return amounts_of(
            credited,
            currency_exponent(credited),
            paid=integrator_paid,
            tax=share(tax, integrator_paid, paid),
            subtotal=integrator_subtotal,
            discount=share(discount, integrator_paid, paid),
            presentment=(currency, to_major(paid, currency_exponent(currency))),
        )
    return amounts_of(
        currency,
        currency_exponent(currency),
        paid=paid,
        tax=tax,
        subtotal=subtotal,
        discount=discount,
        presentment=_presentment(session, what),
    )


def _presentment(obj: Raw, what: str) -> tuple[str, Decimal] | None:
    details = mapping(obj.get("presentment_details"))
    shown = details.get("presentment_currency")
    if not isinstance(shown, str) or not shown:
        return None
    amount = parse_minor(
        details.get("presentment_amount"), field=f"{what} presentment_details.presentment_amount"
    )
    return shown.upper(), to_major(amount, currency_exponent(shown))


def intent_amounts(intent: Raw, paid: int, currency: str) -> Amounts:
    """A PaymentIntent's: only what it received (and what the customer saw)."""
    what = f"payment intent {intent.get('id')}"
    return amounts_of(
        currency, currency_exponent(currency), paid=paid, presentment=_presentment(intent, what)
    )
