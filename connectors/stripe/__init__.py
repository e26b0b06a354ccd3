"""The Stripe connector: one folder, registered in `connectors.REGISTRY`.

- `webhooks`: `StripeConnector`, the PSP's facts, signature check and envelope;
- `readers`: its events read as payments and reversals (`payloads`: the fields);
- `samples`: `sign` and `sample_event`, webhooks as Stripe sends them;
- `events_api`: the event list `credyt-bridge backfill` reads.
"""

from connectors.stripe.payloads import currency_exponent
from connectors.stripe.samples import sample_event, sign
from connectors.stripe.webhooks import EVENT_READERS, PSP, SIGNATURE_HEADER, StripeConnector

__all__ = [
    "EVENT_READERS",
    "PSP",
    "SIGNATURE_HEADER",
    "StripeConnector",
    "currency_exponent",
    "sample_event",
    "sign",
]
