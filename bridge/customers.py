"""Which Credyt customer a payment belongs to.

First the PSP's own metadata (`credyt_customer_id` by default), then Credyt's
`GET /customers?external_id=<PSP customer id>`, cached. A lookup that could not reach
Credyt is not a verdict: it raises `CredytUnavailableError` and the event is tried again.
"""

from __future__ import annotations

import asyncio
import time

from bridge.credyt import CredytClient
from bridge.errors import CustomerNotFoundError
from bridge.events import PaymentEvent


class CustomerResolver:
    def __init__(self, client: CredytClient, cache_seconds: float = 300.0) -> None:
        self._client = client
        self._ttl = cache_seconds
        self._cache: dict[str, tuple[str, float]] = {}
        self._lookups: dict[str, asyncio.Task[str | None]] = {}

    async def resolve(self, event: PaymentEvent, metadata_key: str) -> str:
        if event.customer_hint:
            return event.customer_hint
        external_id = event.psp_customer_id
        if not external_id:
            raise CustomerNotFoundError(
                f"no {metadata_key} in the payment's metadata and no PSP customer id to look up"
            )
        found = await self.find_by_external_id(external_id)
        if found is None:
            raise CustomerNotFoundError(
                f"no {metadata_key} in the payment's metadata and no Credyt customer with "
                f"external_id {external_id}"
            )
        return found

    async def find_by_external_id(self, external_id: str) -> str | None:
        cached = self._cache.get(external_id)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        task = self._lookups.get(external_id)
        if task is None:  # one lookup per id at a time, however many events wait on it
            task = asyncio.create_task(self._client.find_customer(external_id))
            self._lookups[external_id] = task
            task.add_done_callback(lambda _: self._lookups.pop(external_id, None))
        customer_id = await asyncio.shield(task)
        if customer_id is not None and self._ttl > 0:
            self._cache[external_id] = (customer_id, time.monotonic() + self._ttl)
        return customer_id
