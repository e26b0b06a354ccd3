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
from urllib.parse import urlencode

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bridge.servers import serve_in_thread
from connectors import paddle, stripe
from tests.conftest import RunningBridge, Sandbox, config_text
from tests.operator_helpers import run_cli

STRIPE_KEY = "sk_test_backfill_0123456789"
PADDLE_KEY = "pdl_sdbx_apikey_backfill_0123456789"
DAY = 86400


@dataclass
class PspApi:
    """Events the fake PSP APIs list, and the query strings they were asked."""

    stripe_events: list[dict[str, Any]] = field(default_factory=list)
    paddle_events: list[dict[str, Any]] = field(default_factory=list)
    page_size: int = 2  # small pages, so every listing takes several
    queries: list[str] = field(default_factory=list)


def create_psp_api(api: PspApi) -> Starlette:
    async def stripe_events(request: Request) -> Response:
        api.queries.append(str(request.url.query))
        if request.headers.get("authorization") != f"Bearer {STRIPE_KEY}":
            error = {"type": "invalid_request_error", "message": "Invalid API Key provided"}
            return JSONResponse({"error": error}, status_code=401)
        q = request.query_params
        types = {v for k, v in q.multi_items() if k.startswith("types[")}
        gte = int(q.get("created[gte]", "0"))
        listed = sorted(
            (e for e in api.stripe_events if e["created"] >= gte and e["type"] in types),
            key=lambda e: (e["created"], e["id"]),
            reverse=True,
        )
        after = q.get("starting_after")
        if after:
            listed = listed[[e["id"] for e in listed].index(after) + 1 :]
        size = min(int(q.get("limit", "10")), api.page_size)
        body = {
            "object": "list",
            "url": "/v1/events",
            "has_more": len(listed) > size,
            "data": listed[:size],
        }
        return JSONResponse(body)

    async def paddle_events(request: Request) -> Response:
        api.queries.append(str(request.url.query))
        if request.headers.get("authorization") != f"Bearer {PADDLE_KEY}":
            error = {"type": "request_error", "code": "authentication_malformed"}
            return JSONResponse({"error": error}, status_code=403)
        q = request.query_params
        assert q.get("order_by") == "id[DESC]"
        types = set(q.get("event_type", "").split(","))
        listed = sorted(
            (e for e in api.paddle_events if e["event_type"] in types),
            key=lambda e: e["event_id"],
            reverse=True,
        )
        after = q.get("after")
        if after:
            listed = [e for e in listed if e["event_id"] < after]
        size = min(int(q.get("per_page", "50")), api.page_size)
        page = listed[:size]
        following = {**dict(q), "after": page[-1]["event_id"]} if page else dict(q)
        pagination = {
            "per_page": size,
            "next": f"{request.url.replace(query=urlencode(following))}",
            "has_more": len(listed) > size,
            "estimated_total": len(listed),
        }
        return JSONResponse(
            {"data": page, "meta": {"request_id": "req_1", "pagination": pagination}}
        )

    return Starlette(
        routes=[
            Route("/v1/events", stripe_events, methods=["GET"]),
            Route("/events", paddle_events, methods=["GET"]),
        ]
    )


@pytest.fixture
def psp_api() -> Iterator[tuple[PspApi, str]]:
    api = PspApi()
    with serve_in_thread(create_psp_api(api)) as url:
        yield api, url


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
    assert "listing stripe events" in again.stderr  # the progress bar's label
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
    from bridge.records import EventFilter

    return EventFilter(limit=1000)


def test_backfill_errors_are_one_line(
    sandbox: Sandbox, tmp_path: Path, psp_api: tuple[PspApi, str]
) -> None:
    _, api_url = psp_api
    config = backfill_config(tmp_path, sandbox.url, api_url)
    (tmp_path / "bridge.db").touch()
    cases = [
        (("backfill", "stripe", "--since", "1d"), {"STRIPE_API_KEY": "sk_test_wrong"}, "Stripe"),
        (("backfill", "paddle", "--since", "1d"), {"PADDLE_API_KEY": "wrong"}, "Paddle"),
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
