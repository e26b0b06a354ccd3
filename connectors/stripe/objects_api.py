"""Stripe's objects that move money, for reconcile: paid invoices, succeeded
PaymentIntents, paid payment-mode Checkout Sessions, refunds and disputes.

Each list (`GET /v1/invoices?status=paid&created[gte]=..`, ...) is read through the stripe
library, one page at a time with `starting_after`, and each object is wrapped as the
snapshot event that would have carried it (`invoice.paid`, `refund.updated`, ...), so the
connector's readers give it the payment key the live webhook gets.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.errors import ReconcileError
from connectors.listing import ListedObject, raw_list
from connectors.stripe.api_answers import answer_text
from connectors.stripe.events_api import STRIPE_API_BASE

Obj = dict[str, Any]


@dataclass(frozen=True)
class StripeList:
    """One Stripe list: the library service that reads it, its filter, the events that
    carry its objects (the first the rules use is the wrapper), and which objects count."""

    service: str  # attribute path under client.v1
    params: tuple[tuple[str, str], ...]
    event_types: tuple[str, ...]
    keep: Callable[[Obj], bool]


def _paid_session(session: Obj) -> bool:
    return session.get("mode") == "payment" and session.get("payment_status") == "paid"


def _won(dispute: Obj) -> bool:
    return dispute.get("status") == "won"


def _withdrawn(dispute: Obj) -> bool:
    return not str(dispute.get("status") or "").startswith("warning_")


STRIPE_LISTS = (
    StripeList(
        "invoices", (("status", "paid"),), ("invoice.paid", "invoice.payment_succeeded"), bool
    ),
    StripeList(
        "payment_intents",
        (),
        ("payment_intent.succeeded",),
        lambda intent: intent.get("status") == "succeeded",
    ),
    StripeList(
        "checkout.sessions",
        (("status", "complete"),),
        ("checkout.session.completed", "checkout.session.async_payment_succeeded"),
        _paid_session,
    ),
    StripeList(
        "refunds",
        (),
        ("refund.updated", "refund.created"),
        lambda refund: refund.get("status") == "succeeded",
    ),
    StripeList(
        "disputes",
        (),
        ("charge.dispute.funds_withdrawn", "charge.dispute.created"),
        _withdrawn,
    ),
    # A dispute won back is a second movement of money: its reinstatement.
    StripeList("disputes", (), ("charge.dispute.funds_reinstated", "charge.dispute.closed"), _won),
)


class StripeObjects:
    """Stripe's money-moving objects created in a window, read lazily."""

    psp = "stripe"
    listable_types = frozenset(t for listing in STRIPE_LISTS for t in listing.event_types)

    def __init__(self, api_key: str, api_base: str | None = None) -> None:
        import stripe

        self._http = stripe.new_default_http_client(timeout=30)
        client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base or STRIPE_API_BASE},
            max_network_retries=2,
            http_client=self._http,
        )
        self._v1: Any = getattr(client, "v1", client)

    def objects(self, since: float, until: float, types: Sequence[str]) -> Iterator[ListedObject]:
        for listing in STRIPE_LISTS:
            wrapper = next((t for t in listing.event_types if t in types), None)
            if wrapper is None:
                continue
            for obj, raw in self._pages(listing, since, until):
                if listing.keep(obj):
                    yield _wrap(obj, raw, wrapper)

    def _pages(self, listing: StripeList, since: float, until: float) -> Iterator[tuple[Obj, str]]:
        service: Any = self._v1
        for name in listing.service.split("."):
            service = getattr(service, name)
        params: Any = {
            "created": {"gte": int(since), "lt": int(until) + 1},
            "limit": 100,
            **dict(listing.params),
        }
        while True:
            page, items = raw_list(self._page(service, params), "Stripe", "id", None)
            yield from items
            if not items or not page.get("has_more"):
                return
            params["starting_after"] = str(items[-1][0]["id"])

    def _page(self, service: Any, params: Any) -> str:
        _, body = answer_text(
            lambda: service.list(params),
            ReconcileError,
            doing="listing Stripe objects",
            what="the list",
        )
        return body

    def close(self) -> None:
        self._http.close()  # type: ignore[no-untyped-call]


def _wrap(obj: Obj, raw: str, event_type: str) -> ListedObject:
    """The snapshot event `event_type` carrying `obj` (its listed text, unchanged)."""
    object_id = str(obj["id"])
    suffix = ":reinstated" if event_type in STRIPE_LISTS[-1].event_types else ""
    event_id = f"evt_reconcile_{object_id}{suffix}"
    created = int(obj.get("created") or 0)
    head = {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "created": created,
        "livemode": obj.get("livemode") is True,
    }
    envelope = json.dumps(head)[:-1] + ', "data": {"object": ' + raw + "}}"
    return ListedObject(object_id, event_id, event_type, float(created), envelope.encode())
