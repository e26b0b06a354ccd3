"""The sandbox's rate-limit switch: a token bucket that answers 429 with Retry-After
above N API calls a second, changes nothing for those, and counts them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from bridge.credyt.sandbox import SandboxState, create_sandbox_app
from bridge.receiving.servers import serve_in_thread

API_KEY = "key_rate"


@pytest.fixture
def sandbox() -> Iterator[tuple[SandboxState, httpx.Client]]:
    state = SandboxState()
    with (
        serve_in_thread(create_sandbox_app(state, api_key=API_KEY)) as url,
        httpx.Client(base_url=url, headers={"X-CREDYT-API-KEY": API_KEY}) as client,
    ):
        yield state, client


def adjust(client: httpx.Client, customer: str) -> httpx.Response:
    body = {"transaction_id": str(uuid.uuid4()), "asset": "USD", "amount": 10}
    return client.post(f"/customers/{customer}/wallet/adjustments", json=body | {"reason": "gift"})


def test_calls_over_the_rate_are_answered_429_and_change_nothing(
    sandbox: tuple[SandboxState, httpx.Client],
) -> None:
    state, client = sandbox
    customer = state.add_customer()
    assert client.post("/_sandbox/faults", json={"rate_limit": 1}).status_code == 200
    codes: list[int] = []
    for _ in range(10):
        answer = adjust(client, customer)
        codes.append(answer.status_code)
        if answer.status_code == 429:
            assert answer.headers["Retry-After"].isdigit()
            assert int(answer.headers["Retry-After"]) >= 1
    assert set(codes) <= {201, 429} and codes[0] == 201
    assert codes.count(429) >= 1  # ten calls back to back, one token a second
    assert state.rate_limited == codes.count(429)
    assert state.balance(customer, "USD") == Decimal(10) * codes.count(201)
    assert client.get("/_sandbox/state").json()["rate_limited"] == codes.count(429)


def test_a_retry_after_setting_overrides_the_buckets(
    sandbox: tuple[SandboxState, httpx.Client],
) -> None:
    state, client = sandbox
    customer = state.add_customer()
    state.inject(rate_limit=1, retry_after=7)
    answers = [adjust(client, customer) for _ in range(3)]
    limited = [a for a in answers if a.status_code == 429]
    assert limited and all(a.headers["Retry-After"] == "7" for a in limited)


def test_only_narrows_the_rate_limit_to_one_group(
    sandbox: tuple[SandboxState, httpx.Client],
) -> None:
    state, client = sandbox
    customer = state.add_customer()
    state.inject(rate_limit=1, only="adjustments")
    assert all(client.get(f"/customers/{customer}").status_code == 200 for _ in range(5))
    assert state.rate_limited == 0


@pytest.mark.parametrize("bad", [0, -1, "fast", True])
def test_a_bad_rate_limit_is_refused(
    sandbox: tuple[SandboxState, httpx.Client], bad: object
) -> None:
    _, client = sandbox
    answer = client.post("/_sandbox/faults", json={"rate_limit": bad})
    assert answer.status_code == 422
    assert "rate_limit" in answer.text
