"""Pre-signed Stripe webhooks for the load generators (measures nothing itself).

Every request is a realistic Stripe `invoice.paid` event (`connectors.stripe.sample_event`)
with its own event id and invoice id, signed like Stripe signs it
(`connectors.stripe.sign`: `Stripe-Signature: t=<ts>,v1=<hmac>`). The body is one compact
JSON template with the marker `@ID@` where the ids go, so a million requests cost one
short line each in the requests file:

    line 1   the URL path, e.g. /webhooks/stripe
    line 2   the body template (compact JSON, contains @ID@)
    line 3+  <id> TAB <Stripe-Signature header value>

`signed.lua` (wrk) and `loadgen.py` (Python) read the same material, so both send
byte-identical requests. The signatures carry the generation time; the bridge accepts
them for 300 s, so generate the file right before each run.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from connectors.stripe import sample_event, sign

MARKER = "@ID@"
STRIPE_PATH = "/webhooks/stripe"
DEFAULT_SECRET = "whsec_bench_0123456789abcdef"
DEFAULT_CUSTOMER = "cust_bench"


@dataclass(frozen=True)
class SignedRequests:
    """N signed webhooks that share one body template."""

    path: str
    template: str
    ids: tuple[str, ...]
    signatures: tuple[str, ...]
    timestamp: int

    def __len__(self) -> int:
        return len(self.ids)

    def body(self, index: int) -> bytes:
        return self.template.replace(MARKER, self.ids[index]).encode()

    def event_id(self, index: int) -> str:
        return f"evt_{self.ids[index]}"

    def http_request(self, index: int, host: str) -> bytes:
        """The whole HTTP/1.1 request, keep-alive, as the load generators send it."""
        body = self.body(index)
        head = (
            f"POST {self.path} HTTP/1.1\r\n"
            f"Host: {host}\r\n"
            "Content-Type: application/json\r\n"
            f"Stripe-Signature: {self.signatures[index]}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "\r\n"
        )
        return head.encode() + body

    def http_requests(self, host: str) -> list[bytes]:
        return [self.http_request(i, host) for i in range(len(self))]

    def write(self, path: Path) -> Path:
        """The requests file `signed.lua` reads (format in the module docstring)."""
        with path.open("w", encoding="ascii") as out:
            out.write(f"{self.path}\n{self.template}\n")
            out.writelines(_lines(self.ids, self.signatures))
        return path


def _lines(ids: tuple[str, ...], signatures: tuple[str, ...]) -> Iterator[str]:
    for request_id, signature in zip(ids, signatures, strict=True):
        yield f"{request_id}\t{signature}\n"


def body_template(customer: str = DEFAULT_CUSTOMER) -> str:
    """A compact `invoice.paid` event (current API version) with `@ID@` for the ids."""
    event = sample_event(
        "invoice.paid",
        event_id=f"evt_{MARKER}",
        object_id=f"in_{MARKER}",
        customer=customer,
        psp_customer="cus_bench",
        amount_minor=2000,
    )
    return json.dumps(event, separators=(",", ":"))


def presign(
    count: int,
    *,
    secret: str = DEFAULT_SECRET,
    customer: str = DEFAULT_CUSTOMER,
    prefix: str | None = None,
    path: str = STRIPE_PATH,
) -> SignedRequests:
    """`count` webhooks with unique ids (`<prefix><n>`), signed now with `secret`."""
    run_tag = prefix if prefix is not None else secrets.token_hex(4)
    template = body_template(customer)
    timestamp = int(time.time())
    ids = tuple(f"{run_tag}{n:09d}" for n in range(count))
    signatures = tuple(
        sign(template.replace(MARKER, request_id).encode(), secret, timestamp)["Stripe-Signature"]
        for request_id in ids
    )
    return SignedRequests(path, template, ids, signatures, timestamp)
