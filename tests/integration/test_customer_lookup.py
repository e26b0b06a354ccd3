"""Finding the Credyt customer as Credyt really answers: 303, 404, and everything else.

The bridge runs on loopback against the sandbox, which answers
`GET /customers?external_id=X` the way Credyt's SDK documents it (303 See Other to the
customer, or 404) and logs every request path it is asked for.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import pytest

from bridge.credyt.client import CredytClient, path_arg
from bridge.errors import CredytError, CredytUnavailableError
from bridge.storage.records import EventStatus
from connectors import paddle, stripe
from tests.conftest import RunningBridge, Sandbox


def lookups(sandbox: Sandbox, external_id: str) -> int:
    return sum(
        1 for r in sandbox.state.requests if r == f"GET /customers?external_id={external_id}"
    )


def test_stripe_and_paddle_customers_are_found_through_a_303_and_credited_once(
    running: RunningBridge, sandbox: Sandbox
) -> None:
    on_stripe = sandbox.state.add_customer(external_id="cus_found303")
    on_paddle = sandbox.state.add_customer(external_id="ctm_found303")
    invoice = stripe.sample_event(
        "invoice.paid", event_id="evt_s303", object_id="in_s303", psp_customer="cus_found303"
    )
    txn = paddle.sample_event(
        "transaction.completed",
        event_id="evt_p303",
        object_id="txn_p303",
        psp_customer="ctm_found303",
    )
    assert running.send_stripe(invoice).json() == {"status": "accepted"}
    assert running.send_paddle(txn).json() == {"status": "accepted"}
    running.settle()
    assert sandbox.state.balance(on_stripe, "USD") == Decimal("20.00")
    assert sandbox.state.balance(on_paddle, "USD") == Decimal("20.00")
    assert len(sandbox.state.adjustments) == 2
    assert lookups(sandbox, "cus_found303") == 1 and lookups(sandbox, "ctm_found303") == 1
    for event_id, customer in (("evt_s303", on_stripe), ("evt_p303", on_paddle)):
        row = running.bridge.store.get_event(event_id)
        assert row is not None and row.status is EventStatus.PROCESSED
        assert row.customer_id == customer


def test_an_unknown_external_id_fails_the_event_after_one_look_up(
    running: RunningBridge, sandbox: Sandbox
) -> None:
    invoice = stripe.sample_event(
        "invoice.paid", event_id="evt_404", object_id="in_404", psp_customer="cus_ghost404"
    )
    running.send_stripe(invoice)
    running.settle()
    row = running.bridge.store.get_event("evt_404")
    assert row is not None and row.status is EventStatus.FAILED
    assert row.reason == (
        "no credyt_customer_id in the payment's metadata and no Credyt customer with "
        "external_id cus_ghost404"
    )
    assert lookups(sandbox, "cus_ghost404") == 1
    assert sandbox.state.adjustment_requests == 0
    # (test_replay.py: `credyt-bridge replay` credits it once the customer exists.)


@pytest.mark.parametrize("status", [400, 422, 302, 200])
def test_any_other_final_answer_fails_the_event_with_credyts_answer(
    running: RunningBridge, sandbox: Sandbox, status: int
) -> None:
    customer = sandbox.state.add_customer(external_id="cus_odd")
    sandbox.state.inject(fail_next=1, fail_status=status, only="customers")
    running.send_stripe(
        stripe.sample_event(
            "invoice.paid", event_id="evt_odd", object_id="in_odd", psp_customer="cus_odd"
        )
    )
    running.settle()
    row = running.bridge.store.get_event("evt_odd")
    assert row is not None and row.status is EventStatus.FAILED, row
    assert row.reason is not None
    assert "Credyt refused the look-up of external_id cus_odd" in row.reason
    assert f"Credyt answered {status}" in row.reason
    assert lookups(sandbox, "cus_odd") == 1  # a verdict, not a loop
    assert sandbox.state.balance(customer, "USD") == 0


MALFORMED = ["../x", "x/../../customers?y=", "%2F", "?", "cust a"]


def test_malformed_customer_ids_never_reach_a_request_path(
    running: RunningBridge, sandbox: Sandbox
) -> None:
    good = sandbox.state.add_customer()
    for n, bad in enumerate(MALFORMED):
        running.send_stripe(
            stripe.sample_event(
                "invoice.paid", event_id=f"evt_bad{n}", object_id=f"in_bad{n}", customer=bad
            )
        )
        running.send_paddle(
            paddle.sample_event(
                "transaction.completed",
                event_id=f"evt_pbad{n}",
                object_id=f"txn_pbad{n}",
                customer=bad,
            )
        )
    running.send_stripe(
        stripe.sample_event("invoice.paid", event_id="evt_ok", object_id="in_ok", customer=good)
    )
    running.settle()
    # The key check at start, the asset's precision, then the one valid adjustment:
    # nothing else was asked.
    assert sandbox.state.requests == [
        "GET /accounts/self",
        "GET /assets/USD",
        f"POST /customers/{good}/wallet/adjustments",
    ]
    assert sandbox.state.balance(good, "USD") == Decimal("20.00")
    for n, bad in enumerate(MALFORMED):
        for event_id in (f"evt_bad{n}", f"evt_pbad{n}"):
            row = running.bridge.store.get_event(event_id)
            assert row is not None and row.status is EventStatus.FAILED, event_id
            assert row.reason is not None and "is not a valid Credyt customer id" in row.reason
            assert repr(bad) in row.reason


# --- the client alone, on a fake transport ------------------------------------------


def find_with(answer: httpx.Response) -> str | None:
    async def run() -> str | None:
        client = CredytClient("https://api.credyt.ai", "key_x")
        for pooled in client._clients:
            pooled._transport = httpx.MockTransport(lambda request: answer)
        try:
            return await client.find_customer("cus_1")
        finally:
            await client.aclose()

    return asyncio.run(run())


def test_the_303_location_is_read_and_checked() -> None:
    assert find_with(httpx.Response(303, headers={"Location": "/customers/cust_abc"})) == "cust_abc"
    absolute = "https://api.credyt.ai/customers/cust_abc"
    assert find_with(httpx.Response(303, headers={"Location": absolute})) == "cust_abc"
    assert find_with(httpx.Response(404)) is None
    for bad in ("/customers/..%2Fx", "/customers/", "/elsewhere/cust_abc", ""):
        with pytest.raises(CredytError, match="names no valid customer id") as refused:
            find_with(httpx.Response(303, headers={"Location": bad}))
        assert not isinstance(refused.value, CredytUnavailableError)
    with pytest.raises(CredytUnavailableError):
        find_with(httpx.Response(503))
    with pytest.raises(CredytUnavailableError):
        find_with(httpx.Response(429))


def test_path_arguments_are_encoded_as_one_segment() -> None:
    assert path_arg("cust_abc") == "cust_abc"
    assert path_arg("../x") == "..%2Fx"
    assert path_arg("x/../../customers?y=") == "x%2F..%2F..%2Fcustomers%3Fy%3D"
    assert path_arg("a b") == "a%20b"
