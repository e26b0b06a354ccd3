"""What a Paddle transaction was worth on each basis: paid, net of tax, subtotal.

Read from Paddle's API reference (docs/amounts.md has the whole map and the sources):
`details.totals` holds strings of minor units: `subtotal` (before discount and tax),
`discount`, `tax`, `total` (after discount and tax: `subtotal - discount + tax`),
`credit` (a customer balance or an adjustment applied), `balance` (still due) and
`grand_total` (`total - credit`: what was paid). Whether prices include tax
(`tax_mode: internal`) or have it added (`external`), `subtotal` excludes tax, so
`total - tax` is the net in both modes. `grand_total_tax` (2026 on) is the tax inside
`grand_total`; before it, the tax is taken in the share `grand_total / total`.
`details.payout_totals` has the same figures in the payout currency; the bridge credits
the transaction's own currency (`currency_code`).
"""

from __future__ import annotations

from bridge.events import Amounts
from connectors.base import Raw, amounts_of, optional_minor, share
from connectors.paddle.payloads import currency_exponent

# Payment event types and the bases their objects carry (`amount: paid | net | subtotal`).
AMOUNT_BASES = {"transaction.completed": ("paid", "net", "subtotal")}


def transaction_amounts(totals: Raw, paid: int, currency: str, what: str) -> Amounts:
    """A transaction's amounts, each in the share of its total that `paid` paid."""
    where = f"{what} details.totals"
    total = optional_minor(totals, "total", where)
    tax = optional_minor(totals, "tax", where)
    paid_tax = optional_minor(totals, "grand_total_tax", where)
    whole = total if total is not None and total > 0 else None
    return amounts_of(
        currency,
        currency_exponent(currency),
        paid=paid,
        tax=paid_tax if paid_tax is not None else share(tax, paid, whole),
        subtotal=share(optional_minor(totals, "subtotal", where), paid, whole),
        discount=share(optional_minor(totals, "discount", where), paid, whole),
    )


def adjustment_amounts(totals: Raw, refunded: int, currency: str, what: str) -> Amounts:
    """A refund's or chargeback's own split: `totals.subtotal`, `tax` and `total`."""
    where = f"{what} totals"
    return amounts_of(
        currency,
        currency_exponent(currency),
        paid=refunded,
        tax=optional_minor(totals, "tax", where),
        subtotal=optional_minor(totals, "subtotal", where),
    )
