"""Stripe payment histories: the stories one Stripe payment can have, as signed
events, and what they leave in the wallet."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from connectors import stripe
from tests.conftest import STRIPE_SECRET
from tests.helpers.histories import TOK_RATE, Story, major, reversals


class StripeStories:
    name = "stripe"
    secret = STRIPE_SECRET
    payment_events = [
        "invoice.paid",
        "invoice.payment_succeeded",
        "invoice_payment.paid",
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
    ]

    def config(self, options: dict[str, str], variant: int = 0) -> str:
        if variant:
            return self._renamed(options)
        tokens = ""
        if options["match"] == "all":
            tokens = f"""
      - name: tokens
        on: {json.dumps(self.payment_events)}
        credit: {{amount: paid, asset: TOK, rate: "{TOK_RATE}"}}
      - name: tokens-topup
        on: payment_intent.succeeded
        when: {{metadata: {{credyt_topup: "true"}}}}
        credit: {{amount: paid, asset: TOK, rate: "{TOK_RATE}"}}"""
        refund_on = (
            "[refund.created, refund.updated, charge.refunded]"
            if options["refunds"] == "refund_events"
            else "[charge.refunded]"
        )
        return f"""
  stripe:
    type: stripe
    secrets: ["{self.secret}"]
    match: {options["match"]}
    rules:
      - name: subscription-payment
        on: [invoice.paid, invoice.payment_succeeded, invoice_payment.paid]
        credit: {{amount: paid}}
      - name: topup-checkout
        on: [checkout.session.completed, checkout.session.async_payment_succeeded]
        credit: {{amount: paid}}
      - name: topup-payment-intent
        on: payment_intent.succeeded
        when: {{metadata: {{credyt_topup: "true"}}}}
        credit: {{amount: paid}}{tokens}
      - name: refund
        on: {refund_on}
        reverse: {{reason: external_refund}}
      - name: dispute
        on: [charge.dispute.created, charge.dispute.funds_withdrawn,
             charge.dispute.funds_reinstated, charge.dispute.closed]
        reverse: {{}}
"""

    def _renamed(self, options: dict[str, str]) -> str:
        """The same config with the reverse rules renamed and split one per event type
        (and, under match: first, the credit rules renamed): nothing of what was credited
        or reversed before may be applied again."""
        text = self.config(options)
        head, _, _ = text.partition("      - name: refund\n")
        if options["match"] == "first":
            for name in ("subscription-payment", "topup-checkout", "topup-payment-intent"):
                head = head.replace(f"name: {name}\n", f"name: {name}-v2\n")
        events = (
            ["refund.created", "refund.updated", "charge.refunded"]
            if options["refunds"] == "refund_events"
            else ["charge.refunded"]
        )
        disputes = [
            "charge.dispute.created",
            "charge.dispute.funds_withdrawn",
            "charge.dispute.funds_reinstated",
            "charge.dispute.closed",
        ]
        split = "".join(
            f"""      - name: reverse-{event.replace(".", "-")}
        on: [{event}]
        reverse: {{reason: external_refund}}
"""
            for event in events + disputes
        )
        return head + split

    @staticmethod
    def options() -> st.SearchStrategy[dict[str, str]]:
        return st.fixed_dictionaries(
            {
                "match": st.sampled_from(["first", "all"]),
                "refunds": st.sampled_from(["refund_events", "charge_refunded"]),
            }
        )

    @staticmethod
    @st.composite
    def story(draw: st.DrawFn, options: dict[str, str]) -> Story:
        kind = draw(st.sampled_from(["invoice_basil", "invoice_2020", "checkout", "pi_topup"]))
        currency = draw(st.sampled_from(["USD", "EUR", "JPY"]))
        amount = draw(st.integers(1, 500)) * 4
        refunds, dispute = draw(reversals(amount))
        payment_events = ["invoice.paid", "invoice.payment_succeeded"]
        choices: dict[str, Any] = {
            "invoice_events": draw(
                st.lists(st.sampled_from(payment_events), min_size=1, max_size=2, unique=True)
            ),
            # basil invoices name their PaymentIntent only in invoice_payment.paid: a
            # reversal needs it to find the invoice's credit
            "invoice_payment": bool(refunds or dispute) or draw(st.booleans()),
            "pi_event": draw(st.booleans()),
            # match: first credits a payment once even when two rules see it; with
            # match: all two rules seeing one payment would each credit it (by design)
            "pi_marked": options["match"] == "first" and draw(st.booleans()),
            "async": draw(st.booleans()),
            "charge_refunded_all": draw(st.booleans()),
            "dispute_debits": draw(
                st.lists(
                    st.sampled_from(["charge.dispute.created", "charge.dispute.funds_withdrawn"]),
                    min_size=1,
                    max_size=2,
                    unique=True,
                )
            ),
            "dispute_wins": draw(
                st.lists(
                    st.sampled_from(["charge.dispute.funds_reinstated", "charge.dispute.closed"]),
                    min_size=1,
                    max_size=2,
                    unique=True,
                )
            ),
        }
        return Story(kind, amount, currency, draw(st.booleans()), refunds, dispute, choices)

    def events(self, story: Story, tag: str, customer: str) -> list[dict[str, Any]]:
        """Every event Stripe sends for the story, each once, in no particular order."""
        c = story.choices
        currency = story.currency.lower()
        common: dict[str, Any] = {"currency": currency, "psp_customer": f"cus_{tag}"}
        hint = None if story.by_lookup else customer
        out: list[dict[str, Any]] = []
        counter = itertools.count()

        def add(event_type: str, object_id: str, **kwargs: Any) -> None:
            event_id = f"evt_{tag}_{next(counter)}"
            args = common | {"amount_minor": story.amount} | kwargs
            out.append(
                stripe.sample_event(event_type, event_id=event_id, object_id=object_id, **args)
            )

        pre_basil = {"api_version": "2020-08-27"}
        if story.kind in ("invoice_basil", "invoice_2020"):
            version = pre_basil if story.kind == "invoice_2020" else {}
            for event_type in c["invoice_events"]:
                add(event_type, f"in_{tag}", customer=hint, **version)
            if story.kind == "invoice_basil" and c["invoice_payment"]:
                add("invoice_payment.paid", f"inpay_{tag}", payment=f"in_{tag}")
            if c["pi_event"]:  # a renewal's PaymentIntent: no top-up mark, no credit
                invoice = {"invoice": f"in_{tag}"} if story.kind == "invoice_2020" else {}
                add("payment_intent.succeeded", f"pi_{tag}", **version, **invoice)
        elif story.kind == "checkout":
            if c["async"]:
                add("checkout.session.completed", f"cs_{tag}", customer=hint, status="unpaid")
                add("checkout.session.async_payment_succeeded", f"cs_{tag}", customer=hint)
            else:
                add("checkout.session.completed", f"cs_{tag}", customer=hint)
            if c["pi_event"]:
                mark = {"credyt_topup": "true"} if c["pi_marked"] else {}
                add("payment_intent.succeeded", f"pi_{tag}", customer=hint, metadata=mark)
        else:
            mark = {"credyt_topup": "true"}
            add("payment_intent.succeeded", f"pi_{tag}", customer=hint, metadata=mark)
        payment = f"pi_{tag}"
        refunded = 0
        for number, refund in enumerate(story.refunds):
            refund_id = f"re_{tag}r{number}"
            final = "succeeded" if refund.succeeded else "failed"
            if refund.via_pending or not refund.succeeded:
                add("refund.created", refund_id, payment=payment, amount_minor=refund.amount,
                    status="pending")  # fmt: skip
                add("refund.updated", refund_id, payment=payment, amount_minor=refund.amount,
                    status=final)  # fmt: skip
            else:
                add("refund.created", refund_id, payment=payment, amount_minor=refund.amount)
            if refund.succeeded:
                refunded += refund.amount
                last = number == max(i for i, r in enumerate(story.refunds) if r.succeeded)
                if last or c["charge_refunded_all"]:
                    add("charge.refunded", f"ch_{tag}", payment=payment, amount_minor=refunded,
                        payment_amount_minor=story.amount)  # fmt: skip
        if story.dispute is not None:
            dispute = {"payment": payment, "amount_minor": story.dispute.amount}
            for event_type in c["dispute_debits"]:
                add(event_type, f"dp_{tag}", **dispute)
            if story.dispute.won:
                for event_type in c["dispute_wins"]:
                    add(event_type, f"dp_{tag}", **dispute)
            else:
                add("charge.dispute.closed", f"dp_{tag}", status="lost", **dispute)
        return out

    def sign(self, event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(event).encode()
        return body, stripe.sign(body, self.secret)

    def expected(self, story: Story, options: dict[str, str]) -> dict[str, Decimal]:
        net = major(story.amount - story.reversed_minor(), story.currency)
        balances = {story.currency: net}
        if options["match"] == "all":
            balances["TOK"] = net * TOK_RATE
        return balances
