"""Payment histories for the exactly-once property: what happened to one payment
(`Story`), a few of them with the config switches and operations around them
(`Scenario`), and the exact amounts they leave in the wallet."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

TOK_RATE = Decimal(1_000_000)  # `match: all` adds a TOK credit: 1,000,000 TOK per unit paid

# -- what happened to one payment ---------------------------------------------------------


@dataclass
class Refund:
    amount: int  # minor units
    succeeded: bool  # False: it failed after pending; no money moved
    via_pending: bool  # refund.created pending, then refund.updated


@dataclass
class Dispute:
    amount: int
    won: bool


@dataclass
class Story:
    """One payment and what happened to it, in the PSP's minor units."""

    kind: str  # stripe: invoice_basil | invoice_2020 | checkout | pi_topup; paddle: transaction
    amount: int
    currency: str
    by_lookup: bool  # the customer is found by PSP customer id, not metadata
    refunds: list[Refund] = field(default_factory=list)
    dispute: Dispute | None = None
    choices: dict[str, Any] = field(default_factory=dict)  # which events describe it

    def reversed_minor(self) -> int:
        """What the refunds and a lost dispute took in all. A dispute may be for more
        than the refunds left (a customer may dispute a refunded charge): it takes at
        most what is left, so the wallet never goes below zero; a won dispute gives
        back all it took and counts nothing."""
        taken = sum(r.amount for r in self.refunds if r.succeeded)
        if self.dispute is not None and not self.dispute.won:
            taken += self.dispute.amount
        return min(taken, self.amount)


@dataclass
class Scenario:
    options: dict[str, str]  # config switches (match, refund events)
    stories: list[Story]
    replay: bool  # replay every stored event once everything settled
    burst: bool  # store every delivery before the workers start: all processed at once
    # (position in the deliveries, operation): `prune` everything finished; `backfill`
    # (re-deliver, after prune, events already sent); `replay` every stored event from
    # a second store and processor on the same file (a CLI `replay` beside `serve`),
    # racing the serving processor; `reconfigure`: restart the bridge with its reverse
    # (and, for match: first, credit) rules renamed and split, as an operator might.
    operations: list[tuple[int, str]] = field(default_factory=list)


EXPONENTS = {"USD": 2, "EUR": 2, "JPY": 0}


def major(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-EXPONENTS[currency])


@st.composite
def reversals(draw: st.DrawFn, amount: int) -> tuple[list[Refund], Dispute | None]:
    left = amount
    refunds = []
    for _ in range(draw(st.integers(0, 3))):
        if left == 0:
            break
        part = draw(st.sampled_from([left, max(1, left // 2), max(1, left // 3), 1]))
        succeeded = draw(st.booleans()) or draw(st.booleans())  # mostly succeeded
        refunds.append(Refund(part, succeeded, draw(st.booleans())))
        if succeeded:
            left -= part
    dispute = None
    if draw(st.booleans()):
        # Also for more than the refunds left, the whole charge even once refunded in
        # full: the PSP lets a customer dispute a refunded charge.
        disputed = sorted({left, max(1, left // 2), amount} - {0})
        dispute = Dispute(draw(st.sampled_from(disputed)), draw(st.booleans()))
    return refunds, dispute
