"""Shared fixtures: a real Credyt sandbox and a real bridge, each on a loopback uvicorn.

Nothing here is mocked: the bridge under test is `Bridge(config).app` served by
uvicorn on 127.0.0.1 with a SQLite file in tmp_path, talking over HTTP to the
sandbox on another loopback port.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from bridge.config.loading import parse_config
from bridge.config.schema import Config
from bridge.credyt.sandbox import SandboxState, create_sandbox_app
from bridge.logs import configure_logging
from bridge.receiving.servers import serve_in_thread
from bridge.service import Bridge
from connectors import paddle, stripe
from tests.helpers.logs import LogBuffer

# The commands fit their tables to $COLUMNS; a terminal's (or pytest-xdist's, which sets
# 80) must not change what a test sees. Tests that want a width pass COLUMNS themselves.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)

# Real and published PSP payloads; tests/fixtures/SOURCES.md says where each came from.
FIXTURES = Path(__file__).resolve().parent / "fixtures"
API_KEY = "key_test_sandbox"
STRIPE_SECRET = "whsec_test_" + "a" * 32
STRIPE_SECRET_2 = "whsec_test_" + "b" * 32
PADDLE_SECRET = "pdl_ntfset_test_" + "c" * 32

HEADER = """
database: {database}
credyt:
  api_url: {api_url}
  api_key: {api_key}
{credyt}delivery:
  backoff_initial: 0.05
  backoff_max: 0.5
connectors:
"""

CONNECTORS = """
  stripe:
    type: stripe
    secrets: ["{stripe_secret}", "{stripe_secret_2}"]
    rules:
      - name: subscription-payment
        on: [invoice.paid, invoice.payment_succeeded]
        credit:
          amount: paid
  paddle:
    type: paddle
    secrets: ["{paddle_secret}"]
    rules:
      - name: transaction
        on: transaction.completed
        credit:
          amount: paid
      - name: refund
        on: [adjustment.created, adjustment.updated]
        reverse: {{}}
"""


@dataclass
class Sandbox:
    state: SandboxState
    url: str


@dataclass
class RunningBridge:
    url: str
    bridge: Bridge
    config: Config

    def post(self, connector: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{self.url}/webhooks/{connector}", content=body, headers=headers)

    def send_stripe(self, event: dict[str, Any], secret: str = STRIPE_SECRET) -> httpx.Response:
        body = json.dumps(event).encode()
        return self.post("stripe", body, stripe.sign(body, secret))

    def send_paddle(self, event: dict[str, Any], secret: str = PADDLE_SECRET) -> httpx.Response:
        body = json.dumps(event).encode()
        return self.post("paddle", body, paddle.sign(body, secret))

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until no event and no adjustment is pending."""

        def settled() -> bool:
            counts = self.bridge.store.counts()
            return not counts["events"].get("pending") and not counts["adjustments"].get("pending")

        wait_until(settled, timeout, "the bridge to settle")


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.01)


def bridge_config(
    database: str | Path,
    api_url: str,
    connectors: str,
    *,
    timeout: float | None = 5,
    credyt: str = "",
) -> str:
    """A test bridge's config: its database, the sandbox's URL and key, a fast delivery
    backoff, and `connectors` (the YAML under `connectors:`). `timeout` is Credyt's
    (None: the default); `credyt` holds more lines of that section."""
    lines = (f"  timeout: {timeout}\n" if timeout is not None else "") + credyt
    header = HEADER.format(database=database, api_url=api_url, api_key=API_KEY, credyt=lines)
    return header + connectors.lstrip("\n")


def config_text(database: str, api_url: str, extra: str = "") -> str:
    """The shared config: a Stripe and a Paddle connector with one credit rule each (and
    Paddle's refunds), `extra` appended."""
    connectors = CONNECTORS.format(
        stripe_secret=STRIPE_SECRET,
        stripe_secret_2=STRIPE_SECRET_2,
        paddle_secret=PADDLE_SECRET,
    )
    return bridge_config(database, api_url, connectors) + extra


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    state = SandboxState()
    with serve_in_thread(create_sandbox_app(state, api_key=API_KEY)) as url:
        yield Sandbox(state, url)


@pytest.fixture(scope="module")
def shared_sandbox() -> Iterator[Sandbox]:
    """One sandbox for a whole module (property tests reset it between examples)."""
    state = SandboxState()
    with serve_in_thread(create_sandbox_app(state, api_key=API_KEY)) as url:
        yield Sandbox(state, url)


@pytest.fixture
def make_bridge(tmp_path: Path, sandbox: Sandbox) -> Iterator[Callable[..., RunningBridge]]:
    """Start a bridge on a loopback port; `config` text replaces the default if given."""
    stack: list[Any] = []

    def start(config: str | None = None, database: str | None = None) -> RunningBridge:
        db = database or str(tmp_path / "bridge.db")
        text = config if config is not None else config_text(db, sandbox.url)
        parsed = parse_config(text, str(tmp_path / "config.yaml"))
        bridge = Bridge(parsed)
        server = serve_in_thread(bridge.app)
        url = server.__enter__()
        stack.append(server)
        return RunningBridge(url, bridge, parsed)

    yield start
    for server in reversed(stack):
        server.__exit__(None, None, None)


@pytest.fixture
def running(make_bridge: Callable[..., RunningBridge]) -> RunningBridge:
    return make_bridge()


@pytest.fixture
def logs() -> Iterator[LogBuffer]:
    """The bridge's log lines (JSON, debug level) for the duration of one test."""
    buffer = LogBuffer()
    configure_logging("debug", stream=buffer, json=True)
    try:
        yield buffer
    finally:
        structlog.reset_defaults()
