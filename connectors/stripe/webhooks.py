"""Stripe connector: verify `Stripe-Signature`, read events of every API version.

Signatures are checked with stripe-python's own `WebhookSignature.verify_header`
(HMAC-SHA256 over `"{t}.{body}"`, constant-time compare), once per configured
secret so a secret can be rolled; the timestamp is checked after them (by
`connectors.base`), so a stale delivery is told apart from a forged one. We never
build `StripeObject`s: the body is parsed with `json` once.

The readers are in `connectors.stripe.readers`, signing and sample events in
`connectors.stripe.samples`, the event list for backfill in `connectors.stripe.events_api`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import stripe

from bridge.errors import EventError, MalformedEventError, SignatureError
from bridge.events import Envelope, Ignored
from connectors.base import Raw, SignedRequest, parse_json
from connectors.listing import EventSource, ObjectSource
from connectors.stripe import samples
from connectors.stripe.amounts import AMOUNT_BASES, MISSING_BASIS_REASONS
from connectors.stripe.events_api import StripeEvents
from connectors.stripe.objects_api import StripeObjects
from connectors.stripe.payloads import currency_exponent
from connectors.stripe.readers import StripeReaders
from connectors.subscriptions import Subscription

PSP = "stripe"
SIGNATURE_HEADER = "stripe-signature"


class StripeConnector(StripeReaders):
    """Stripe webhooks: snapshot events of every API version."""

    psp = PSP
    title = "Stripe"
    signature_header = SIGNATURE_HEADER
    signature_title = "Stripe-Signature"
    webhook_secret_variable = "STRIPE_WEBHOOK_SECRET"
    api_key_variable = "STRIPE_API_KEY"
    default_tolerance = 300.0
    # The `when:` conditions a rule of this connector can use: Stripe events carry these.
    condition_keys = frozenset(
        {
            "billing_reason",
            "currency",
            "price_ids",
            "product_ids",
            "livemode",
            "metadata",
            "account",
            "application",
        }
    )
    # Events no rule needs to name but a reversal rule depends on: on API versions from
    # 2025-03-31 an invoice names no PaymentIntent, and only invoice_payment.paid links
    # it to the one its refunds and disputes name.
    linking_event_types = ("invoice_payment.paid",)
    # Credyt's top-ups run on a Stripe account connected to Credyt, through Checkout
    # Sessions and PaymentIntents: the same events as a top-up of the integrator's own.
    topup_event_types = (
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "payment_intent.succeeded",
    )
    # The id prefix of the object each event type carries (`send`).
    object_prefixes = {
        "invoice.": "in_",
        "invoice_payment.": "inpay_",
        "payment_intent.": "pi_",
        "checkout.session.": "cs_",
        "refund.": "re_",
        "charge.dispute.": "dp_",
        "charge.": "ch_",
    }
    type_key = "type"
    exponent = staticmethod(currency_exponent)
    # Which payment events carry which amount bases (connectors/stripe/amounts.py).
    amount_bases = AMOUNT_BASES
    missing_basis_reasons = MISSING_BASIS_REASONS

    # -- the connector type: config, send, backfill -------------------------------

    @staticmethod
    def rule_warning(on: Sequence[str], metadata: Mapping[str, str]) -> str | None:
        if "payment_intent.succeeded" in on and metadata == {}:
            return (
                "credits payment_intent.succeeded without a metadata condition: "
                "subscription renewals fire it too, so invoices would be credited twice "
                "(add when: metadata: {credyt_topup: 'true'})"
            )
        return None

    @staticmethod
    def api_version_error(value: str) -> str | None:
        return "only for paddle (Stripe lists each event in the API version it was created with)"

    sign = staticmethod(samples.sign)
    sample = staticmethod(samples.sample)

    @staticmethod
    def events_api(
        api_key: str, api_base: str | None, api_version: str, account: str | None = None
    ) -> EventSource:
        return StripeEvents(api_key, api_base, account=account)

    @staticmethod
    def subscriptions(api_key: str, api_base: str | None, api_version: str) -> list[Subscription]:
        from connectors.stripe.subscriptions import stripe_subscriptions

        return stripe_subscriptions(api_key, api_base)

    @staticmethod
    def objects_api(api_key: str, api_base: str | None, api_version: str) -> ObjectSource:
        return StripeObjects(api_key, api_base)

    # -- verification -------------------------------------------------------------

    def read_signature(self, header: str, body: bytes) -> SignedRequest:
        if not header.isascii():  # stripe's compare_digest raises TypeError on non-ASCII
            raise SignatureError("Stripe-Signature is not ASCII", reason="malformed")
        timestamp = _header_timestamp(header)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SignatureError("body is not UTF-8 text", reason="malformed") from exc
        return SignedRequest(header, body, str(timestamp))

    def signature_matches(self, signed: SignedRequest, secret: str) -> bool:
        return _verify_with(signed.body, signed.header, secret)

    def envelope(self, body: bytes) -> Envelope:
        raw = parse_json(body)
        if raw.get("object") == "v2.core.event":
            raise MalformedEventError(
                "thin events (v2.core.event) are not supported: point a snapshot event "
                "destination at this endpoint"
            )
        event_id, event_type = raw.get("id"), raw.get("type")
        if raw.get("object") != "event" or not isinstance(event_id, str) or not event_id:
            raise MalformedEventError("body is not a Stripe event (no object=event with an id)")
        if not isinstance(event_type, str) or not event_type:
            raise MalformedEventError(f"event {event_id} has no type")
        livemode = raw.get("livemode")
        return Envelope(event_id, event_type, livemode if isinstance(livemode, bool) else None)

    # -- normalization ------------------------------------------------------------

    def mode_filter(self, raw: Raw) -> Ignored | None:
        livemode = raw.get("livemode")
        if self.mode == "live" and livemode is not True:
            return Ignored("test-mode event on a connector that accepts live events only")
        if self.mode == "test" and livemode is not False:
            return Ignored("live-mode event on a connector that accepts test events only")
        return None

    def data_object(self, raw: Raw) -> Raw:
        data = raw.get("data")
        obj = data.get("object") if isinstance(data, Mapping) else None
        if not isinstance(obj, Mapping):
            raise EventError("event has no data.object")
        return obj


# Stripe event types the bridge acts on, and the reader for each (tests read it).
EVENT_READERS = StripeConnector.event_readers

# -- signatures ---------------------------------------------------------------------


def _verify_with(body: bytes, header: str, secret: str) -> bool:
    # Decoded here: stripe before 16 formats a bytes payload as "b'...'" (never matching),
    # and 16 decodes it without catching a body that is not UTF-8.
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    try:
        stripe.WebhookSignature.verify_header(text, header, secret, tolerance=None)
    except stripe.SignatureVerificationError:
        return False
    return True


def _header_timestamp(header: str) -> int:
    """The one `t` of a Stripe-Signature header, read as stripe's WebhookSignature reads it.

    The library splits on `,` then on `=`, keys taken as they are (` t` is not `t`), and
    signs with the first `t`. A header with any other item that is a `t` once stripped
    (`t=NOW, t=OLD` or `v1=SIG, t=NOW,t=OLD`) is refused: the tolerance must be checked
    against the very timestamp the signature covers, and no reader may see another."""
    items = [item.split("=", 2) for item in header.split(",")]
    if sum(1 for item in items if item[0].strip() == "t") != 1:
        raise SignatureError(
            "Stripe-Signature must carry exactly one t= timestamp", reason="malformed"
        )
    found = [item for item in items if item[0] == "t"]
    if not found or len(found[0]) < 2 or not found[0][1].isdigit():
        raise SignatureError("Stripe-Signature has no valid t= timestamp", reason="malformed")
    return int(found[0][1])
