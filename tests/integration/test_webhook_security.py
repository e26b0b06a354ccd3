"""One security suite for every connector, run against a real bridge over HTTP.

`WebhookSecuritySuite` holds the cases; each connector subclass says how its PSP signs
(`sign`), how two signatures share one header (`with_second_signature`) and what a
valid event looks like (`event`). Every refusal is checked in the store too: a webhook
that gets a 4xx leaves nothing behind.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
import pytest

from connectors import paddle, stripe
from tests.conftest import (
    API_KEY,
    PADDLE_SECRET,
    STRIPE_SECRET,
    STRIPE_SECRET_2,
    RunningBridge,
    Sandbox,
)

PADDLE_SECRET_2 = "pdl_ntfset_test_" + "d" * 32
WRONG_SECRET = "whsec_wrong_" + "e" * 32
TOLERANCE = 60
MAX_BODY = 4096

CONFIG = """
database: {database}
credyt:
  api_url: {api_url}
  api_key: {api_key}
server:
  max_body_bytes: {max_body}
connectors:
  stripe:
    type: stripe
    secrets: ["{stripe_1}", "{stripe_2}"]
    tolerance: {tolerance}
  paddle:
    type: paddle
    secrets: ["{paddle_1}", "{paddle_2}"]
    tolerance: {tolerance}
"""


class WebhookSecuritySuite:
    """The cases every connector must pass. Subclasses fill in the PSP's pieces."""

    connector: ClassVar[str]
    secret: ClassVar[str]
    rotated_secret: ClassVar[str]
    header: ClassVar[str]
    secret_setting: ClassVar[str]  # what a mismatch tells the operator to check

    # -- the hooks ------------------------------------------------------------------

    def sign(self, payload: bytes, secret: str, timestamp: int) -> dict[str, str]:
        raise NotImplementedError

    def with_second_signature(
        self, headers: dict[str, str], other: dict[str, str]
    ) -> dict[str, str]:
        """`headers` with the signature of `other` (same timestamp) added to its header."""
        raise NotImplementedError

    def event(self, event_id: str) -> dict[str, Any]:
        raise NotImplementedError

    def with_fresh_timestamp_added(self, headers: dict[str, str], now: int) -> list[str]:
        """Ways an attacker re-sends a captured (stale) header with a fresh timestamp
        added beside the one its signature covers."""
        raise NotImplementedError

    # -- helpers ---------------------------------------------------------------------

    @pytest.fixture
    def bridge(
        self, make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
    ) -> RunningBridge:
        return make_bridge(
            CONFIG.format(
                database=tmp_path / "bridge.db",
                api_url=sandbox.url,
                api_key=API_KEY,
                max_body=MAX_BODY,
                tolerance=TOLERANCE,
                stripe_1=STRIPE_SECRET,
                stripe_2=STRIPE_SECRET_2,
                paddle_1=PADDLE_SECRET,
                paddle_2=PADDLE_SECRET_2,
            )
        )

    def body(self, event_id: str, pad_to: int = 0) -> bytes:
        event = self.event(event_id)
        raw = json.dumps(event).encode()
        if pad_to > len(raw):
            event["padding"] = "x" * (pad_to - len(raw) - len(', "padding": ""'))
            raw = json.dumps(event).encode()
        return raw

    def post(self, bridge: RunningBridge, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return bridge.post(self.connector, body, headers)

    def assert_refused(
        self, bridge: RunningBridge, answer: httpx.Response, status: int = 400
    ) -> None:
        assert answer.status_code == status, answer.text
        assert answer.json()["error"]
        assert bridge.bridge.store.counts()["events"] == {}

    def stored_ids(self, bridge: RunningBridge) -> set[str]:
        from bridge.storage.records import EventFilter

        return {row.event_id for row in bridge.bridge.store.list_events(EventFilter())}

    def failures(self, bridge: RunningBridge, reason: str) -> float:
        text = httpx.get(f"{bridge.url}/metrics").text
        labels = f'connector="{self.connector}",reason="{reason}"'
        pattern = r"^bridge_signature_failures_total\{" + re.escape(labels) + r"\} (\S+)$"
        found = re.search(pattern, text, re.M)
        return float(found.group(1)) if found else 0.0

    # -- the cases -------------------------------------------------------------------

    def test_good_signature_is_accepted_and_stored(self, bridge: RunningBridge) -> None:
        body = self.body("evt_good")
        answer = self.post(bridge, body, self.sign(body, self.secret, int(time.time())))
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"status": "accepted"}
        stored = bridge.bridge.store.get_event("evt_good")
        assert stored is not None and stored.body == body

    def test_bad_signature_is_400_and_nothing_stored(self, bridge: RunningBridge) -> None:
        body = self.body("evt_bad")
        before = self.failures(bridge, "mismatch")
        answer = self.post(bridge, body, self.sign(body, WRONG_SECRET, int(time.time())))
        self.assert_refused(bridge, answer)
        assert self.secret_setting in answer.json()["error"]
        assert self.failures(bridge, "mismatch") == before + 1

    def test_signature_of_another_body_is_400(self, bridge: RunningBridge) -> None:
        signed = self.sign(self.body("evt_a"), self.secret, int(time.time()))
        self.assert_refused(bridge, self.post(bridge, self.body("evt_b"), signed))

    def test_missing_header_is_400(self, bridge: RunningBridge) -> None:
        before = self.failures(bridge, "missing")
        answer = self.post(bridge, self.body("evt_missing"), {"Content-Type": "application/json"})
        self.assert_refused(bridge, answer)
        assert "missing" in answer.json()["error"].lower()
        assert self.failures(bridge, "missing") == before + 1

    def test_garbled_header_is_400(self, bridge: RunningBridge) -> None:
        answer = self.post(bridge, self.body("evt_garbled"), {self.header: "nonsense"})
        self.assert_refused(bridge, answer)

    def test_non_ascii_signature_is_400_not_a_crash(self, bridge: RunningBridge) -> None:
        body = self.body("evt_latin1")
        headers = self.sign(body, self.secret, int(time.time()))
        digest = re.split(r"[=,;]", headers[self.header])[-1]
        mangled = headers[self.header].replace(digest, "\u00e9" * len(digest))
        status = raw_request(
            bridge.url,
            f"/webhooks/{self.connector}",
            {"Content-Length": str(len(body)), self.header: mangled},
            body,
            encoding="latin-1",
        )
        assert status == 400
        assert bridge.bridge.store.counts()["events"] == {}

    def test_rotated_secret_is_accepted(self, bridge: RunningBridge) -> None:
        body = self.body("evt_rotated")
        answer = self.post(bridge, body, self.sign(body, self.rotated_secret, int(time.time())))
        assert answer.status_code == 200, answer.text
        assert self.stored_ids(bridge) == {"evt_rotated"}

    @pytest.mark.parametrize("good_first", [True, False])
    def test_two_signatures_one_matching_is_accepted(
        self, bridge: RunningBridge, good_first: bool
    ) -> None:
        body = self.body("evt_two")
        now = int(time.time())
        good, bad = self.sign(body, self.secret, now), self.sign(body, WRONG_SECRET, now)
        headers = (
            self.with_second_signature(good, bad)
            if good_first
            else (self.with_second_signature(bad, good))
        )
        assert headers[self.header].count("=") == 3
        answer = self.post(bridge, body, headers)
        assert answer.status_code == 200, answer.text
        assert self.stored_ids(bridge) == {"evt_two"}

    def test_two_signatures_none_matching_is_400(self, bridge: RunningBridge) -> None:
        body = self.body("evt_two_bad")
        now = int(time.time())
        headers = self.with_second_signature(
            self.sign(body, WRONG_SECRET, now), self.sign(body, WRONG_SECRET + "x", now)
        )
        self.assert_refused(bridge, self.post(bridge, body, headers))

    def test_stale_timestamp_is_400(self, bridge: RunningBridge) -> None:
        body = self.body("evt_stale")
        before = self.failures(bridge, "stale")
        headers = self.sign(body, self.secret, int(time.time()) - 2 * TOLERANCE)
        answer = self.post(bridge, body, headers)
        self.assert_refused(bridge, answer)
        assert self.failures(bridge, "stale") == before + 1

    def test_future_timestamp_beyond_tolerance_is_400(self, bridge: RunningBridge) -> None:
        body = self.body("evt_future")
        headers = self.sign(body, self.secret, int(time.time()) + 2 * TOLERANCE)
        answer = self.post(bridge, body, headers)
        self.assert_refused(bridge, answer)

    def test_a_stale_header_with_a_fresh_timestamp_added_is_400(
        self, bridge: RunningBridge
    ) -> None:
        body = self.body("evt_replayed")
        now = int(time.time())
        captured = self.sign(body, self.secret, now - 2 * TOLERANCE)
        for forged in self.with_fresh_timestamp_added(captured, now):
            answer = self.post(bridge, body, {**captured, self.header: forged})
            self.assert_refused(bridge, answer)

    def test_timestamp_within_tolerance_is_accepted(self, bridge: RunningBridge) -> None:
        body = self.body("evt_recent")
        answer = self.post(bridge, body, self.sign(body, self.secret, int(time.time()) - 20))
        assert answer.status_code == 200, answer.text

    def test_oversized_body_is_413(self, bridge: RunningBridge) -> None:
        body = self.body("evt_big", pad_to=MAX_BODY + 1)
        assert len(body) == MAX_BODY + 1
        answer = self.post(bridge, body, self.sign(body, self.secret, int(time.time())))
        self.assert_refused(bridge, answer, 413)

    def test_body_at_the_limit_is_accepted(self, bridge: RunningBridge) -> None:
        body = self.body("evt_limit", pad_to=MAX_BODY)
        assert len(body) == MAX_BODY
        answer = self.post(bridge, body, self.sign(body, self.secret, int(time.time())))
        assert answer.status_code == 200, answer.text

    def test_oversized_chunked_body_is_413(self, bridge: RunningBridge) -> None:
        """No Content-Length: the limit is enforced while the body streams in."""
        body = self.body("evt_chunked", pad_to=MAX_BODY * 3)
        headers = self.sign(body, self.secret, int(time.time()))

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(body), 1000):
                yield body[start : start + 1000]

        answer = httpx.post(
            f"{bridge.url}/webhooks/{self.connector}", content=chunks(), headers=headers
        )
        self.assert_refused(bridge, answer, 413)

    def test_lying_content_length_is_refused(self, bridge: RunningBridge) -> None:
        """Content-Length claims a small body while a chunked one many times the limit
        follows: whatever the server makes of it, nothing past the limit is stored."""
        body = self.body("evt_lying", pad_to=MAX_BODY * 3)
        headers = self.sign(body, self.secret, int(time.time()))
        status = raw_request(
            bridge.url,
            f"/webhooks/{self.connector}",
            {**headers, "Content-Length": "100", "Transfer-Encoding": "chunked"},
            chunked(body),
        )
        assert status in (400, 413), status
        assert bridge.bridge.store.counts()["events"] == {}

    def test_content_length_shorter_than_the_body_is_refused(self, bridge: RunningBridge) -> None:
        """Content-Length claims less than is sent: only that much is read, so the signed
        body is cut short and refused; the rest is never taken for an event."""
        body = self.body("evt_short", pad_to=MAX_BODY * 3)
        headers = self.sign(body, self.secret, int(time.time()))
        status = raw_request(
            bridge.url,
            f"/webhooks/{self.connector}",
            {**headers, "Content-Length": "100"},
            body,
        )
        assert status == 400
        assert bridge.bridge.store.counts()["events"] == {}

    def test_content_length_over_the_limit_is_413_before_reading(
        self, bridge: RunningBridge
    ) -> None:
        """A declared length over the limit is refused from the header alone."""
        body = self.body("evt_declared")
        headers = self.sign(body, self.secret, int(time.time()))
        status = raw_request(
            bridge.url,
            f"/webhooks/{self.connector}",
            {**headers, "Content-Length": str(MAX_BODY * 100)},
            body,
        )
        assert status == 413
        assert bridge.bridge.store.counts()["events"] == {}

    def test_malformed_json_with_a_valid_signature_is_400(self, bridge: RunningBridge) -> None:
        for body in (b'{"id": "evt_broken", ', b"[1, 2, 3]", b"\xff\xfe not text", b""):
            answer = self.post(bridge, body, self.sign(body, self.secret, int(time.time())))
            self.assert_refused(bridge, answer)

    def test_event_without_an_id_is_400(self, bridge: RunningBridge) -> None:
        event = self.event("evt_x")
        event.pop("id", None)
        event.pop("event_id", None)
        body = json.dumps(event).encode()
        answer = self.post(bridge, body, self.sign(body, self.secret, int(time.time())))
        self.assert_refused(bridge, answer)

    def test_unknown_connector_is_404(self, bridge: RunningBridge) -> None:
        body = self.body("evt_nowhere")
        answer = bridge.post(
            f"{self.connector}-nope", body, self.sign(body, self.secret, int(time.time()))
        )
        self.assert_refused(bridge, answer, 404)

    def test_replayed_delivery_is_a_duplicate(self, bridge: RunningBridge) -> None:
        body = self.body("evt_again")
        headers = self.sign(body, self.secret, int(time.time()))
        assert self.post(bridge, body, headers).json() == {"status": "accepted"}
        assert self.post(bridge, body, headers).json() == {"status": "duplicate"}
        assert self.stored_ids(bridge) == {"evt_again"}


class TestStripeSecurity(WebhookSecuritySuite):
    connector = "stripe"
    secret = STRIPE_SECRET
    rotated_secret = STRIPE_SECRET_2
    header = "Stripe-Signature"
    secret_setting = "STRIPE_WEBHOOK_SECRET"

    def sign(self, payload: bytes, secret: str, timestamp: int) -> dict[str, str]:
        return stripe.sign(payload, secret, timestamp)

    def with_second_signature(
        self, headers: dict[str, str], other: dict[str, str]
    ) -> dict[str, str]:
        v1 = other[self.header].split(",v1=")[1]
        return {**headers, self.header: f"{headers[self.header]},v1={v1}"}

    def with_fresh_timestamp_added(self, headers: dict[str, str], now: int) -> list[str]:
        old, v1 = headers[self.header].split(",")
        return [
            f"{v1}, t={now},{old}",  # stripe reads the `t` without a space; we must too
            f"t={now},{v1},{old}",
            f"{old},{v1},t={now}",
            f"{v1},t={now}, {old}",
        ]

    def event(self, event_id: str) -> dict[str, Any]:
        return stripe.sample_event(
            "invoice.paid", event_id=event_id, object_id=f"in_{event_id}", customer="cust_x"
        )


class TestPaddleSecurity(WebhookSecuritySuite):
    connector = "paddle"
    secret = PADDLE_SECRET
    rotated_secret = PADDLE_SECRET_2
    header = "Paddle-Signature"
    secret_setting = "PADDLE_WEBHOOK_SECRET"

    def sign(self, payload: bytes, secret: str, timestamp: int) -> dict[str, str]:
        return paddle.sign(payload, secret, timestamp)

    def with_second_signature(
        self, headers: dict[str, str], other: dict[str, str]
    ) -> dict[str, str]:
        h1 = other[self.header].split(";h1=")[1]
        return {**headers, self.header: f"{headers[self.header]};h1={h1}"}

    def with_fresh_timestamp_added(self, headers: dict[str, str], now: int) -> list[str]:
        old, h1 = headers[self.header].split(";")
        return [
            f"ts={now};{old};{h1}",
            f"{old};{h1};ts={now}",
            f"{h1}; ts={now};{old}",
            f"{old}; ts={now};{h1}",
        ]

    def event(self, event_id: str) -> dict[str, Any]:
        return paddle.sample_event(
            "transaction.completed",
            event_id=event_id,
            object_id=f"txn_{event_id}",
            customer="cust_x",
        )


# -- raw HTTP, for what httpx will not send ----------------------------------------------


def chunked(body: bytes, size: int = 1000) -> bytes:
    out = b""
    for start in range(0, len(body), size):
        piece = body[start : start + size]
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    return out + b"0\r\n\r\n"


def raw_request(
    url: str, path: str, headers: dict[str, str], payload: bytes, encoding: str = "ascii"
) -> int:
    """POST with exactly these headers and bytes; returns the answer's status code."""
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    head = f"POST {path} HTTP/1.1\r\nHost: {parts.hostname}\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head.encode(encoding))
        try:
            sock.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading it all
        answer = b""
        while b"\r\n" not in answer:
            try:
                chunk = sock.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
    match = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    assert match, f"no HTTP answer: {answer[:200]!r}"
    return int(match.group(1))
