"""Asset precision: how many decimal places Credyt keeps for an asset, and credits cut to fit.

Credyt describes every asset at `GET /assets/{code}`, `precision` among its fields. An
amount with more places than that is not documented to be accepted, so every credit is
quantized to its asset's precision before it is recorded, rounding toward zero
(`ROUND_DOWN`): a credit never grants more than was paid (JPY 1498.5 credits 1498,
KWD 12.3456 credits 12.345).

Where the precision comes from, first match wins:

1. `credyt.assets` in the config (`{TOK: 0}`), for custom assets or to pin a value;
2. Credyt's answer, read once per asset (and Credyt account: a connected account's
   custom assets are its own, asked with `X-CREDYT-ACCOUNT`) and kept for the life of
   the process.

Credyt unreachable (network, 5xx, 429) raises `CredytUnavailableError`: the event is
tried again later, never credited with a guessed precision. An asset Credyt does not
know (404), or one it gives no precision for, raises `EventError`: the event is
`failed` with a reason naming the asset and the config key that would settle it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from decimal import ROUND_DOWN, Decimal

from bridge.credyt.client import CredytClient
from bridge.errors import CredytError, CredytUnavailableError, EventError

ROUNDING = ROUND_DOWN  # toward zero: never credit more than the payment pays for


def quantize(amount: Decimal, precision: int) -> Decimal:
    """`amount` cut to `precision` decimal places, toward zero: 12.3456, 3 -> 12.345."""
    return amount.quantize(Decimal(1).scaleb(-precision), rounding=ROUNDING)


class AssetPrecisions:
    """The precision of each asset, from the config or from Credyt, cached."""

    def __init__(self, client: CredytClient, overrides: Mapping[str, int] | None = None) -> None:
        self._client = client
        self._overrides = {code.upper(): places for code, places in (overrides or {}).items()}
        self._cache: dict[tuple[str, str], int] = {}  # (Credyt account, code) -> places
        self._lookups: dict[tuple[str, str], asyncio.Task[int]] = {}

    async def precision(self, code: str, account: str | None = None) -> int:
        """`account`: the connected Credyt account the credit goes to, None: the key's."""
        if code.upper() in self._overrides:
            return self._overrides[code.upper()]
        key = (account or "", code.upper())
        if key in self._cache:
            return self._cache[key]
        task = self._lookups.get(key)
        if task is None:  # one look-up per asset at a time, however many events wait on it
            task = asyncio.create_task(self._fetch(code, account))
            self._lookups[key] = task
            task.add_done_callback(lambda _: self._lookups.pop(key, None))
        places = await asyncio.shield(task)
        self._cache[key] = places
        return places

    async def _fetch(self, code: str, account: str | None) -> int:
        try:
            asset = await self._client.get_asset(code, account=account)
        except CredytUnavailableError as exc:
            raise CredytUnavailableError(
                f"could not read the precision of asset {code}: {exc}",
                status_code=exc.status_code,
                retry_after=exc.retry_after,
            ) from exc
        except CredytError as exc:
            if exc.status_code == 404:
                raise EventError(
                    f"Credyt has no asset {code} (GET /assets/{code} answered 404): create it "
                    f"in Credyt, or set its precision under credyt.assets"
                ) from exc
            raise EventError(f"Credyt refused the look-up of asset {code}: {exc}") from exc
        if asset.precision is None:
            raise EventError(
                f"Credyt gives no precision for asset {code}: set it under credyt.assets"
            )
        return asset.precision
