"""PSP connectors: one folder per PSP, the same contract in each, one registry.

A connector knows its PSP and nothing about Credyt or the store. An instance
(`Connector`) reads webhooks:

- `verify(headers, body)`: is this webhook genuinely from the PSP? Raises
  `SignatureError` (with a `reason`: missing, malformed, mismatch, stale) or returns.
- `envelope(body)`: the event id and type, enough to store it. Raises
  `MalformedEventError`.
- `normalize(raw)`: the stored event as a `PaymentEvent`, or `Ignored` (with why) or
  `Waiting` (not final yet). Raises `EventError` when a payload we act on is broken.

Its class (`ConnectorType`) holds what the rest of the bridge asks about the PSP: its
name and title, currency exponents, default tolerance, the event types and `when:`
conditions its rules may use, which amount bases each payment event carries, config
warnings, how to sign and produce sample webhooks (`send`, the demo, the tests), its
event list for `backfill`, where it sends webhooks (`check --online`) and its list of
the objects that move money for `reconcile`.

`REGISTRY` names every connector type; `connectors.base` is the skeleton they share.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from bridge.errors import ConfigError
from bridge.events import Envelope, Normalized

if TYPE_CHECKING:
    from connectors.listing import EventSource, ObjectSource
    from connectors.subscriptions import Subscription


class Connector(Protocol):
    @property
    def psp(self) -> str: ...  # the connector type's name: "stripe", "paddle"

    @property
    def signature_header(self) -> str: ...  # the header that carries the signature

    def verify(self, headers: Mapping[str, str], body: bytes) -> None: ...

    def envelope(self, body: bytes) -> Envelope: ...

    def normalize(self, raw: Mapping[str, object]) -> Normalized: ...


@dataclass(frozen=True)
class SampleRequest:
    """What `credyt-bridge send` asks a connector type to produce a webhook of."""

    event_type: str
    event_id: str
    object_id: str
    customer: str | None  # the Credyt customer id, put in the payment's metadata
    psp_customer: str | None
    amount_minor: int
    currency: str
    payment: str | None = None  # for reversals: the payment they reverse
    tax_minor: int = 0  # the tax inside amount_minor (tax-exclusive pricing)


class ConnectorType(Protocol):
    """A connector class: the constructor and the PSP's facts, checked by mypy."""

    @property
    def psp(self) -> str: ...

    @property
    def title(self) -> str: ...  # how adjustment descriptions name the PSP

    @property
    def webhook_secret_variable(self) -> str: ...  # STRIPE_WEBHOOK_SECRET...

    @property
    def api_key_variable(self) -> str: ...  # what backfill reads the API key from

    @property
    def default_tolerance(self) -> float: ...  # seconds a signature's timestamp may be off

    @property
    def condition_keys(self) -> frozenset[str]: ...  # the `when:` keys its events carry

    @property
    def linking_event_types(self) -> tuple[str, ...]: ...  # backfilled for reversal rules

    @property
    def topup_event_types(self) -> tuple[str, ...]: ...  # what Credyt's own rails also make

    @property
    def object_prefixes(self) -> Mapping[str, str]: ...  # event type prefix -> id prefix

    def __call__(
        self,
        *,
        secrets: Sequence[str],
        tolerance: float,
        customer_metadata_key: str = "credyt_customer_id",
        mode: str = "any",
    ) -> Connector: ...

    def event_types(self) -> frozenset[str]: ...  # what a rule's `on:` may name

    def exponent(self, currency: str) -> int: ...  # decimals of the PSP's amounts

    # Why `amount: <basis>` can not be credited of `event_type` (no tax information in
    # its payload); None when it can.
    def amount_basis_error(self, event_type: str, basis: str) -> str | None: ...

    def rule_warning(self, on: Sequence[str], metadata: Mapping[str, str]) -> str | None: ...

    def api_version_error(self, value: str) -> str | None: ...  # of `api_version:`

    def sign(self, body: bytes, secret: str, timestamp: int | None = None) -> dict[str, str]: ...

    def sample(self, request: SampleRequest) -> dict[str, object]: ...

    def events_api(
        self, api_key: str, api_base: str | None, api_version: str, account: str | None = None
    ) -> EventSource: ...  # `account`: a connected account to list for (Stripe Connect)

    def subscriptions(  # where the PSP sends webhooks (`check --online`)
        self, api_key: str, api_base: str | None, api_version: str
    ) -> list[Subscription]: ...

    def objects_api(self, api_key: str, api_base: str | None, api_version: str) -> ObjectSource: ...


def _stripe() -> ConnectorType:
    from connectors.stripe import StripeConnector

    return StripeConnector


def _paddle() -> ConnectorType:
    from connectors.paddle import PaddleConnector

    return PaddleConnector


# Every connector type by config `type`, each imported when first used (with its SDK).
REGISTRY: dict[str, Callable[[], ConnectorType]] = {"stripe": _stripe, "paddle": _paddle}


def connector_names() -> tuple[str, ...]:
    """The config `type`s there are connectors for, without importing any."""
    return tuple(REGISTRY)


def connector_type(name: str) -> ConnectorType:
    """The connector class of config `type` `name`; ConfigError if there is none."""
    load = REGISTRY.get(name)
    if load is None:
        raise ConfigError(
            f"unknown connector type {name!r} (expected one of: {', '.join(REGISTRY)})"
        )
    return load()


def connector_types() -> dict[str, ConnectorType]:
    """Connector classes by config `type`."""
    return {name: load() for name, load in REGISTRY.items()}


def known_event_types(name: str) -> frozenset[str]:
    """The event types a connector type acts on (what a rule's `on:` may name)."""
    return connector_type(name).event_types()


def known_conditions(name: str) -> frozenset[str]:
    """The `when:` conditions a rule of this connector type can be matched on."""
    return connector_type(name).condition_keys


def psp_title(psp: str) -> str:
    """How messages and adjustment descriptions name a PSP: "Stripe", "Paddle"."""
    load = REGISTRY.get(psp)
    return load().title if load is not None else psp
