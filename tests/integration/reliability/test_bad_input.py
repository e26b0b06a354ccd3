"""Bad input over HTTP: never a 500, never a crash, never an unsigned event stored.

Hypothesis generates headers and bodies against both connectors' endpoints of one
running bridge (uvicorn on 127.0.0.1, SQLite, the sandbox). Unsigned or wrongly signed
requests must be refused with 400 and store nothing; validly signed random payloads
may be accepted, and then each must end `processed`, `ignored` or `failed` with a
reason (or wait, held, with a reason), never crash the processor. Then the named
cases: oversized bodies, malformed JSON, deep nesting, huge or negative amounts,
unknown or malformed currencies, missing fields, and malformed config files.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.config.loading import parse_config
from bridge.credyt.sandbox import SandboxState, create_sandbox_app
from bridge.errors import ConfigError
from bridge.receiving.servers import serve_in_thread
from bridge.service import Bridge
from bridge.storage.records import EventFilter, EventStatus
from connectors import paddle, stripe
from tests.conftest import API_KEY, PADDLE_SECRET, STRIPE_SECRET, wait_until
from tests.helpers.logs import LogBuffer
from tests.integration.reliability.conftest import COUNTS, reliability_config, unique

EXAMPLES = int(os.environ.get("RELIABILITY_EXAMPLES", "300"))
MAX_BODY = 256 * 1024  # the default server.max_body_bytes
CUSTOMER = "cust_badinput_1"


@dataclass
class Target:
    url: str
    bridge: Bridge
    sandbox: SandboxState
    client: httpx.Client
    logs: LogBuffer

    def post(self, connector: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return self.client.post(f"{self.url}/webhooks/{connector}", content=body, headers=headers)

    def signed(self, connector: str, body: bytes) -> httpx.Response:
        headers = (
            stripe.sign(body, STRIPE_SECRET)
            if connector == "stripe"
            else paddle.sign(body, PADDLE_SECRET)
        )
        return self.post(connector, body, headers)

    def stored(self) -> int:
        return sum(self.bridge.store.counts()["events"].values())

    def alive(self) -> bool:
        return self.client.get(f"{self.url}/healthz").status_code == 200


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    from bridge.logs import configure_logging

    tmp = tmp_path_factory.mktemp("bad_input")
    logs = LogBuffer()
    configure_logging("debug", stream=logs, json=True)
    state = SandboxState()
    state.add_customer(customer_id=CUSTOMER)
    with serve_in_thread(create_sandbox_app(state, api_key=API_KEY)) as sandbox_url:
        text = reliability_config(str(tmp / "bridge.db"), sandbox_url)
        bridge = Bridge(parse_config(text, str(tmp / "config.yaml")))
        with serve_in_thread(bridge.app) as url, httpx.Client(timeout=30) as client:
            yield Target(url, bridge, state, client, logs)
    import structlog

    structlog.reset_defaults()


def settle(target: Target) -> None:
    """Wait until no event is due now (held ones wait for later, with a reason)."""

    def quiet() -> bool:
        now = time.time()
        due = [
            e
            for e in target.bridge.store.list_events(EventFilter(status="pending", limit=10**6))
            if e.next_attempt_at is None or e.next_attempt_at <= now
        ]
        pending_adjustments = target.bridge.store.counts()["adjustments"].get("pending", 0)
        return not due and not pending_adjustments

    wait_until(quiet, 30, "the bridge to finish every event it can")


# -- hypothesis: headers and bodies -----------------------------------------------------

TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_0123456789", min_size=1, max_size=20)
# Header values as HTTP allows them on the wire (no surrounding whitespace).
VISIBLE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=120).map(
    str.strip
)
HEX = st.text(alphabet="0123456789abcdef", min_size=0, max_size=64)
STAMP = st.one_of(st.integers(-(10**12), 10**12), st.just(int(time.time()))).map(str)
STRIPE_SIGS = st.one_of(
    VISIBLE,
    st.builds(lambda t, v: f"t={t},v1={v}", STAMP, HEX),
    st.builds(lambda t, v: f"t={t},v0={v},v1={v}", STAMP | VISIBLE, HEX),
)
PADDLE_SIGS = st.one_of(
    VISIBLE,
    st.builds(lambda t, v: f"ts={t};h1={v}", STAMP, HEX),
    st.builds(lambda t, v: f"ts={t};ts={t};h1={v};h1=", STAMP | VISIBLE, HEX),
)
RESERVED = {"content-length", "transfer-encoding", "host", "connection", "expect", "upgrade"}
EXTRA_HEADERS = st.dictionaries(TOKEN.filter(lambda k: k not in RESERVED), VISIBLE, max_size=4)

JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**40), 10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=15,
)


def _samples() -> list[tuple[str, dict[str, Any]]]:
    return [
        (
            "stripe",
            stripe.sample_event(
                "invoice.paid", event_id="evt_x", object_id="in_x", customer=CUSTOMER
            ),
        ),
        (
            "stripe",
            stripe.sample_event(
                "invoice.payment_succeeded",
                event_id="evt_x",
                object_id="in_x",
                api_version="2024-06-20",
            ),
        ),
        (
            "paddle",
            paddle.sample_event(
                "transaction.completed", event_id="evt_x", object_id="txn_x", customer=CUSTOMER
            ),
        ),
        (
            "paddle",
            paddle.sample_event(
                "adjustment.updated",
                event_id="evt_x",
                object_id="adj_x",
                transaction_id="txn_x",
            ),
        ),
    ]


SAMPLES = _samples()
# Where a mutation may land in a sample (dotted paths into the event).
MUTABLE = [
    "id",
    "event_id",
    "type",
    "event_type",
    "object",
    "created",
    "livemode",
    "data",
    "data.object",
    "data.object.amount_paid",
    "data.object.currency",
    "data.object.customer",
    "data.object.metadata",
    "data.object.lines",
    "data.object.parent",
    "data.object.subscription_details",
    "data.object.billing_reason",
    "data.id",
    "data.details",
    "data.details.totals.grand_total",
    "data.currency_code",
    "data.custom_data",
    "data.origin",
    "data.items",
    "data.action",
    "data.status",
    "data.totals",
    "data.totals.total",
    "data.transaction_id",
    "data.billing_period",
]


def mutate(sample: dict[str, Any], changes: dict[str, Any], salt: str) -> dict[str, Any]:
    event = copy.deepcopy(sample)
    for key in ("id", "event_id"):
        if key in event:
            event[key] = f"{event[key]}_{salt}"
    for path, value in changes.items():
        *parents, last = path.split(".")
        node: Any = event
        for name in parents:
            node = node.get(name) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node[last] = value
    return event


SALTS = itertools.count()  # each example its own event id, unless a mutation sets one
SIGNED_EVENTS = st.builds(
    lambda pick, changes: (SAMPLES[pick][0], mutate(SAMPLES[pick][1], changes, str(next(SALTS)))),
    st.integers(0, len(SAMPLES) - 1),
    st.dictionaries(st.sampled_from(MUTABLE), JSON, max_size=3),
)

SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


@SETTINGS
@given(
    connector=st.sampled_from(["stripe", "paddle"]),
    signature=st.one_of(st.none(), STRIPE_SIGS, PADDLE_SIGS),
    extra=EXTRA_HEADERS,
    body=st.one_of(st.binary(max_size=600), JSON.map(lambda v: json.dumps(v).encode())),
)
def test_unsigned_garbage_is_refused_and_never_stored(
    target: Target, connector: str, signature: str | None, extra: dict[str, str], body: bytes
) -> None:
    headers = dict(extra)
    if signature is not None:
        headers["stripe-signature" if connector == "stripe" else "paddle-signature"] = signature
    before = target.stored()
    answer = target.post(connector, body, headers)
    COUNTS["bad input: unsigned or forged requests"] += 1
    assert answer.status_code == 400, (answer.status_code, answer.text)
    assert target.stored() == before


@SETTINGS
@given(
    event=SIGNED_EVENTS,
    extra=EXTRA_HEADERS,
)
def test_signed_random_events_never_500_and_end_with_a_reason(
    target: Target, event: tuple[str, dict[str, Any]], extra: dict[str, str]
) -> None:
    connector, payload = event
    body = json.dumps(payload).encode()
    headers = dict(extra)
    headers.update(
        stripe.sign(body, STRIPE_SECRET)
        if connector == "stripe"
        else paddle.sign(body, PADDLE_SECRET)
    )
    answer = target.post(connector, body, headers)
    COUNTS["bad input: signed random events"] += 1
    assert answer.status_code in (200, 400), (answer.status_code, answer.text)
    if answer.status_code == 200:
        COUNTS["bad input: signed random events accepted"] += 1


def test_after_the_fuzzing_every_event_ended_with_a_reason(target: Target) -> None:
    settle(target)
    assert target.alive()
    events = target.bridge.store.list_events(EventFilter(limit=10**6))
    for event in events:
        if event.status is EventStatus.PROCESSED:
            continue
        assert event.reason, f"{event.event_id} is {event.status.value} without a reason"
        if event.status is EventStatus.PENDING:
            assert event.reason.startswith(("held", "Credyt unavailable")), event.reason
    names = target.logs.names()
    assert "event_processing_crashed" not in names
    assert target.sandbox.snapshot()["conflicts"] == []
    COUNTS["bad input: stored events checked"] += len(events)


# -- named cases ------------------------------------------------------------------------


@pytest.mark.parametrize("connector", ["stripe", "paddle"])
def test_oversized_bodies_are_refused_413(target: Target, connector: str) -> None:
    before = target.stored()
    body = b'{"id": "' + b"x" * (MAX_BODY + 10) + b'"}'
    assert target.signed(connector, body).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
        for _ in range(MAX_BODY // 4096 + 2):
            yield b" " * 4096

    headers = {"stripe-signature": "t=1,v1=00", "paddle-signature": "ts=1;h1=00"}
    assert (
        target.client.post(
            f"{target.url}/webhooks/{connector}", content=chunks(), headers=headers
        ).status_code
        == 413
    )
    assert target.stored() == before and target.alive()
    COUNTS["bad input: oversized bodies"] += 2


@pytest.mark.parametrize("connector", ["stripe", "paddle"])
@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"not json", b'{"id": "evt_1",}', b"[]", b"null", b"\xff\xfe{}", b'{"a": NaN}'],
)
def test_malformed_json_with_a_valid_signature_is_400(
    target: Target, connector: str, body: bytes
) -> None:
    before = target.stored()
    answer = target.signed(connector, body)
    assert answer.status_code == 400, answer.text
    assert target.stored() == before
    COUNTS["bad input: malformed bodies"] += 1


@pytest.mark.parametrize("connector", ["stripe", "paddle"])
@pytest.mark.parametrize("depth", [100_000, 20_000, 2_000])
def test_deep_nesting_with_a_valid_signature_is_refused(
    target: Target, connector: str, depth: int
) -> None:
    before = target.stored()
    answer = target.signed(connector, b"[" * depth + b"]" * depth)
    assert answer.status_code == 400, answer.text
    inner = b"[" * depth + b"]" * depth
    key = b'"id"' if connector == "stripe" else b'"event_id"'
    wrapped = b"{" + key + b': "evt_deep", "object": "event", "deep": ' + inner + b"}"
    assert target.signed(connector, wrapped).status_code == 400
    assert target.stored() == before and target.alive()
    COUNTS["bad input: deeply nested bodies"] += 2


@pytest.mark.parametrize("connector", ["stripe", "paddle"])
@pytest.mark.parametrize("depth", [500, 900, 980])
def test_nesting_that_parses_is_processed_not_crashed(
    target: Target, connector: str, depth: int
) -> None:
    """Nesting shallow enough to be stored must not trip the processor later."""
    payload = _event(connector)
    field = payload["data"]["object"] if connector == "stripe" else payload["data"]
    field["metadata" if connector == "stripe" else "custom_data"] = {"deep": "@@"}
    body = json.dumps(payload).encode().replace(b'"@@"', b"[" * depth + b"]" * depth)
    answer = target.signed(connector, body)
    assert answer.status_code in (200, 400), answer.text
    COUNTS["bad input: nested but parseable bodies"] += 1
    if answer.status_code == 200:
        event = _final(target, _event_id(payload))
        assert event.status is not EventStatus.PENDING


def _event(connector: str, **options: Any) -> dict[str, Any]:
    if connector == "stripe":
        return stripe.sample_event(
            "invoice.paid",
            event_id=unique("evt_"),
            object_id=unique("in_"),
            customer=CUSTOMER,
            **options,
        )
    return paddle.sample_event(
        "transaction.completed",
        event_id=unique("evt_"),
        object_id=unique("txn_"),
        customer=CUSTOMER,
        **options,
    )


def _event_id(payload: dict[str, Any]) -> str:
    return str(payload.get("id") or payload.get("event_id"))


def _final(target: Target, event_id: str) -> Any:
    def done() -> bool:
        row = target.bridge.store.get_event(event_id)
        return row is not None and row.status is not EventStatus.PENDING

    wait_until(done, 20, f"event {event_id} to be processed")
    return target.bridge.store.get_event(event_id)


def _amount_field(connector: str, payload: dict[str, Any]) -> tuple[dict[str, Any], str]:
    if connector == "stripe":
        return payload["data"]["object"], "amount_paid"
    return payload["data"]["details"]["totals"], "grand_total"


# (amount as sent, stripe outcome, paddle outcome): an outcome is a status and a phrase
# its reason contains.
AMOUNTS = [
    (10**31, ("failed", "more than 18 digits"), ("failed", "more than 18 digits")),
    (-(10**18), ("failed", "more than 18 digits"), ("failed", "more than 18 digits")),
    ("1" * 25, ("failed", "more than 18 digits"), ("failed", "more than 18 digits")),
    (-500, ("ignored", "paid nothing"), ("failed", "negative")),
    ("12.50", ("failed", "not an integer amount"), ("failed", "not an integer amount")),
    (12.5, ("failed", "not an integer amount"), ("failed", "not an integer amount")),
    (True, ("failed", "not an amount"), ("failed", "not an amount")),
    ("١٢٣", ("failed", "not an integer amount"), ("failed", "not an integer amount")),
]


@pytest.mark.parametrize("connector", ["stripe", "paddle"])
@pytest.mark.parametrize(("amount", "stripe_outcome", "paddle_outcome"), AMOUNTS)
def test_bad_amounts_end_with_a_precise_reason(
    target: Target,
    connector: str,
    amount: Any,
    stripe_outcome: tuple[str, str],
    paddle_outcome: tuple[str, str],
) -> None:
    payload = _event(connector)
    holder, key = _amount_field(connector, payload)
    holder[key] = amount
    assert target.signed(connector, json.dumps(payload).encode()).status_code == 200
    status, phrase = stripe_outcome if connector == "stripe" else paddle_outcome
    event = _final(target, _event_id(payload))
    assert (event.status.value, phrase in (event.reason or "")) == (status, True), event.reason
    COUNTS["bad input: bad amounts"] += 1


@pytest.mark.parametrize("connector", ["stripe", "paddle"])
def test_a_huge_but_plausible_amount_is_credited_exactly(target: Target, connector: str) -> None:
    payload = _event(connector, amount_minor=10**17 + 1)
    assert target.signed(connector, json.dumps(payload).encode()).status_code == 200
    event = _final(target, _event_id(payload))
    assert event.status is EventStatus.PROCESSED, event.reason
    (row,) = target.bridge.store.adjustments_for_event(event.id)
    assert row.amount == "1000000000000000.01"
    COUNTS["bad input: huge amounts"] += 1


@pytest.mark.parametrize("connector", ["stripe", "paddle"])
@pytest.mark.parametrize("currency", ["", "US", "usd$", "DOLLARS", "€€€", 840, None])
def test_malformed_currencies_fail_with_a_precise_reason(
    target: Target, connector: str, currency: Any
) -> None:
    payload = _event(connector)
    holder = payload["data"]["object"] if connector == "stripe" else payload["data"]
    holder["currency" if connector == "stripe" else "currency_code"] = currency
    assert target.signed(connector, json.dumps(payload).encode()).status_code == 200
    event = _final(target, _event_id(payload))
    assert event.status is EventStatus.FAILED
    assert "currency" in (event.reason or ""), event.reason
    COUNTS["bad input: malformed currencies"] += 1


@pytest.mark.parametrize("connector", ["stripe", "paddle"])
def test_an_unknown_currency_code_is_credited_as_two_decimals(
    target: Target, connector: str
) -> None:
    """A well-formed code the bridge has no table entry for (XTS: ISO's testing code)."""
    payload = _event(connector, currency="xts", amount_minor=1234)
    assert target.signed(connector, json.dumps(payload).encode()).status_code == 200
    event = _final(target, _event_id(payload))
    assert event.status is EventStatus.PROCESSED, event.reason
    (row,) = target.bridge.store.adjustments_for_event(event.id)
    assert (row.asset, row.amount) == ("XTS", "12.34")
    COUNTS["bad input: unknown currencies"] += 1


MISSING = [
    ("stripe", "data", "event has no data.object"),
    ("stripe", "data.object.id", "invoice has no id"),
    ("stripe", "data.object.amount_paid", "invoice.amount_paid is not an integer amount"),
    ("stripe", "data.object.currency", "invoice has no currency"),
    ("paddle", "data", "event has no data object"),
    ("paddle", "data.id", "transaction has no id"),
    ("paddle", "data.details", "has no details.totals.grand_total"),
    ("paddle", "data.currency_code", "has no currency_code"),
]


@pytest.mark.parametrize(("connector", "path", "reason"), MISSING)
def test_missing_fields_fail_with_a_precise_reason(
    target: Target, connector: str, path: str, reason: str
) -> None:
    payload = _event(connector)
    *parents, last = path.split(".")
    node = payload
    for name in parents:
        node = node[name]
    del node[last]
    answer = target.signed(connector, json.dumps(payload).encode())
    assert answer.status_code == 200, answer.text
    event = _final(target, _event_id(payload))
    assert event.status is EventStatus.FAILED
    assert reason in (event.reason or ""), event.reason
    COUNTS["bad input: missing fields"] += 1


# -- config files ---------------------------------------------------------------------

CONFIGS: list[tuple[Callable[[str], str], str]] = [
    (lambda t: t.replace("  timeout: 5\n", "  timeout: soon\n"), ":6: credyt.timeout"),
    (
        lambda t: t.replace("delivery:\n", "delivery:\n  breaker_threshold: 0\n"),
        "breaker_threshold",
    ),
    (lambda t: t.replace("delivery:\n", "delivery:\n  retries: 3\n"), "delivery.retries"),
    (lambda t: t.replace("    type: paddle\n", "    type: paypal\n"), "connectors.paddle.type"),
    (lambda t: t.replace("connectors:\n", "connectors: [\n"), "config.yaml:"),
]


@pytest.mark.parametrize(("edit", "phrase"), CONFIGS)
def test_malformed_config_files_name_file_line_and_key(
    tmp_path: Path, edit: Callable[[str], str], phrase: str
) -> None:
    text = edit(reliability_config(str(tmp_path / "b.db"), "http://127.0.0.1:9"))
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "config.yaml")
    message = str(caught.value)
    assert message.startswith("config.yaml:") and phrase in message, message
    COUNTS["bad input: malformed config files"] += 1


def test_check_reports_a_bad_config_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        reliability_config(str(tmp_path / "b.db"), "http://127.0.0.1:9").replace(
            "  timeout: 5\n", "  timeout: -1\n"
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert f"{config}:6: credyt.timeout" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    COUNTS["bad input: malformed config files"] += 1
