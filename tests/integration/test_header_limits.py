"""Request heads are bounded and timed: 431 for a huge one, a trickled one is cut off.

A real bridge on uvicorn on 127.0.0.1 (the protocol `serve` runs), raw sockets for what
httpx will not send. While hostile connections are open, a signed webhook still gets
its 200.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bridge.config.loading import parse_config
from bridge.receiving.servers import (
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    bounded_protocol,
    serve_in_thread,
)
from bridge.service import Bridge
from connectors import stripe
from tests.conftest import STRIPE_SECRET, Sandbox, config_text
from tests.helpers.processes import ServeProcess


@pytest.fixture
def url(sandbox: Sandbox, tmp_path: Path) -> Iterator[str]:
    config = parse_config(config_text(str(tmp_path / "bridge.db"), sandbox.url))
    protocol = bounded_protocol(header_timeout=1.0)
    with serve_in_thread(Bridge(config).app, http=protocol) as base:
        yield base


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def status_of(sock: socket.socket) -> int | None:
    answer = b""
    sock.settimeout(10)
    while b"\r\n" not in answer:
        try:
            chunk = sock.recv(4096)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        answer += chunk
    return int(answer.split()[1]) if answer.startswith(b"HTTP/1.1 ") else None


def send_head(url: str, head: bytes) -> int | None:
    with socket.create_connection(address(url), timeout=10) as sock:
        try:
            sock.sendall(head)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before it was all sent
        return status_of(sock)


def signed_webhook(url: str, event_id: str) -> int:
    event = stripe.sample_event(
        "invoice.paid", event_id=event_id, object_id=f"in_{event_id}", customer="cust_h"
    )
    body = json.dumps(event).encode()
    return httpx.post(
        f"{url}/webhooks/stripe", content=body, headers=stripe.sign(body, STRIPE_SECRET)
    ).status_code


def head(extra: str) -> bytes:
    return f"GET /healthz HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


def test_a_head_over_the_limit_is_431(url: str) -> None:
    big = "x" * (MAX_HEADER_BYTES + 1)
    assert send_head(url, head(f"X-Big: {big}\r\n")) == 431
    # sent in small pieces, as a trickle would be, it is refused as well
    with socket.create_connection(address(url), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            for _ in range(MAX_HEADER_BYTES // 4096 + 2):
                sock.sendall(b"y" * 4096)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert status_of(sock) == 431


def test_a_head_within_the_limit_is_served(url: str) -> None:
    fits = "x" * (MAX_HEADER_BYTES - 200)
    assert send_head(url, head(f"X-Big: {fits}\r\n")) == 200


def test_too_many_headers_is_431(url: str) -> None:
    many = "".join(f"X-H{i}: v\r\n" for i in range(MAX_HEADERS + 1))
    assert send_head(url, head(many)) == 431
    few = "".join(f"X-H{i}: v\r\n" for i in range(MAX_HEADERS - 5))
    assert send_head(url, head(few)) == 200


def test_a_webhook_with_a_body_read_with_its_head_is_not_counted_as_head(url: str) -> None:
    """A 200 KiB body that arrives in the same read as its head is a body, not a header."""
    event = stripe.sample_event(
        "invoice.paid", event_id="evt_big_body", object_id="in_big_body", customer="cust_h"
    )
    event["padding"] = "p" * 200_000

    body = json.dumps(event).encode()
    headers = stripe.sign(body, STRIPE_SECRET)
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (
        f"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
        f"Content-Type: application/json\r\n{lines}\r\n"
    ).encode() + body
    assert send_head(url, request) == 200


def test_a_trickled_head_is_cut_off_and_others_are_served(url: str) -> None:
    slow = [socket.create_connection(address(url), timeout=10) for _ in range(20)]
    try:
        for sock in slow:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        assert signed_webhook(url, "evt_during_trickle") == 200
        deadline = time.monotonic() + 10
        for sock in slow:
            closed = False
            while not closed and time.monotonic() < deadline:
                try:
                    sock.sendall(b"X: y\r\n")  # one header line now and then
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                sock.settimeout(0.2)
                try:
                    closed = sock.recv(1) == b""
                except TimeoutError:
                    pass
                except ConnectionResetError:
                    closed = True
            assert closed, "a trickling connection was kept open past the header timeout"
    finally:
        for sock in slow:
            sock.close()
    assert signed_webhook(url, "evt_after_trickle") == 200


def test_serve_answers_431_to_a_head_over_the_limit(sandbox: Sandbox, tmp_path: Path) -> None:
    """`credyt-bridge serve` itself runs the bounded protocol."""
    config = tmp_path / "config.yaml"
    config.write_text(config_text(str(tmp_path / "bridge.db"), sandbox.url), encoding="utf-8")
    process = ServeProcess(config, tmp_path / "serve.log")
    try:
        big = "x" * (MAX_HEADER_BYTES + 1)
        assert send_head(process.url, head(f"X-Big: {big}\r\n")) == 431
        assert signed_webhook(process.url, "evt_serve_431") == 200
    finally:
        process.kill()


def test_a_huge_header_does_not_hold_up_a_signed_webhook(url: str) -> None:
    """A 16 MiB header sent as fast as possible is cut off at the limit; meanwhile (and
    after) webhooks get their 200."""
    with socket.create_connection(address(url), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        refused = False
        chunk = b"z" * 65536
        while sent < 16 * 1024 * 1024:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                refused = True
                break
            sent += len(chunk)
        assert refused or status_of(sock) == 431
        assert sent < 16 * 1024 * 1024  # the server stopped reading long before the end
    assert signed_webhook(url, "evt_after_huge") == 200
