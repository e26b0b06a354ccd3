"""The bridge's own vocabulary for what a PSP told us, independent of any PSP.

A connector turns a verified raw webhook into an `Envelope` (enough to store it) and,
later, into a `PaymentEvent` (enough to apply rules) or an `Ignored` (with why).
The raw payload always travels with the normalized event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    PAYMENT = "payment"  # money came in: credit the wallet
    REVERSAL = "reversal"  # a refund or chargeback took money back: debit
    REINSTATEMENT = "reinstatement"  # a reversal was undone (dispute won): credit back


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the receiver needs to store a verified webhook: its identity, nothing more."""

    event_id: str
    event_type: str
    livemode: bool | None = None


@dataclass(frozen=True, slots=True)
class Ignored:
    """An event the bridge stores but does not act on, and why."""

    reason: str


@dataclass(frozen=True, slots=True)
class Waiting:
    """An event that can not be applied yet (e.g. the PSP has not finished it); retried."""

    reason: str


@dataclass(frozen=True, slots=True)
class LineItem:
    """One line of what was bought: which price and product, how many units."""

    price_id: str | None
    product_id: str | None
    quantity: int


# The amount bases a credit rule may name (`amount: paid | net | subtotal`).
BASES = ("paid", "net", "subtotal")


@dataclass(frozen=True, slots=True)
class Amounts:
    """What a payment was worth, exact, in major units of `currency`: the integrator's
    own currency (with Stripe Adaptive Pricing, not the one the customer paid in).

    Every figure is the share of the PSP object that this payment paid (an invoice that
    a customer balance paid in part: amount_paid / total of each figure), so `net` is
    `paid` without its tax. None where the PSP object does not say (a PaymentIntent has
    no tax information)."""

    currency: str
    paid: Decimal  # gross: what the customer paid, tax included
    net: Decimal | None = None  # paid, excluding tax
    subtotal: Decimal | None = None  # the list price, before discounts and tax
    tax: Decimal | None = None
    discount: Decimal | None = None
    # The currency and amount the customer saw, when it is not `currency`.
    presentment_currency: str | None = None
    presentment_amount: Decimal | None = None

    def of(self, basis: str) -> Decimal | None:
        """The amount of one of BASES; None when the payment does not say it."""
        value: Decimal | None = getattr(self, basis) if basis in BASES else None
        return value


@dataclass(frozen=True, slots=True)
class PaymentEvent:
    psp: str  # "stripe" | "paddle"
    event_id: str
    event_type: str
    kind: Kind
    # Stable id of the payment this event is about, shared by every event that
    # describes the same payment: Stripe invoice id for invoice payments, else the
    # PaymentIntent id; Paddle transaction id.
    payment_key: str
    currency: str  # ISO code, upper case
    amount_minor: int  # this payment's (or reversal's) amount in the PSP's minor units
    amount: Decimal  # the same, in major units, exact
    # Payments: what the payment was worth on every basis, in the currency credited
    # (amount_minor stays what was charged: refunds are in its units).
    amounts: Amounts | None = None
    occurred_at: datetime | None = None
    # For reversals: the refund / dispute / adjustment id (the idempotency key).
    reversal_key: str | None = None
    # For reversals: amount_minor is the cumulative amount reversed so far on this
    # payment (Stripe charge.refunded); debit only what exceeds earlier reversals.
    cumulative: bool = False
    # For cumulative reversals: event types that report the same reversals one by one
    # (Stripe refund.created / refund.updated). When a rule of the connector listens to
    # them, the cumulative event is ignored, so no refund is debited twice.
    covered_by: tuple[str, ...] = ()
    # Other PSP ids that name the same payment (Stripe: PaymentIntent, Charge, Checkout
    # Session). Stored as links to payment_key, so a refund that knows only the
    # PaymentIntent or the Charge finds a credit keyed by the invoice.
    payment_ids: tuple[str, ...] = ()
    customer_hint: str | None = None  # Credyt customer id found in PSP metadata
    psp_customer_id: str | None = None  # cus_... / ctm_...: Credyt external_id lookup
    # Whether another event of the same payment can still name the customer when this
    # one names none (invoice_payment.paid: its invoice.paid will). False for a guest
    # checkout: nothing will, so the event fails at once instead of being held.
    customer_later: bool = True
    livemode: bool | None = None
    # The PSP account the event came from when a platform receives events of its
    # connected accounts (Stripe Connect: `account`, acct_...); None: the platform's own.
    account: str | None = None
    # The platform application that created the payment (Stripe: `application`, ca_...,
    # on a PaymentIntent or Charge), None when the account itself made it.
    application: str | None = None
    # The Credyt account (X-CREDYT-ACCOUNT) the event is credited in, set by the
    # processor from the connector's config (bridge.processing.tenants); None: the key's.
    credyt_account: str | None = None
    # Values rule conditions match on: billing_reason, origin, status, mode...
    attributes: Mapping[str, str] = field(default_factory=dict)
    price_ids: tuple[str, ...] = ()
    product_ids: tuple[str, ...] = ()
    quantity: int = 1  # total quantity across lines (fixed amounts per unit)
    lines: tuple[LineItem, ...] = ()  # per-price quantities, where the payload has them
    metadata: Mapping[str, str] = field(default_factory=dict)
    period_end: datetime | None = None
    # PSP object ids this came from, copied into the adjustment's metadata:
    # invoice, payment_intent, charge, subscription, transaction, refund, ...
    object_ids: Mapping[str, str] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


Normalized = PaymentEvent | Ignored | Waiting
