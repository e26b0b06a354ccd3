"""What every connector shares: the verify loop, dispatch to readers, payload helpers.

A connector subclasses `WebhookConnector`, declares its PSP's facts as class attributes
(see `connectors.ConnectorType`) and fills in two methods for each half of the work:

- signatures: `read_signature(header, body)` parses the signature header (raising
  `SignatureError` with reason `malformed`), `signature_matches(signed, secret)` checks
  it against one secret. `verify` looks the header up, tries every configured secret
  (so a secret can be rolled) and then checks the timestamp, so a forgery is reported
  as a `mismatch`, never as `stale`.
- events: `envelope(body)` reads the event id and type; `data_object(raw)` finds the
  object a reader reads. `normalize` looks the type up in `event_readers` (an unknown
  type is `Ignored`, never an error), applies `mode_filter` and calls the reader.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any, ClassVar

from bridge.errors import EventError, MalformedEventError, SignatureError
from bridge.events import Amounts, Envelope, Ignored, Normalized
from bridge.money import parse_minor, to_major
from connectors import SampleRequest

Raw = Mapping[str, Any]

# The moments a payment event may name. Anything outside is not a real payment's date
# (`created: 10**17`, a Paddle `occurred_at` in year 9999); read as is, it breaks date
# arithmetic (an expiry 30 days later overflows), so the event fails with this reason.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class SignedRequest:
    """A webhook's signature header, read: what a secret is checked against."""

    header: str  # the header as sent
    body: bytes  # the raw body
    timestamp: str  # the signed timestamp, as sent (Unix seconds)
    signatures: tuple[bytes, ...] = ()  # the signatures the header carries, if parsed here


class WebhookConnector:
    """The shared skeleton of a connector; each PSP's subclass fills in its parts."""

    psp: ClassVar[str]  # the config `type` and the PSP namespace of stored events
    title: ClassVar[str]  # how adjustments and messages name the PSP
    signature_header: ClassVar[str]  # lower case
    signature_title: ClassVar[str]  # the header as messages spell it
    webhook_secret_variable: ClassVar[str]  # the variable `send` signs with
    api_key_variable: ClassVar[str]  # the variable `backfill` lists with
    default_tolerance: ClassVar[float] = 300.0
    condition_keys: ClassVar[frozenset[str]]  # the `when:` keys its events carry
    linking_event_types: ClassVar[tuple[str, ...]] = ()  # backfilled for reversal rules
    # Payment events that Credyt's own top-up rails (Billing Portal, POST /top-ups) also
    # make on a PSP account connected to Credyt: a rule crediting them needs a marker.
    topup_event_types: ClassVar[tuple[str, ...]] = ()
    object_prefixes: ClassVar[Mapping[str, str]]  # event type prefix -> object id prefix
    type_key: ClassVar[str]  # the payload key naming the event type
    event_readers: ClassVar[Mapping[str, Callable[[Any, Raw, Raw], Normalized]]]
    # The amount bases (`amount: paid | net | subtotal`) each payment event type carries,
    # and why a basis is missing where it is: what the config refuses at load.
    amount_bases: ClassVar[Mapping[str, tuple[str, ...]]]
    missing_basis_reasons: ClassVar[Mapping[str, str]] = {}

    def __init__(
        self,
        *,
        secrets: Sequence[str],
        tolerance: float | None = 300,
        customer_metadata_key: str = "credyt_customer_id",
        mode: str = "any",
    ) -> None:
        self.secrets = tuple(secrets)
        self.tolerance = tolerance
        self.customer_metadata_key = customer_metadata_key
        self.mode = mode

    @classmethod
    def event_types(cls) -> frozenset[str]:
        """The event types this connector acts on (what a rule's `on:` may name)."""
        return frozenset(cls.event_readers)

    @classmethod
    def amount_basis_error(cls, event_type: str, basis: str) -> str | None:
        """Why a credit of `basis` can not be made of `event_type` events; None if it can."""
        if basis == "paid" or basis in cls.amount_bases.get(event_type, ("paid",)):
            return None
        why = cls.missing_basis_reasons.get(event_type, "its payload has no tax breakdown")
        return f"amount {basis} is not known for {event_type}: {why}"

    # -- verification -------------------------------------------------------------

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        header = header_value(headers, self.signature_header)
        if not header:
            raise SignatureError(f"missing {self.signature_title} header", reason="missing")
        signed = self.read_signature(header, body)
        matched = False
        for secret in self.secrets:
            matched |= self.signature_matches(signed, secret)
        if not matched:
            raise SignatureError(
                f"{self.signature_title} matches none of the connector's secrets "
                f"(check {self.webhook_secret_variable})",
                reason="mismatch",
            )
        if self.tolerance and abs(time.time() - int(signed.timestamp)) > self.tolerance:
            raise SignatureError(
                f"{self.signature_title} timestamp {signed.timestamp} is outside the "
                f"{self.tolerance:g} s tolerance",
                reason="stale",
            )

    def read_signature(self, header: str, body: bytes) -> SignedRequest:
        raise NotImplementedError

    def signature_matches(self, signed: SignedRequest, secret: str) -> bool:
        raise NotImplementedError

    # -- normalization ------------------------------------------------------------

    def envelope(self, body: bytes) -> Envelope:
        raise NotImplementedError

    def normalize(self, raw: Raw) -> Normalized:
        event_type = str(raw.get(self.type_key, ""))
        reader = self.event_readers.get(event_type)
        if reader is None:
            return Ignored(f"event type {event_type} is not one the bridge acts on")
        filtered = self.mode_filter(raw)
        if filtered is not None:
            return filtered
        return reader(self, raw, self.data_object(raw))

    def mode_filter(self, raw: Raw) -> Ignored | None:
        """Ignored when the event's live/test mode is not the connector's `mode`."""
        return None

    def data_object(self, raw: Raw) -> Raw:
        raise NotImplementedError


# -- payload readers ---------------------------------------------------------------


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """A header by lower-case name, whatever its case (Starlette's Headers ignore case;
    a plain mapping, in tests or backfill, may not)."""
    value = headers.get(name)
    if value:
        return value
    for key, candidate in headers.items():
        if key.lower() == name:
            return candidate
    return value


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise MalformedEventError("body is not valid JSON") from exc
    if not isinstance(raw, dict):
        raise MalformedEventError("body is not a JSON object")
    return raw


def mapping(value: Any) -> Raw:
    return value if isinstance(value, Mapping) else {}


def attributes(**values: Any) -> dict[str, str]:
    return {k: str(v) for k, v in values.items() if v is not None}


def whole_number(value: Any) -> int:
    """An int that is not a bool, else 0 (a quantity)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


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


def optional_minor(obj: Raw, key: str, what: str) -> int | None:
    """An amount of minor units at `key`, None when the payload does not have it."""
    value = obj.get(key)
    return None if value is None else parse_minor(value, field=f"{what} {key}")


def share(value: int | None, part: int, whole: int | None) -> int | None:
    """`value * part / whole` in whole minor units, rounded half even: the part of an
    object's figure that a payment of `part` of its `whole` paid (an invoice a customer
    balance paid in part; a currency conversion). `value` itself when part == whole."""
    if value is None or whole is None:
        return None
    if part == whole:
        return value
    if whole == 0:
        return 0
    with localcontext() as ctx:
        ctx.prec = 60
        exact = Decimal(value) * Decimal(part) / Decimal(whole)
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def amounts_of(
    currency: str,
    exponent: int,
    *,
    paid: int,
    tax: int | None = None,
    subtotal: int | None = None,
    discount: int | None = None,
    presentment: tuple[str, Decimal] | None = None,
) -> Amounts:
    """The `Amounts` of a payment from minor units of `currency`; net is paid less tax."""

    def major(minor: int | None) -> Decimal | None:
        return None if minor is None else to_major(minor, exponent)

    return Amounts(
        currency=currency,
        paid=to_major(paid, exponent),
        net=major(None if tax is None else paid - tax),
        subtotal=major(subtotal),
        tax=major(tax),
        discount=major(discount),
        presentment_currency=presentment[0] if presentment else None,
        presentment_amount=presentment[1] if presentment else None,
    )


def sample_arguments(request: SampleRequest, payment_keyword: str) -> dict[str, Any]:
    """The keywords of a connector's `sample_event` for `request`; the payment a
    reversal names goes in `payment_keyword`, defaults stand for what is not given."""
    arguments: dict[str, Any] = {
        "event_id": request.event_id,
        "object_id": request.object_id,
        "customer": request.customer,
        "amount_minor": request.amount_minor,
        "currency": request.currency,
    }
    if request.psp_customer:
        arguments["psp_customer"] = request.psp_customer
    if request.payment:
        arguments[payment_keyword] = request.payment
    if request.tax_minor:
        arguments["tax_minor"] = request.tax_minor
    return arguments
