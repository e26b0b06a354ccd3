"""The Paddle Billing connector: one folder, registered in `connectors.REGISTRY`.

- `webhooks`: `PaddleConnector`, the PSP's facts, signature check and envelope;
- `readers`: its events read as payments and reversals (`payloads`: the fields);
- `samples`: `sign` and `sample_event`, webhooks as Paddle sends them;
- `events_api`: the event list `credyt-bridge backfill` reads.
"""

from connectors.paddle.payloads import currency_exponent
from connectors.paddle.samples import sample_event, sign
from connectors.paddle.webhooks import EVENT_READERS, PSP, SIGNATURE_HEADER, PaddleConnector

__all__ = [
    "EVENT_READERS",
    "PSP",
    "SIGNATURE_HEADER",
    "PaddleConnector",
    "currency_exponent",
    "sample_event",
    "sign",
]
