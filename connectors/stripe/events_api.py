"""Stripe's event list for backfill: `GET /v1/events?created[gte]=..&types[]=..`.

Stripe keeps events 30 days and lists them newest first; the stripe library pages with
`starting_after`, at most 20 types per request. A Connect platform lists a connected
account's events with the `Stripe-Account` header; each listed event is stored with
that `account`, as its webhook to the platform's Connect endpoint would carry it, so it
is credited in that account's Credyt account and never in the platform's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

from bridge.errors import BackfillError
from connectors.listing import DAY, ListedEvent, raw_list
from connectors.stripe.api_answers import answer_text

STRIPE_API_BASE = "https://api.stripe.com"
STRIPE_MAX_TYPES = 20  # Stripe's limit on types[] per list request
_ACCOUNT = re.compile(r"^acct_[A-Za-z0-9]{1,64}$")


class StripeEvents:
    """Stripe's `GET /v1/events` through the stripe library, one page at a time.

    Each event's body is its text in the list response, byte for byte: the library's
    objects are not re-serialized (from stripe 15 on they hold `Decimal` for
    `decimal_string` fields, which `json.dumps` refuses, and a re-encoding would not be
    what Stripe sent anyway).
    """

    psp = "stripe"
    retention = 30 * DAY

    def __init__(
        self, api_key: str, api_base: str | None = None, *, account: str | None = None
    ) -> None:
        import stripe

        if account is not None and not _ACCOUNT.match(account):
            raise BackfillError(f"{account!r} is not a Stripe account id (acct_...)")
        self.account = account
        self._options: Any = {"stripe_account": account} if account else {}
        self._http = stripe.new_default_http_client(timeout=30)
        client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base or STRIPE_API_BASE},
            max_network_retries=2,
            http_client=self._http,
        )
        # stripe 12+ keeps the services under `v1` (and warns on the old attribute).
        self._events = getattr(client, "v1", client).events
        self.cursor: str | None = None

    def events(
        self, since: float, types: Sequence[str], resume: str | None = None
    ) -> Iterator[ListedEvent]:
        first, after = _stripe_cursor(resume)
        for start in range(first, len(types), STRIPE_MAX_TYPES):
            params: Any = {
                "created": {"gte": int(since)},
                "types": list(types[start : start + STRIPE_MAX_TYPES]),
                "limit": 100,
            }
            if after:
                params["starting_after"] = after
            after = None
            while True:
                page, items = raw_list(self._page(params), "Stripe", "id", "type")
                for item, raw in items:
                    yield ListedEvent(
                        str(item["id"]),
                        str(item["type"]),
                        float(item.get("created") or 0),
                        self._of_account(item, raw).encode(),
                    )
                    # the consumer has stored it: a rerun may start after it
                    self.cursor = f"{start}:{item['id']}" if start else str(item["id"])
                if not items or not page.get("has_more"):
                    break
                params["starting_after"] = str(items[-1][0]["id"])

    def _of_account(self, item: Any, raw: str) -> str:
        """The event's text, carrying the connected account it was listed for: Stripe
        names it in `account` on Connect webhooks; where a listed event does not, it is
        added in front, leaving the rest byte for byte. One naming another is refused."""
        if self.account is None:
            return raw
        named = item.get("account")
        if named == self.account:
            return raw
        if named is not None:
            raise BackfillError(
                f"Stripe listed event {item['id']} of account {named} for {self.account}"
            )
        start = raw.index("{") + 1
        return raw[:start] + f'"account": {json.dumps(self.account)}, ' + raw[start:]

    def event(self, event_id: str) -> ListedEvent:
        """`GET /v1/events/{id}`, its body as Stripe sent it."""
        found, body = answer_text(
            lambda: self._events.retrieve(event_id),
            BackfillError,
            doing=f"fetching Stripe event {event_id}",
            what="the event",
            missing=f"Stripe has no event {event_id!r}",
        )
        return ListedEvent(str(found.id), str(found.type), float(found.created or 0), body.encode())

    def _page(self, params: Any) -> str:
        _, body = answer_text(
            lambda: self._events.list(params, self._options),
            BackfillError,
            doing="listing Stripe events",
            what="the event list",
        )
        return body

    def close(self) -> None:
        self._http.close()  # type: ignore[no-untyped-call]


def _stripe_cursor(resume: str | None) -> tuple[int, str | None]:
    """`evt_..` or `<types offset>:evt_..` (when the rules use more than 20 types)."""
    if not resume:
        return 0, None
    offset, sep, event_id = resume.rpartition(":")
    if not sep:
        return 0, resume
    if not offset.isdigit() or not event_id:
        raise BackfillError(f"--resume {resume!r} is not a cursor this backfill printed")
    return int(offset), event_id
