"""Paddle payment histories: the stories one Paddle transaction can have, as signed
events, and what they leave in the wallet."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from connectors import paddle
from tests.conftest import PADDLE_SECRET
from tests.helpers.histories import Story, major, reversals


class PaddleStories:
    name = "paddle"
    secret = PADDLE_SECRET

    def config(self, options: dict[str, str], variant: int = 0) -> str:
        if variant:  # renamed, and the reverse rule split per event type
            reverse = """      - name: adjustment-created
        on: [adjustment.created]
        reverse: {}
      - name: adjustment-updated
        on: [adjustment.updated]
        reverse: {}
"""
            name = "transaction-v2"
        else:
            reverse = """      - name: refund
        on: [adjustment.created, adjustment.updated]
        reverse: {}
"""
            name = "transaction"
        return f"""
  paddle:
    type: paddle
    secrets: ["{self.secret}"]
    rules:
      - name: {name}
        on: transaction.completed
        credit: {{amount: paid}}
{reverse}"""

    @staticmethod
    def options() -> st.SearchStrategy[dict[str, str]]:
        return st.just({"match": "first"})

    @staticmethod
    @st.composite
    def story(draw: st.DrawFn, options: dict[str, str]) -> Story:
        currency = draw(st.sampled_from(["USD", "EUR", "JPY"]))
        amount = draw(st.integers(1, 500)) * 4
        refunds, dispute = draw(reversals(amount))
        choices = {
            "replays": draw(st.integers(0, 2)),  # Paddle replays: same event_id, new ntf_
            "paid_too": draw(st.booleans()),  # transaction.paid comes first and is ignored
        }
        return Story(
            "transaction", amount, currency, draw(st.booleans()), refunds, dispute, choices
        )

    def events(self, story: Story, tag: str, customer: str) -> list[dict[str, Any]]:
        common: dict[str, Any] = {"currency": story.currency, "psp_customer": f"ctm_{tag}"}
        hint = None if story.by_lookup else customer
        txn = f"txn_{tag}"
        out: list[dict[str, Any]] = []
        counter = itertools.count()

        def add(event_type: str, object_id: str, **kwargs: Any) -> dict[str, Any]:
            event_id = f"evt_{tag}_{next(counter)}"
            args = common | {"amount_minor": story.amount} | kwargs
            event = paddle.sample_event(event_type, event_id=event_id, object_id=object_id, **args)
            out.append(event)
            return event

        completed = add("transaction.completed", txn, customer=hint, origin="web")
        for number in range(story.choices["replays"]):
            out.append(completed | {"notification_id": f"ntf_{tag}_replay{number}"})
        if story.choices["paid_too"]:
            add("transaction.paid", txn, customer=hint, origin="web")
        for number, refund in enumerate(story.refunds):
            adjustment = {"transaction_id": txn, "amount_minor": refund.amount}
            final = "approved" if refund.succeeded else "rejected"
            if refund.via_pending or not refund.succeeded:
                add("adjustment.created", f"adj_{tag}r{number}", status="pending_approval",
                    **adjustment)  # fmt: skip
                add("adjustment.updated", f"adj_{tag}r{number}", status=final, **adjustment)
            else:
                add("adjustment.created", f"adj_{tag}r{number}", **adjustment)
        if story.dispute is not None:
            chargeback = {"transaction_id": txn, "amount_minor": story.dispute.amount}
            add("adjustment.created", f"adj_{tag}cb", action="chargeback", **chargeback)
            if story.dispute.won:
                add("adjustment.created", f"adj_{tag}cbr", action="chargeback_reverse",
                    **chargeback)  # fmt: skip
        return out

    def sign(self, event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(event).encode()
        return body, paddle.sign(body, self.secret)

    def expected(self, story: Story, options: dict[str, str]) -> dict[str, Decimal]:
        return {story.currency: major(story.amount - story.reversed_minor(), story.currency)}
