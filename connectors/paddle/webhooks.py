"""Paddle Billing connector: verify `Paddle-Signature`, read transactions and adjustments.

Signatures: `Paddle-Signature: ts=<unix>;h1=<hex>[;h1=<hex>...]`, an HMAC-SHA256 of
`"{ts}:{raw body}"` keyed with the notification destination's secret used verbatim
(`pdl_ntfset_...`). Every `h1` is compared, in constant time, with the digest of every
configured secret and the delivery passes if any pair matches, so a secret can be
rolled (Paddle's Node SDK checks only the last `h1`; we check them all). The HMAC is
checked before the timestamp, so a forged request is reported as a mismatch, never as
stale.

Default tolerance, 300 s: Paddle's SDKs reject timestamps older than 5 s. Paddle signs
every delivery attempt afresh, so a short window would be safe against retries, but a
few seconds of clock skew or of queueing in a proxy would then turn genuine deliveries
into 400s that Paddle retries for days. We use 300 s, as for Stripe; the HMAC already
covers the timestamp, so the window only bounds replays of a captured request. It is
configurable, and 0 or None turns the check off.

Mode: Paddle payloads carry no live/test flag (sandbox and live are separate accounts
with separate destinations and secrets), so `mode` is accepted for symmetry with
Stripe and not enforced; `livemode` is always None.

The readers are in `connectors.paddle.readers`, signing and sample events in
`connectors.paddle.samples`, the event list for backfill in `connectors.paddle.events_api`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence

from bridge.errors import BackfillError, EventError, MalformedEventError, SignatureError
from bridge.events import Envelope, Ignored
from connectors.base import Raw, SignedRequest, parse_json
from connectors.listing import EventSource, ObjectSource
from connectors.paddle import samples
from connectors.paddle.amounts import AMOUNT_BASES
from connectors.paddle.events_api import PaddleEvents
from connectors.paddle.objects_api import PaddleObjects
from connectors.paddle.payloads import currency_exponent
from connectors.paddle.readers import PaddleReaders
from connectors.subscriptions import Subscription

PSP = "paddle"
SIGNATURE_HEADER = "paddle-signature"


class PaddleConnector(PaddleReaders):
    """Paddle Billing webhooks: transactions and adjustments."""

    psp = PSP
    title = "Paddle"
    signature_header = SIGNATURE_HEADER
    signature_title = "Paddle-Signature"
    webhook_secret_variable = "PADDLE_WEBHOOK_SECRET"
    api_key_variable = "PADDLE_API_KEY"
    default_tolerance = 300.0
    # The `when:` conditions a rule of this connector can use: Paddle has no livemode flag
    # (sandbox and live are separate accounts) and no billing_reason (see `origin`).
    condition_keys = frozenset({"origin", "currency", "price_ids", "product_ids", "metadata"})
    # Paddle's adjustments name their transaction: no other event links a reversal.
    linking_event_types = ()
    # The id prefix of the object each event type carries (`send`).
    object_prefixes = {"transaction.": "txn_", "adjustment.": "adj_"}
    type_key = "event_type"
    exponent = staticmethod(currency_exponent)
    # Which payment events carry which amount bases (connectors/paddle/amounts.py).
    amount_bases = AMOUNT_BASES

    # -- the connector type: config, send, backfill -------------------------------

    @staticmethod
    def rule_warning(on: Sequence[str], metadata: Mapping[str, str]) -> str | None:
        return None

    @staticmethod
    def api_version_error(value: str) -> str | None:
        if not value.isdigit():
            return f"must be a Paddle API version number, got {value!r}"
        return None

    sign = staticmethod(samples.sign)
    sample = staticmethod(samples.sample)

    @staticmethod
    def events_api(
        api_key: str, api_base: str | None, api_version: str, account: str | None = None
    ) -> EventSource:
        if account is not None:
            raise BackfillError(
                "Paddle has no connected accounts: backfill paddle takes no --account"
            )
        return PaddleEvents(api_key, api_base, version=api_version)

    @staticmethod
    def subscriptions(api_key: str, api_base: str | None, api_version: str) -> list[Subscription]:
        from connectors.paddle.subscriptions import paddle_subscriptions

        return paddle_subscriptions(api_key, api_base, api_version)

    @staticmethod
    def objects_api(api_key: str, api_base: str | None, api_version: str) -> ObjectSource:
        return PaddleObjects(api_key, api_base, version=api_version)

    # -- verification -------------------------------------------------------------

    def read_signature(self, header: str, body: bytes) -> SignedRequest:
        ts, signatures = _parse_signature_header(header)
        return SignedRequest(header, body, ts, tuple(signatures))

    def signature_matches(self, signed: SignedRequest, secret: str) -> bool:
        message = signed.timestamp.encode() + b":" + signed.body
        expected = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
        matched = False
        for candidate in signed.signatures:
            matched |= hmac.compare_digest(expected.encode(), candidate)
        return matched

    def envelope(self, body: bytes) -> Envelope:
        raw = parse_json(body)
        event_id, event_type = raw.get("event_id"), raw.get("event_type")
        if not isinstance(event_id, str) or not event_id:
            raise MalformedEventError("body is not a Paddle event (no event_id)")
        if not isinstance(event_type, str) or not event_type:
            raise MalformedEventError(f"event {event_id} has no event_type")
        return Envelope(event_id, event_type, None)

    # -- normalization ------------------------------------------------------------

    def mode_filter(self, raw: Raw) -> Ignored | None:
        return None  # `mode` is not enforced: Paddle payloads say nothing about live or test

    def data_object(self, raw: Raw) -> Raw:
        data = raw.get("data")
        if not isinstance(data, Mapping):
            raise EventError(f"{raw.get('event_type', 'event')} event has no data object")
        return data


# Paddle event types the bridge acts on, and the reader for each (tests read it).
EVENT_READERS = PaddleConnector.event_readers

# -- signatures ---------------------------------------------------------------------


def _parse_signature_header(header: str) -> tuple[str, list[bytes]]:
    """(ts, [h1, ...]) from `ts=...;h1=...[;h1=...]`; unknown keys are skipped.

    ts stays text: the signed string uses it exactly as Paddle sent it.
    """
    timestamps: list[str] = []
    signatures: list[bytes] = []
    for item in header.split(";"):
        key, _, value = item.strip().partition("=")
        value = value.strip()
        if key == "ts":
            timestamps.append(value)
        elif key == "h1" and value:
            signatures.append(value.encode("utf-8", "replace"))
    if len(timestamps) != 1 or not timestamps[0].isascii() or not timestamps[0].isdigit():
        raise SignatureError("Paddle-Signature has no valid ts= timestamp", reason="malformed")
    if not signatures:
        raise SignatureError("Paddle-Signature has no h1= signature", reason="malformed")
    return timestamps[0], signatures
