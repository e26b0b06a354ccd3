"""Which Credyt customer a payment belongs to.

First the PSP's own metadata (`credyt_customer_id` by default), then Credyt's
`GET /customers?external_id=<PSP customer id>`, cached, in the Credyt account the event
is credited in (`X-CREDYT-ACCOUNT`). The connector's `customer_metadata` says how far a
metadata id is believed (the paying browser can set Paddle `custom_data` and Stripe
Checkout metadata): `trust` takes it, `verify` takes it only when that customer's
Credyt `external_id` is the PSP customer id (`CustomerMismatchError` otherwise), and
`ignore` never reads it (look-up only). What each answer does:

- metadata id: untrusted (Paddle.js lets the browser set `custom_data`), so it must be
  letters, digits, `_` and `-`, at most 64 characters; otherwise the event fails
  (`InvalidCustomerIdError`) and nothing is sent;
- 303 See Other: found; the id is taken from `Location` (and checked the same way);
- 404: no such customer; the event fails (`CustomerNotFoundError`), replayable;
- a retryable answer (network, timeout, 401/403, 408, 425, 429, 5xx) is not a verdict:
  `CredytUnavailableError`, and the event is tried again later;
- any other answer (400, 422, an unexpected 2xx or 3xx) fails the event with Credyt's
  answer in the reason (`CustomerLookupError`).
"""

from __future__ import annotations

import asyncio
import time

from bridge.credyt.client import CUSTOMER_ID, CredytClient
from bridge.errors import (
    CredytError,
    CredytUnavailableError,
    CustomerLookupError,
    CustomerMismatchError,
    CustomerNotFoundError,
    InvalidCustomerIdError,
)
from bridge.events import PaymentEvent


class CustomerResolver:
    def __init__(self, client: CredytClient, cache_seconds: float = 300.0) -> None:
        self._client = client
        self._ttl = cache_seconds
        # (Credyt account, external_id) -> (customer id, expiry)
        self._cache: dict[tuple[str, str], tuple[str, float]] = {}
        self._lookups: dict[tuple[str, str], asyncio.Task[str | None]] = {}

    async def resolve(self, event: PaymentEvent, metadata_key: str, policy: str = "trust") -> str:
        if event.customer_hint and policy != "ignore":
            customer = checked_customer_id(event.customer_hint, f"{metadata_key} in the metadata")
            if policy == "verify":
                await self.verify(event, customer, metadata_key)
            return customer
        if event.customer_hint:
            metadata_key = f"{metadata_key} (ignored: customer_metadata: ignore)"
        external_id = event.psp_customer_id
        if not external_id:
            raise CustomerNotFoundError(
                f"no {metadata_key} in the payment's metadata and no PSP customer id to look up"
            )
        try:
            found = await self.find_by_external_id(external_id, event.credyt_account)
        except CredytUnavailableError:
            raise
        except CredytError as exc:
            raise CustomerLookupError(
                f"no {metadata_key} in the payment's metadata, and Credyt refused the look-up "
                f"of external_id {external_id}: {exc}"
            ) from exc
        if found is None:
            raise CustomerNotFoundError(
                f"no {metadata_key} in the payment's metadata and no Credyt customer with "
                f"external_id {external_id}"
            )
        return checked_customer_id(found, f"the customer Credyt found for {external_id}")

    async def verify(self, event: PaymentEvent, customer: str, metadata_key: str) -> None:
        """`customer` (named in metadata) only if its Credyt external_id is the payer's."""
        payer = event.psp_customer_id
        if not payer:
            raise CustomerMismatchError(
                f"{metadata_key} in the metadata names {customer}, but the payment names no "
                "PSP customer to verify it against (customer_metadata: verify)"
            )
        try:
            exists, external_id = await self._client.customer_external_id(
                customer, account=event.credyt_account
            )
        except CredytUnavailableError:
            raise
        except CredytError as exc:
            raise CustomerLookupError(
                f"Credyt refused the read of customer {customer} to verify it: {exc}"
            ) from exc
        if not exists:
            raise CustomerNotFoundError(
                f"{metadata_key} in the metadata names {customer}, which Credyt does not know"
            )
        if external_id != payer:
            raise CustomerMismatchError(
                f"{metadata_key} in the metadata names {customer}, whose Credyt external_id "
                f"is {external_id or 'not set'}, not the paying customer {payer} "
                "(customer_metadata: verify): nothing is credited"
            )

    async def find_by_external_id(self, external_id: str, account: str | None = None) -> str | None:
        key = (account or "", external_id)
        cached = self._cache.get(key)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        task = self._lookups.get(key)
        if task is None:  # one lookup per id at a time, however many events wait on it
            task = asyncio.create_task(self._client.find_customer(external_id, account=account))
            self._lookups[key] = task
            task.add_done_callback(lambda _: self._lookups.pop(key, None))
        customer_id = await asyncio.shield(task)
        if customer_id is not None and self._ttl > 0:
            self._cache[key] = (customer_id, time.monotonic() + self._ttl)
        return customer_id


def checked_customer_id(value: object, source: str) -> str:
    """`value` if it is a safe Credyt customer id, else `InvalidCustomerIdError`."""
    if isinstance(value, str) and CUSTOMER_ID.match(value):
        return value
    shown = repr(value)[:80]
    raise InvalidCustomerIdError(
        f"{source} is not a valid Credyt customer id ({shown}): it must be 1 to 64 letters, "
        "digits, '_' or '-'"
    )
