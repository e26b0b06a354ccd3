"""PSP connectors: one module per PSP, the same contract in each.

A connector knows three things about its PSP and nothing about Credyt or the store:

- `verify(headers, body)`: is this webhook genuinely from the PSP? Raises
  `SignatureError` (with a `reason`: missing, malformed, mismatch, stale) or returns.
- `envelope(body)`: the event id and type, enough to store it. Raises
  `MalformedEventError`.
- `normalize(raw)`: the stored event as a `PaymentEvent`, or `Ignored` (with why) or
  `Waiting` (not final yet). Raises `EventError` when a payload we act on is broken.

and, for `credyt-bridge send`, the demo and the tests, how to produce a webhook:

- `sign(body, secret, timestamp)`: the signature headers the PSP would send.
- `sample_event(event_type, ...)`: a realistic event payload.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from bridge.errors import EventError
from bridge.events import Envelope, Normalized

# The moments a payment event may name. Anything outside is not a real payment's date
# (`created: 10**17`, a Paddle `occurred_at` in year 9999); read as is, it breaks date
# arithmetic (an expiry 30 days later overflows), so the event fails with this reason.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def checked_moment(what: str, value: object, moment: datetime | None) -> datetime | None:
    """`moment` if it lies in [EARLIEST, LATEST); else EventError naming `what` and `value`."""
    if moment is None or EARLIEST <= moment < LATEST:
        return moment
    raise EventError(_out_of_range(what, value))


def moment_of_unix(what: str, value: int) -> datetime:
    """A Unix time in seconds as an aware datetime, if it lies in [EARLIEST, LATEST)."""
    if not EARLIEST.timestamp() <= value < LATEST.timestamp():
        raise EventError(_out_of_range(what, value))
    return datetime.fromtimestamp(value, UTC)


def _out_of_range(what: str, value: object) -> str:
    shown = str(value)
    shown = shown if len(shown) <= 40 else shown[:40] + "..."
    return (
        f"{what} {shown} is out of range: a payment event's dates lie between "
        f"{EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}"
    )


class Connector(Protocol):
    psp: str  # "stripe" | "paddle"
    signature_header: str  # the header that carries the signature

    def verify(self, headers: Mapping[str, str], body: bytes) -> None: ...

    def envelope(self, body: bytes) -> Envelope: ...

    def normalize(self, raw: Mapping[str, Any]) -> Normalized: ...


class ConnectorFactory(Protocol):
    def __call__(
        self,
        *,
        secrets: Sequence[str],
        tolerance: float,
        customer_metadata_key: str = "credyt_customer_id",
        mode: str = "any",
    ) -> Connector: ...


def connector_types() -> dict[str, ConnectorFactory]:
    """Connector classes by config `type`, imported lazily (each PSP's SDK loads when used)."""
    from connectors.paddle import PaddleConnector
    from connectors.stripe import StripeConnector

    return {"stripe": StripeConnector, "paddle": PaddleConnector}


def known_event_types(connector_type: str) -> frozenset[str]:
    """The event types a connector type acts on (what a rule's `on:` may name)."""
    import importlib

    module = importlib.import_module(f"connectors.{connector_type}")
    return frozenset(module.EVENT_READERS)


def known_conditions(connector_type: str) -> frozenset[str]:
    """The `when:` conditions a rule of this connector type can be matched on."""
    import importlib

    module = importlib.import_module(f"connectors.{connector_type}")
    return frozenset(module.CONDITION_KEYS)
