"""Backfill against a local server that speaks Stripe's and Paddle's event-list formats.

The server runs on a loopback port; `credyt-bridge backfill` runs as a subprocess with
the stripe library (and the Paddle client) pointed at it through the connector's
`api_base`, while a bridge served on loopback shares the database and processes what
the backfill stores.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bridge.receiving.servers import serve_in_thread
from connectors import paddle, stripe
from tests.conftest import RunningBridge, Sandbox, config_text
from tests.helpers.operator import run_cli
from tests.helpers.psp_api import PADDLE_KEY, STRIPE_KEY, PspApi, serve_psp_api

DAY = 86400


@pytest.fixture
def psp_api() -> Iterator[tuple[PspApi, str]]:
    with serve_psp_api() as served:
        yield served


def backfill_config(tmp_path: Path, sandbox_url: str, api_url: str) -> Path:
    text = config_text(str(tmp_path / "bridge.db"), sandbox_url)
    text = text.replace(
        "    type: stripe\n", f"    type: stripe\n    api_base: {api_url}\n", 1
    ).replace("    type: paddle\n", f"    type: paddle\n    api_base: {api_url}\n", 1)
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def stripe_invoice_event(
    n: int, customer: str, age: float, event_type: str = "invoice.paid", invoice: int | None = None
) -> dict[str, Any]:
    return stripe.sample_event(
        event_type,
        event_id=f"evt_bf_{n:03d}",
        object_id=f"in_bf_{invoice if invoice is not None else n:03d}",
        customer=customer,
        amount_minor=1000 + (invoice if invoice is not None else n),
        currency="usd",
        created=int(time.time() - age),
    )


def test_stripe_backfill_stores_exactly_the_missed_events(
    make_bridge: Callable[..., RunningBridge],
    sandbox: Sandbox,
    tmp_path: Path,
    psp_api: tuple[PspApi, str],
) -> None:
    api, api_url = psp_api
    config = backfill_config(tmp_path, sandbox.url, api_url)
    running = make_bridge(config=config.read_text())
    customer = sandbox.state.add_customer()

    received = stripe_invoice_event(1, customer, age=3600)
    missed = [stripe_invoice_event(n, customer, age=600 * n) for n in range(2, 7)]
    # The same invoice under the other event type: listed and stored, credited once.
    same_invoice = stripe_invoice_event(7, customer, 60, "invoice.payment_succeeded", invoice=2)
    too_old = stripe_invoice_event(8, customer, age=3 * DAY)
    other_type = {**stripe_invoice_event(9, customer, age=60), "type": "customer.created"}
    api.stripe_events = [received, *missed, same_invoice, too_old, other_type]

    assert running.send_stripe(received).status_code == 200
    running.settle()

    env = {"STRIPE_API_KEY": STRIPE_KEY}
    first = json.loads(
        run_cli(config, "backfill", "stripe", "--since", "2d", "--json", env=env).stdout
    )
    expected = sorted(e["id"] for e in [*missed, same_invoice])
    assert sorted(first["stored_event_ids"]) == expected
    assert (first["listed"], first["already_stored"]) == (len(expected) + 1, 1)
    assert first["types"] == ["invoice.paid", "invoice.payment_succeeded"]
    assert all("types" in q and "created" in q for q in api.queries)
    assert len(api.queries) > 3  # several pages were read

    running.settle()
    paid = sum(Decimal(1000 + n) / 100 for n in range(1, 7))
    assert sandbox.state.balance(customer, "USD") == paid
    assert len(sandbox.state.adjustments) == 6

    again = run_cli(config, "backfill", "stripe", "--since", "2d", env=env)
    assert f"{len(expected) + 1} event(s) listed" in again.stdout
    assert (
        "0 were missing" in again.stdout and f"{len(expected) + 1} already stored" in again.stdout
    )
    assert again.stderr == ""  # piped: no progress bar, the summary line says it all
    running.settle()
    assert len(sandbox.state.adjustments) == 6
    assert sandbox.state.balance(customer, "USD") == paid


def paddle_event(
    n: int, event_type: str, object_id: str, customer: str, age: float, **extra: Any
) -> dict[str, Any]:
    created = int(time.time() - age)
    event = paddle.sample_event(
        event_type,
        event_id=f"evt_01bf{n:04d}",
        object_id=object_id,
        customer=customer,
        created=created,
        **{"amount_minor": 2000 + n, **extra},
    )
    event.pop("notification_id", None)  # the events API lists events, not notifications
    event["occurred_at"] = datetime.fromtimestamp(created, UTC).isoformat().replace("+00:00", "Z")
    return event


def test_paddle_backfill_stores_exactly_the_missed_events(
    make_bridge: Callable[..., RunningBridge],
    sandbox: Sandbox,
    tmp_path: Path,
    psp_api: tuple[PspApi, str],
) -> None:
    api, api_url = psp_api
    config = backfill_config(tmp_path, sandbox.url, api_url)
    running = make_bridge(config=config.read_text())
    customer = sandbox.state.add_customer()

    # Paddle has no time filter: ids grow with time and listing stops at --since.
    too_old = paddle_event(1, "transaction.completed", "txn_bf_old", customer, age=5 * DAY)
    received = paddle_event(2, "transaction.completed", "txn_bf_1", customer, age=7200)
    missed_payment = paddle_event(3, "transaction.completed", "txn_bf_2", customer, age=3600)
    missed_refund = paddle_event(
        4,
        "adjustment.created",
        "adj_bf_1",
        customer,
        age=1800,
        transaction_id="txn_bf_2",
        amount_minor=1000,
    )
    other_type = paddle_event(5, "transaction.completed", "txn_bf_3", customer, age=900)
    other_type["event_type"] = "customer.updated"
    missed_late = paddle_event(6, "transaction.completed", "txn_bf_4", customer, age=60)
    api.paddle_events = [too_old, received, missed_payment, missed_refund, other_type, missed_late]

    assert running.send_paddle(received).status_code == 200
    running.settle()

    env = {"PADDLE_API_KEY": PADDLE_KEY}
    first = json.loads(
        run_cli(config, "backfill", "paddle", "--since", "1d", "--json", env=env).stdout
    )
    expected = sorted(e["event_id"] for e in (missed_payment, missed_refund, missed_late))
    assert sorted(first["stored_event_ids"]) == expected
    assert (first["listed"], first["already_stored"]) == (4, 1)

    running.settle()
    states = {e.event_id: e.status.value for e in running.bridge.store.list_events(_all())}
    assert {states[i] for i in expected} == {"processed"}
    paid = Decimal(2002 + 2003 + 2006 - 1000) / 100  # three payments, one partial refund
    assert sandbox.state.balance(customer, "USD") == paid
    assert len(sandbox.state.adjustments) == 4

    before = len(sandbox.state.adjustments)
    again = json.loads(
        run_cli(config, "backfill", "paddle", "--since", "1d", "--json", env=env).stdout
    )
    assert (again["stored"], again["already_stored"]) == (0, 4)
    running.settle()
    assert len(sandbox.state.adjustments) == before


def _all() -> Any:
    from bridge.storage.records import EventFilter

    return EventFilter(limit=1000)


def test_backfill_errors_are_one_line(
    sandbox: Sandbox, tmp_path: Path, psp_api: tuple[PspApi, str]
) -> None:
    _, api_url = psp_api
    config = backfill_config(tmp_path, sandbox.url, api_url)
    (tmp_path / "bridge.db").touch()
    cases = [
        (("backfill", "stripe", "--since", "1d"), {"STRIPE_API_KEY": "sk_test_wrong"}, "Stripe"),
        # the permission Paddle's API reference gives for listing events
        (("backfill", "paddle", "--since", "1d"), {"PADDLE_API_KEY": "wrong"}, "notification.read"),
        (("backfill", "stripe", "--since", "1d"), {"STRIPE_API_KEY": ""}, "no API key"),
        (("backfill", "shopify", "--since", "1d"), {}, "no connector 'shopify'"),
    ]
    for args, env, words in cases:
        proc = run_cli(config, *args, ok=False, env=env)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("Error: ") and words in last, proc.stderr


def test_backfill_lists_no_further_back_than_the_psp_keeps(
    sandbox: Sandbox, tmp_path: Path, psp_api: tuple[PspApi, str]
) -> None:
    api, api_url = psp_api
    config = backfill_config(tmp_path, sandbox.url, api_url)
    (tmp_path / "bridge.db").touch()
    env = {"STRIPE_API_KEY": STRIPE_KEY}
    proc = run_cli(config, "backfill", "stripe", "--since", "45d", env=env)
    assert "note: stripe keeps events 30 days" in proc.stderr
    assert "0 event(s) listed" in proc.stdout
    [query] = api.queries
    gte = int(next(p for p in query.split("&") if "created" in p).split("=")[1])
    assert abs(gte - (time.time() - 30 * DAY)) < 600


# -- recorded responses: what the PSPs' own fixtures say their APIs answer ----------------

RECORDED = Path(__file__).resolve().parents[1] / "fixtures"


@dataclass
class RecordedApi:
    """Serves recorded list pages verbatim, in order; `pages[i]` answers the i-th request."""

    pages: list[bytes]
    queries: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    # status answers to give before a page, by page index: [(status, headers), ...]
    failures: dict[int, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    served: list[int] = field(default_factory=list)

    def answer(self, request: Request) -> Response:
        self.queries.append(str(request.url.query))
        self.headers.append(dict(request.headers))
        index = len(self.served)
        pending = self.failures.get(index) or []
        if pending:
            status, headers = pending.pop(0)
            return JSONResponse(
                {"error": {"code": "stand_in"}}, status_code=status, headers=headers
            )
        self.served.append(index)
        return Response(self.pages[min(index, len(self.pages) - 1)], media_type="application/json")


@pytest.fixture
def recorded() -> Iterator[tuple[RecordedApi, str]]:
    api = RecordedApi(pages=[])

    async def route(request: Request) -> Response:
        return api.answer(request)

    app = Starlette(routes=[Route("/v1/events", route, methods=["GET"]), Route("/events", route)])
    with serve_in_thread(app) as url:
        yield api, url


def stored_bodies(running: RunningBridge) -> dict[str, bytes]:
    store = running.bridge.store
    rows = [store.get_event(str(e.id)) for e in store.list_events(_all())]
    return {r.event_id: bytes(r.body) for r in rows if r is not None and r.body is not None}


def test_stripe_backfill_stores_recorded_events_verbatim(
    make_bridge: Callable[..., RunningBridge],
    sandbox: Sandbox,
    tmp_path: Path,
    recorded: tuple[RecordedApi, str],
) -> None:
    """Stripe's own fixtures carry decimal_string fields (unit_amount_decimal): stripe 15+
    turns them into Decimal, which json.dumps refuses. The body stored is the event's
    text exactly as the list response carried it."""
    api, api_url = recorded
    api.pages = [
        (RECORDED / "stripe" / "list-events" / f"page-{n}.json").read_bytes() for n in (1, 2)
    ]
    config = backfill_config(tmp_path, sandbox.url, api_url)
    running = make_bridge(config=config.read_text())
    basil = sandbox.state.add_customer(external_id="cus_SGqVI5XZS5sDjA")
    old = sandbox.state.add_customer(external_id="cus_00000000000000")

    env = {"STRIPE_API_KEY": STRIPE_KEY}
    out = json.loads(
        run_cli(config, "backfill", "stripe", "--since", "2d", "--json", env=env).stdout
    )
    listed = [e for page in api.pages for e in json.loads(page)["data"]]
    assert sorted(out["stored_event_ids"]) == sorted(e["id"] for e in listed)
    assert "starting_after=" + listed[1]["id"] in api.queries[1]

    bodies = stored_bodies(running)
    served = b"".join(api.pages)
    for event in listed:
        body = bodies[event["id"]]
        assert json.loads(body) == event
        assert body in served  # byte for byte what the API sent for this event
    assert b'"unit_amount_decimal": "4999"' in bodies["evt_1RMgagCMHTTliF5iVoysIuMJ"]

    running.settle()
    assert sandbox.state.balance(basil, "CAD") == Decimal("49.99")
    assert sandbox.state.balance(old, "USD") == Decimal("20.00")


def paddle_series(customer: str, count: int) -> list[dict[str, Any]]:
    """`count` completed transactions, one a minute, newest last."""
    return [
        paddle_event(n, "transaction.completed", f"txn_bf_s{n:02d}", customer, age=60 * (count - n))
        for n in range(1, count + 1)
    ]


def test_paddle_backfill_waits_out_a_429_and_stores_every_event_once(
    make_bridge: Callable[..., RunningBridge],
    sandbox: Sandbox,
    tmp_path: Path,
    psp_api: tuple[PspApi, str],
) -> None:
    api, api_url = psp_api
    config = backfill_config(tmp_path, sandbox.url, api_url)
    running = make_bridge(config=config.read_text())
    customer = sandbox.state.add_customer()
    api.paddle_events = paddle_series(customer, 6)  # 3 pages of 2
    api.paddle_failures = {1: [(429, {"Retry-After": "1"})]}

    env = {"PADDLE_API_KEY": PADDLE_KEY}
    out = json.loads(
        run_cli(config, "backfill", "paddle", "--since", "1d", "--json", env=env).stdout
    )
    ids = [e["event_id"] for e in api.paddle_events]
    assert sorted(out["stored_event_ids"]) == sorted(ids)
    assert len(out["stored_event_ids"]) == len(set(out["stored_event_ids"]))
    assert api.paddle_pages == 3 and len(api.queries) == 4  # page 2 asked twice
    assert api.queries[1] == api.queries[2]  # the same page again, not a skip
    assert all(h.get("paddle-version") == "1" for h in api.headers)

    running.settle()
    assert sandbox.state.balance(customer, "USD") == sum(
        Decimal(2000 + n) / 100 for n in range(1, 7)
    )
    assert len(sandbox.state.adjustments) == 6


def test_paddle_backfill_cut_off_by_5xx_resumes_where_it_stopped(
    sandbox: Sandbox, tmp_path: Path, psp_api: tuple[PspApi, str]
) -> None:
    api, api_url = psp_api
    config = backfill_config(tmp_path, sandbox.url, api_url)
    (tmp_path / "bridge.db").touch()
    customer = sandbox.state.add_customer()
    api.paddle_events = paddle_series(customer, 6)
    # Page 2 fails more often than the client retries (3): the run stops there.
    api.paddle_failures = {1: [(503, {"Retry-After": "0"})] * 4}
    env = {"PADDLE_API_KEY": PADDLE_KEY}

    cut = run_cli(config, "backfill", "paddle", "--since", "1d", ok=False, env=env)
    assert cut.returncode == 1
    last = cut.stderr.strip().splitlines()[-1]
    assert "Paddle answered 503" in last and "after 4 tries" in last, last
    newest_first = sorted((e["event_id"] for e in api.paddle_events), reverse=True)
    assert f"--resume {newest_first[1]}" in last  # page 1 was stored
    assert "2 missing event(s) were stored" in last

    api.queries.clear()
    cursor = last.rsplit("--resume ", 1)[1].split()[0]
    resumed = json.loads(
        run_cli(
            config, "backfill", "paddle", "--since", "1d", "--resume", cursor, "--json", env=env
        ).stdout
    )
    assert sorted(resumed["stored_event_ids"]) == sorted(newest_first[2:])
    assert resumed["already_stored"] == 0  # it started after the cursor, not from the top
    assert f"after={cursor}" in api.queries[0]


def test_paddle_retry_waits_follow_retry_after_then_a_capped_doubling(
    psp_api: tuple[PspApi, str],
) -> None:
    from bridge.errors import BackfillError
    from connectors.paddle.events_api import PaddleEvents

    api, api_url = psp_api
    api.paddle_events = paddle_series("cust_x", 2)
    api.paddle_failures = {
        0: [(429, {"Retry-After": "7"}), (502, {}), (500, {}), (504, {"Retry-After": "999"})]
    }
    waits: list[float] = []
    source = PaddleEvents(
        PADDLE_KEY, api_url, retries=5, backoff=1.0, max_wait=30.0, sleep=waits.append
    )
    try:
        listed = list(source.events(0, ["transaction.completed"]))
    finally:
        source.close()
    assert [e.event_id for e in listed] == sorted(
        (e["event_id"] for e in api.paddle_events), reverse=True
    )
    assert waits == [7.0, 2.0, 4.0, 30.0]  # Retry-After, backoff 1*2^n, capped

    api.paddle_failures = {api.paddle_pages: [(400, {})]}
    source = PaddleEvents(PADDLE_KEY, api_url, sleep=waits.append)
    with pytest.raises(BackfillError, match="Paddle answered 400"):
        list(source.events(0, ["transaction.completed"]))
    source.close()
    assert len(waits) == 4  # a 400 is not tried again


def test_paddle_backfill_stores_the_sdk_recorded_event_verbatim(
    make_bridge: Callable[..., RunningBridge],
    sandbox: Sandbox,
    tmp_path: Path,
    recorded: tuple[RecordedApi, str],
) -> None:
    """The list page Paddle's SDK records in its tests, dated into the window."""
    api, api_url = recorded
    page = (RECORDED / "paddle" / "list-events" / "page-1.json").read_bytes()
    [event] = json.loads(page)["data"]
    recent = datetime.fromtimestamp(time.time() - 3600, UTC).isoformat().replace("+00:00", "Z")
    page = page.replace(event["occurred_at"].encode(), recent.encode())
    api.pages = [page]
    config = backfill_config(tmp_path, sandbox.url, api_url)
    running = make_bridge(config=config.read_text())
    customer = sandbox.state.add_customer(external_id=event["data"]["customer_id"])

    env = {"PADDLE_API_KEY": PADDLE_KEY}
    out = json.loads(
        run_cli(config, "backfill", "paddle", "--since", "1d", "--json", env=env).stdout
    )
    assert out["stored_event_ids"] == [event["event_id"]]
    assert api.headers[0].get("paddle-version") == "1"
    body = stored_bodies(running)[event["event_id"]]
    assert body in page and json.loads(body)["data"] == event["data"]

    running.settle()
    total = Decimal(event["data"]["details"]["totals"]["grand_total"]) / 100
    assert sandbox.state.balance(customer, "GBP") == total


def test_backfilled_basil_invoice_is_debited_by_its_later_refund(
    make_bridge: Callable[..., RunningBridge],
    sandbox: Sandbox,
    tmp_path: Path,
    psp_api: tuple[PspApi, str],
) -> None:
    """On basil an invoice names no PaymentIntent; invoice_payment.paid links them. No
    rule uses it, yet backfill must list it once a reversal rule exists."""
    api, api_url = psp_api
    config = backfill_config(tmp_path, sandbox.url, api_url)
    refund_rule = (
        "      - name: refund\n"
        "        on: [refund.created, refund.updated]\n"
        "        reverse: {unknown_original: skip}\n"
    )
    text = config.read_text().replace(
        "          amount: paid\n", "          amount: paid\n" + refund_rule, 1
    )
    config.write_text(text)
    running = make_bridge(config=text)
    customer = sandbox.state.add_customer()

    created = int(time.time() - 3600)
    invoice = stripe.sample_event(
        "invoice.paid",
        event_id="evt_bf_inv",
        object_id="in_bfbasil",
        customer=customer,
        amount_minor=3000,
        created=created,
    )
    link = stripe.sample_event(
        "invoice_payment.paid",
        event_id="evt_bf_inpay",
        object_id="inpay_bfbasil",
        payment="in_bfbasil",
        amount_minor=3000,
        created=created + 1,
    )
    api.stripe_events = [invoice, link]

    env = {"STRIPE_API_KEY": STRIPE_KEY}
    out = json.loads(
        run_cli(config, "backfill", "stripe", "--since", "1d", "--json", env=env).stdout
    )
    assert "invoice_payment.paid" in out["types"]
    assert sorted(out["stored_event_ids"]) == ["evt_bf_inpay", "evt_bf_inv"]
    running.settle()
    assert sandbox.state.balance(customer, "USD") == Decimal("30.00")

    refund = stripe.sample_event(
        "refund.created",
        event_id="evt_bf_re",
        object_id="re_bfbasil",
        payment="pi_bfbasil",
        amount_minor=1000,
    )
    assert running.send_stripe(refund).status_code == 200
    running.settle()
    row = running.bridge.store.get_event("evt_bf_re")
    assert row is not None and row.status.value == "processed", row and row.reason
    assert sandbox.state.balance(customer, "USD") == Decimal("20.00")


def test_api_version_is_a_paddle_version_number_and_only_for_paddle(tmp_path: Path) -> None:
    from bridge.config.loading import parse_config
    from bridge.errors import ConfigError

    base = config_text(str(tmp_path / "bridge.db"), "http://127.0.0.1:9")
    pinned = base.replace("    type: paddle\n", "    type: paddle\n    api_version: 1\n")
    assert parse_config(pinned, "c.yaml").connectors["paddle"].api_version == "1"
    for text, words in [
        (base.replace("    type: stripe\n", "    type: stripe\n    api_version: 1\n"), "only for"),
        (base.replace("    type: paddle\n", "    type: paddle\n    api_version: v2\n"), "number"),
    ]:
        with pytest.raises(ConfigError, match=words):
            parse_config(text, "c.yaml")


def test_stripe_backfill_cut_off_by_5xx_resumes_after_the_last_stored_event(
    sandbox: Sandbox, tmp_path: Path, recorded: tuple[RecordedApi, str]
) -> None:
    api, api_url = recorded
    api.pages = [
        (RECORDED / "stripe" / "list-events" / f"page-{n}.json").read_bytes() for n in (1, 2)
    ]
    api.failures = {1: [(500, {})] * 3}  # page 2: more than the stripe library's 2 retries
    config = backfill_config(tmp_path, sandbox.url, api_url)
    (tmp_path / "bridge.db").touch()
    env = {"STRIPE_API_KEY": STRIPE_KEY}

    cut = run_cli(config, "backfill", "stripe", "--since", "2d", ok=False, env=env)
    assert cut.returncode == 1
    last = cut.stderr.strip().splitlines()[-1]
    first_page = [e["id"] for e in json.loads(api.pages[0])["data"]]
    assert f"--resume {first_page[-1]}" in last and "2 missing event(s)" in last, last

    api.queries.clear()
    resumed = json.loads(
        run_cli(
            config,
            "backfill",
            "stripe",
            "--since",
            "2d",
            "--resume",
            first_page[-1],
            "--json",
            env=env,
        ).stdout
    )
    assert f"starting_after={first_page[-1]}" in api.queries[0]
    second_page = [e["id"] for e in json.loads(api.pages[1])["data"]]
    assert sorted(resumed["stored_event_ids"]) == sorted(second_page)


def test_each_listed_event_is_cut_from_the_response_text_exactly() -> None:
    from bridge.errors import BackfillError
    from connectors.listing import raw_list as _raw_list

    page = (
        '{ "object" : "list",\n "url": "/v1/events", "has_more": false,\n'
        '  "data" :[\n  {"id": "evt_1", "type": "invoice.paid", "data": {"object": {"x": 1.50}}}'
        ' ,{"id":"evt_2","type":"invoice.paid","data":{"object":{"data":[1]}}}\n ] }'
    )
    parsed, items = _raw_list(page, "Stripe")
    assert parsed["has_more"] is False
    assert [raw for _, raw in items] == [
        '{"id": "evt_1", "type": "invoice.paid", "data": {"object": {"x": 1.50}}}',
        '{"id":"evt_2","type":"invoice.paid","data":{"object":{"data":[1]}}}',
    ]
    assert '"x": 1.50' in items[0][1]  # not re-encoded as 1.5
    for bad in (
        '{"data": [{"id": "evt_1", "type": "a"}], "data": []}',  # which one did it mean?
        '{"data": [{"id": "evt_1", "type": "a"}], "data": [{"id": "evt_2", "type": "a"}]}',
        '{"data": {"id": "evt_1"}}',
        '[{"id": "evt_1", "type": "a"}]',
        '{"data": [{"type": "a"}]}',
        '{"data": [{"id": "evt_1", "type": "a"}',
        "",
    ):
        with pytest.raises(BackfillError):
            _raw_list(bad, "Stripe")
