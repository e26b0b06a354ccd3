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
from typing import Any, Protocol

from bridge.events import Envelope, Normalized


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
