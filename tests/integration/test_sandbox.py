"""The local Credyt sandbox, over real HTTP: one uvicorn server, a real httpx client."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from bridge.credyt.sandbox import SandboxState, create_sandbox_app, dumps_exact
from bridge.errors import SandboxError
from bridge.receiving.servers import serve_in_thread

KEY = {"X-CREDYT-API-KEY": "key_sandbox"}


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[SandboxState, str]]:
    state = SandboxState()
    with serve_in_thread(create_sandbox_app(state)) as url:
        yield state, url


@pytest.fixture
def state(server: tuple[SandboxState, str]) -> SandboxState:
    server[0].reset()
    return server[0]


@pytest.fixture
def client(server: tuple[SandboxState, str], state: SandboxState) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server[1], headers=KEY, timeout=5) as http:
        yield http


@pytest.fixture
def customer(state: SandboxState) -> str:
    return state.add_customer(external_id="cus_A", name="Ada")


def adjustment(amount: Any = 10, **overrides: Any) -> dict[str, Any]:
    body = {
        "transaction_id": str(uuid.uuid4()),
        "asset": "USD",
        "amount": amount,
        "reason": "external_topup",
        "account_name": "default",
        "description": "test credit",
        "metadata": {"source": "test"},
    }
    return body | overrides


def post_adjustment(client: httpx.Client, customer: str, body: dict[str, Any]) -> httpx.Response:
    return client.post(f"/customers/{customer}/wallet/adjustments", json=body)


def with_amount(body: dict[str, Any], amount: str) -> str:
    """The body as JSON text whose amount is the literal `amount` (body amount must be 10)."""
    return json.dumps(body).replace('"amount": 10', f'"amount": {amount}')


def send_raw(client: httpx.Client, path: str, text: str) -> httpx.Response:
    """POST JSON text as written, so amounts like 0.1 reach the server without a float."""
    return client.post(path, content=text, headers={"content-type": "application/json"})


# --- auth and customers -------------------------------------------------------------


def test_missing_or_wrong_key_is_401_with_empty_body(
    server: tuple[SandboxState, str], customer: str
) -> None:
    with httpx.Client(base_url=server[1]) as anonymous:
        missing = anonymous.get(f"/customers/{customer}")
        wrong = anonymous.get(f"/customers/{customer}", headers={"X-CREDYT-API-KEY": "key_x"})
        control = anonymous.get("/_sandbox/state")
    assert (missing.status_code, missing.content) == (401, b"")
    assert (wrong.status_code, wrong.content) == (401, b"")
    assert control.status_code == 200


def test_auth_can_be_disabled() -> None:
    with (
        serve_in_thread(create_sandbox_app(api_key=None)) as url,
        httpx.Client(base_url=url) as anonymous,
    ):
        assert anonymous.get("/customers").status_code == 200


def test_add_customer_makes_credyt_shaped_ids(state: SandboxState) -> None:
    customer_id = state.add_customer(name="Ada")
    assert len(customer_id) == 31 and customer_id.startswith("cust_")
    assert customer_id[5:].isalnum() and customer_id[5:] == customer_id[5:].lower()
    assert state.add_customer(customer_id="cust_fixed") == "cust_fixed"
    with pytest.raises(SandboxError) as taken:
        state.add_customer(customer_id="cust_fixed")
    assert taken.value.status_code == 409


def test_create_get_and_find_customer_by_external_id(client: httpx.Client) -> None:
    created = client.post(
        "/customers", json={"name": "Ada", "external_id": "cus_123", "email": "a@x.io"}
    )
    assert created.status_code == 201
    customer_id = created.json()["id"]
    assert customer_id.startswith("cust_")

    got = client.get(f"/customers/{customer_id}").json()
    assert got["id"] == customer_id and got["external_id"] == "cus_123"
    assert got["email"] == "a@x.io" and got["created_at"].endswith("Z")

    assert got["active_subscription_count"] == 0

    # Credyt's contract: external_id is a 303 to the customer, or a 404; never a page.
    found = client.get("/customers", params={"external_id": "cus_123"})
    assert found.status_code == 303 and found.content == b""
    assert found.headers["location"] == f"/customers/{customer_id}"
    missing = client.get("/customers", params={"external_id": "cus_none"})
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert "cus_none" in missing.json()["detail"]

    page = client.get("/customers", params={"email": "a@x.io"}).json()
    assert page["total_count"] == 1
    assert page["items"] == [
        {
            "id": customer_id,
            "external_id": "cus_123",
            "name": "Ada",
            "email": "a@x.io",
            "active_subscription_count": 0,
        }
    ]
    empty = client.get("/customers", params={"email": "nobody@x.io"}).json()
    assert empty["items"] == [] and empty["total_count"] == 0


def test_transactions_read_back_by_id_under_their_customer(
    client: httpx.Client, state: SandboxState, customer: str
) -> None:
    body = adjustment(amount=-2.5, reason="external_refund")
    assert post_adjustment(client, customer, body).status_code == 201
    got = client.get(f"/customers/{customer}/wallet/transactions/{body['transaction_id']}")
    assert got.status_code == 200
    assert got.json()["id"] == body["transaction_id"]
    assert (got.json()["asset"], got.json()["account_id"]) == ("USD", "default:USD")
    assert Decimal(str(got.json()["amount"])) == Decimal("-2.5")
    other = state.add_customer(name="Other")
    unknown = str(uuid.uuid4())
    assert client.get(f"/customers/{customer}/wallet/transactions/{unknown}").status_code == 404
    elsewhere = client.get(f"/customers/{other}/wallet/transactions/{body['transaction_id']}")
    assert elsewhere.status_code == 404


def test_accounts_self_and_the_request_log(client: httpx.Client, state: SandboxState) -> None:
    assert client.get("/accounts/self").json()["environment"] == "test"
    state.environment = "live"
    assert client.get("/accounts/self").json()["environment"] == "live"
    client.get("/customers", params={"external_id": "a b"})
    assert state.requests[-2:] == ["GET /accounts/self", "GET /customers?external_id=a+b"]


def test_duplicate_external_id_is_409(client: httpx.Client, customer: str) -> None:
    again = client.post("/customers", json={"name": "Other", "external_id": "cus_A"})
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["title"] == "Customer already exists"


def test_customers_list_pages(client: httpx.Client, state: SandboxState) -> None:
    ids = [state.add_customer(name=f"c{i}") for i in range(5)]
    page = client.get("/customers", params={"limit": 2, "offset": 1}).json()
    assert [item["id"] for item in page["items"]] == ids[1:3]
    assert (page["total_count"], page["limit"], page["offset"]) == (5, 2, 1)
    bad = client.get("/customers", params={"limit": "lots"})
    assert bad.status_code == 422 and "limit" in bad.json()["errors"]


def test_unknown_customer_is_404(client: httpx.Client) -> None:
    assert client.get("/customers/cust_nobody").status_code == 404
    missing = post_adjustment(client, "cust_nobody", adjustment())
    assert missing.status_code == 404 and missing.json()["status"] == 404


# --- adjustments --------------------------------------------------------------------


def test_credits_and_debits_are_exact(
    client: httpx.Client, state: SandboxState, customer: str
) -> None:
    path = f"/customers/{customer}/wallet/adjustments"
    for amount in ("0.1", "0.2", "1.234", "-0.5"):
        body = with_amount(adjustment(), amount)
        answer = send_raw(client, path, body)
        assert answer.status_code == 201, answer.text
        assert answer.json()["id"] == json.loads(body)["transaction_id"]
    assert state.balance(customer, "USD") == Decimal("1.034")
    assert state.balance(customer, "EUR") == Decimal("0")
    assert [a["body"]["amount"] for a in state.adjustments] == [
        Decimal("0.1"),
        Decimal("0.2"),
        Decimal("1.234"),
        Decimal("-0.5"),
    ]


def test_overdraft_and_named_accounts(
    client: httpx.Client, state: SandboxState, customer: str
) -> None:
    post_adjustment(client, customer, adjustment(-20, reason="external_refund"))
    post_adjustment(client, customer, adjustment(7, asset="TOK", account_name="promo"))
    assert state.balance(customer, "USD") == Decimal("-20")
    assert state.balance(customer, "TOK", "promo") == Decimal("7")


def test_wallet_json_numbers_are_exact(client: httpx.Client, customer: str) -> None:
    path = f"/customers/{customer}/wallet/adjustments"
    for amount in ("0.1", "0.2"):
        send_raw(client, path, with_amount(adjustment(), amount))
    wallet = client.get(f"/customers/{customer}/wallet")
    assert '"available":0.3' in wallet.text
    assert wallet.json(parse_float=Decimal) == {
        "accounts": [
            {"id": "default:USD", "name": "default", "asset": "USD", "available": Decimal("0.3")}
        ]
    }
    account = client.get(f"/customers/{customer}/wallet/default:USD").json(parse_float=Decimal)
    assert account["available"] == Decimal("0.3")
    assert (account["pending_in"], account["pending_out"]) == (0, 0)
    assert client.get(f"/customers/{customer}/wallet/default:EUR").status_code == 404


def test_repeated_transaction_id_keeps_balance_and_is_409(
    client: httpx.Client, state: SandboxState, customer: str
) -> None:
    body = adjustment(25)
    first = post_adjustment(client, customer, body)
    again = post_adjustment(client, customer, body)
    assert first.status_code == 201
    assert again.status_code == 409
    assert "already exists" in again.json()["title"]
    assert state.balance(customer, "USD") == Decimal("25")
    assert len(state.adjustments) == 1 and state.adjustment_requests == 2
    assert state.conflicts == []


def test_repeat_with_a_different_body_is_recorded_as_conflict(
    client: httpx.Client, state: SandboxState, customer: str
) -> None:
    body = adjustment(25)
    post_adjustment(client, customer, body)
    changed = post_adjustment(client, customer, body | {"amount": 30})
    assert changed.status_code == 409
    assert state.balance(customer, "USD") == Decimal("25")
    [conflict] = state.conflicts
    assert conflict["transaction_id"] == body["transaction_id"]
    assert (conflict["first"]["amount"], conflict["second"]["amount"]) == (25, 30)


def test_duplicate_status_201_answers_the_original_id() -> None:
    state = SandboxState()
    customer = state.add_customer()
    with (
        serve_in_thread(create_sandbox_app(state, duplicate_status=201)) as url,
        httpx.Client(base_url=url, headers=KEY) as http,
    ):
        body = adjustment(5)
        first = post_adjustment(http, customer, body)
        again = post_adjustment(http, customer, body)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert state.balance(customer, "USD") == Decimal("5")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"transaction_id": None}, "transaction_id"),
        ({"transaction_id": "not-a-uuid"}, "transaction_id"),
        ({"amount": "10"}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": None}, "amount"),
        ({"asset": ""}, "asset"),
        ({"reason": "refund"}, "reason"),
        ({"metadata": {"order": 42}}, "metadata"),
        ({"effective_at": "yesterday"}, "effective_at"),
        ({"expires_at": "2025-13-01T00:00:00Z"}, "expires_at"),
    ],
)
def test_invalid_adjustment_is_422_naming_the_field(
    client: httpx.Client, state: SandboxState, customer: str, change: dict[str, Any], field: str
) -> None:
    body = {k: v for k, v in (adjustment() | change).items() if v is not None}
    answer = post_adjustment(client, customer, body)
    assert answer.status_code == 422
    problem = answer.json()
    assert problem["status"] == 422 and field in problem["errors"]
    assert field in problem["detail"]
    assert state.adjustments == [] and state.balance(customer, "USD") == 0


def test_valid_optional_fields_are_accepted(client: httpx.Client, customer: str) -> None:
    body = adjustment(effective_at="2025-01-01T00:00:00Z", expires_at="2026-01-01T00:00:00.5+02:00")
    assert post_adjustment(client, customer, body).status_code == 201


def test_malformed_or_non_finite_json_is_refused(client: httpx.Client, customer: str) -> None:
    path = f"/customers/{customer}/wallet/adjustments"
    assert send_raw(client, path, "{not json").status_code == 400
    assert send_raw(client, path, with_amount(adjustment(), "NaN")).status_code == 400
    assert send_raw(client, path, "[1, 2]").status_code == 422


# --- faults -------------------------------------------------------------------------


def test_fail_next_counts_down_and_changes_nothing(
    client: httpx.Client, state: SandboxState, customer: str
) -> None:
    state.inject(fail_next=2, fail_status=503)
    body = adjustment(10)
    statuses = [post_adjustment(client, customer, body).status_code for _ in range(3)]
    assert statuses == [503, 503, 201]
    assert state.balance(customer, "USD") == Decimal("10")
    assert state.adjustment_requests == 3 and state.faults.fail_next == 0


def test_only_adjustments_spares_other_requests(
    client: httpx.Client, state: SandboxState, customer: str
) -> None:
    state.inject(fail_next=1, only="adjustments")
    assert client.get(f"/customers/{customer}").status_code == 200
    assert post_adjustment(client, customer, adjustment()).status_code == 500


def test_rate_limit_answers_429_with_retry_after(
    client: httpx.Client, state: SandboxState, customer: str
) -> None:
    state.inject(rate_limit_next=1, retry_after=2)
    body = adjustment(10)
    limited = post_adjustment(client, customer, body)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
    assert state.balance(customer, "USD") == 0
    assert post_adjustment(client, customer, body).status_code == 201


def test_delay_holds_every_answer(client: httpx.Client, state: SandboxState, customer: str) -> None:
    state.inject(delay=0.2)
    started = time.monotonic()
    assert client.get(f"/customers/{customer}").status_code == 200
    assert time.monotonic() - started >= 0.2


def test_drop_next_applies_then_breaks_the_answer(
    client: httpx.Client, state: SandboxState, customer: str
) -> None:
    state.inject(drop_next=1)
    body = adjustment(10)
    with pytest.raises(httpx.RemoteProtocolError):
        post_adjustment(client, customer, body)
    assert state.balance(customer, "USD") == Decimal("10")
    retry = post_adjustment(client, customer, body)
    assert retry.status_code == 409
    assert state.balance(customer, "USD") == Decimal("10") and len(state.adjustments) == 1


def test_faults_state_and_reset_over_http(client: httpx.Client, state: SandboxState) -> None:
    made = client.post("/_sandbox/customers", json={"customer_id": "cust_x", "external_id": "e"})
    assert made.status_code == 201 and made.json() == {"id": "cust_x"}
    set_faults = client.post("/_sandbox/faults", json={"fail_next": 1, "retry_after": 0.5})
    assert set_faults.status_code == 200 and state.faults.fail_next == 1
    assert client.post("/_sandbox/faults", json={"explode": 1}).status_code == 422
    assert client.post("/_sandbox/faults", json={"fail_next": -1}).status_code == 422
    assert client.get("/customers/cust_x").status_code == 500
    send_raw(client, "/customers/cust_x/wallet/adjustments", with_amount(adjustment(), "0.10"))
    snapshot = client.get("/_sandbox/state")
    assert '"cust_x":{"default:USD":0.10}' in snapshot.text
    data = snapshot.json(parse_float=Decimal)
    assert data["adjustment_requests"] == 1 and data["request_count"] == 2
    assert data["adjustments"][0]["body"]["amount"] == Decimal("0.10")
    assert client.post("/_sandbox/reset").status_code == 200
    assert state.customers == {} and state.request_count == 0


# --- usage events -------------------------------------------------------------------


def usage(event_id: str, cost: str, **data: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "event_type": "chat_completion",
        "occurred_at": "2025-05-01T12:00:00Z",
        "subject": "req_1",
        "data": {"cost": Decimal(cost), **data},
    }


def send_events(client: httpx.Client, payload: dict[str, Any]) -> httpx.Response:
    return send_raw(client, "/events", dumps_exact(payload))


def test_usage_events_debit_and_are_idempotent_by_id(
    client: httpx.Client, state: SandboxState, customer: str
) -> None:
    state.add_customer(customer_id="cust_b", external_id="cus_B")
    first = send_events(
        client, {"customer_id": customer, "events": [usage("ev1", "0.25"), usage("ev2", "0.05")]}
    )
    assert first.status_code == 201 and first.json() == {"accepted": 2, "duplicates": 0}
    again = send_events(client, {"customer_external_id": "cus_A", "events": [usage("ev2", "0.05")]})
    assert again.json() == {"accepted": 0, "duplicates": 1}
    send_events(
        client, {"customer_external_id": "cus_B", "events": [usage("ev3", "1", asset="TOK")]}
    )
    assert state.balance(customer, "USD") == Decimal("-0.30")
    assert state.balance("cust_b", "TOK") == Decimal("-1")


def test_bad_usage_events_are_refused(client: httpx.Client, customer: str) -> None:
    bad = send_events(client, {"customer_id": customer, "events": [{"id": "ev1"}]})
    assert bad.status_code == 422
    assert {"events[0].event_type", "events[0].occurred_at"} <= set(bad.json()["errors"])
    nobody = send_events(client, {"customer_id": "cust_nobody", "events": [usage("e", "1")]})
    assert nobody.status_code == 404


def test_the_sandbox_command_serves_the_environment_it_is_given() -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "sandbox", "--port", str(port), "--environment", "live"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = httpx.get(
                    f"http://127.0.0.1:{port}/accounts/self",
                    headers={"X-CREDYT-API-KEY": "key_sandbox"},
                )
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the sandbox did not start"
                time.sleep(0.05)
        assert answer.status_code == 200 and answer.json()["environment"] == "live"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
