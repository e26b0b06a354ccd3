"""A Stripe world for reconcile: invoices paid, some refunded, some disputed, served by
the PSP stand-in (tests/helpers/psp_api.py) and sent to a bridge as webhooks."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from connectors import stripe
from tests.conftest import STRIPE_SECRET, bridge_config
from tests.helpers.psp_api import PspApi

# Before 2025-03-31 an invoice names its PaymentIntent and Charge, so refunds and
# disputes (which name those) find the invoice's credit without invoice_payment.paid.
API_VERSION = "2024-06-20"

RECONCILE_CONNECTORS = """
  stripe:
    type: stripe
    api_base: {api_url}
    secrets: ["{secret}"]
    rules:
      - name: subscription-payment
        on: invoice.paid
        credit:
          amount: paid
      - name: refunds
        on: [refund.created, refund.updated]
        reverse: {{}}
      - name: disputes
        on: charge.dispute.created
        reverse: {{}}
"""


def reconcile_config(tmp_path: Path, sandbox_url: str, api_url: str) -> Path:
    connectors = RECONCILE_CONNECTORS.format(api_url=api_url, secret=STRIPE_SECRET)
    path = tmp_path / "config.yaml"
    path.write_text(bridge_config(str(tmp_path / "bridge.db"), sandbox_url, connectors))
    return path


def invoice_event(n: int, customer: str, created: int, tag: str = "rc") -> dict[str, Any]:
    return stripe.sample_event(
        "invoice.paid",
        event_id=f"evt_{tag}_in_{n:06d}",
        object_id=f"in_{tag}_{n:06d}",
        customer=customer,
        amount_minor=1000 + n,
        currency="usd",
        api_version=API_VERSION,
        created=created,
    )


def refund_event(n: int, created: int, minor: int = 500, tag: str = "rc") -> dict[str, Any]:
    return stripe.sample_event(
        "refund.updated",
        event_id=f"evt_{tag}_re_{n:06d}",
        object_id=f"re_{tag}_{n:06d}",
        amount_minor=minor,
        currency="usd",
        api_version=API_VERSION,
        payment=f"in_{tag}_{n:06d}",
        created=created,
    )


def dispute_event(n: int, created: int, tag: str = "rc") -> dict[str, Any]:
    return stripe.sample_event(
        "charge.dispute.created",
        event_id=f"evt_{tag}_dp_{n:06d}",
        object_id=f"dp_{tag}_{n:06d}",
        amount_minor=1000 + n,
        currency="usd",
        api_version=API_VERSION,
        payment=f"in_{tag}_{n:06d}",
        created=created,
    )


def data_object(event: dict[str, Any]) -> dict[str, Any]:
    """The object an event carries, as the PSP's list shows it (with its `created`)."""
    obj: dict[str, Any] = event["data"]["object"]
    return {"created": event["created"], **obj}


@dataclass
class StripeWorld:
    """`payments` invoices; the first `refunded` refunded (5.00 each), the next
    `disputed` disputed in full; every object created in the last `spread` seconds."""

    customer: str
    payments: int
    refunded: int
    disputed: int
    spread: float = 6 * 3600
    tag: str = "rc"
    invoices: list[dict[str, Any]] = field(default_factory=list)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    disputes: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        now = int(time.time())
        step = self.spread / max(self.payments, 1)
        for n in range(self.payments):
            created = now - int(self.spread) + int(n * step)
            self.invoices.append(invoice_event(n, self.customer, created, self.tag))
        for n in range(self.refunded):
            self.refunds.append(refund_event(n, now - 60, tag=self.tag))
        for n in range(self.refunded, self.refunded + self.disputed):
            self.disputes.append(dispute_event(n, now - 60, tag=self.tag))

    @property
    def events(self) -> list[dict[str, Any]]:
        return [*self.invoices, *self.refunds, *self.disputes]

    def serve(self, api: PspApi) -> None:
        api.set_stripe_objects("invoices", [data_object(e) for e in self.invoices])
        api.set_stripe_objects("refunds", [data_object(e) for e in self.refunds])
        api.set_stripe_objects("disputes", [data_object(e) for e in self.disputes])

    def balance(self) -> Decimal:
        """What the customer's USD wallet holds when every object is applied once."""
        paid = sum((Decimal(1000 + n) for n in range(self.payments)), Decimal(0))
        refunded = Decimal(500) * self.refunded
        disputed = sum(
            (Decimal(1000 + n) for n in range(self.refunded, self.refunded + self.disputed)),
            Decimal(0),
        )
        return (paid - refunded - disputed) / 100
