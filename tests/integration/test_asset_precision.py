"""Amounts fit their asset: every credit is cut to its asset's precision, toward zero.

A real bridge on uvicorn and the sandbox on loopback ports; the sandbox answers
`GET /assets/{code}` with ISO 4217 exponents for currencies and with what a test gave a
custom asset. The bodies Credyt received are read back from the sandbox.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.config.loading import parse_config
from bridge.credyt.assets import AssetPrecisions, quantize
from bridge.credyt.client import CredytClient
from bridge.errors import ConfigError, CredytUnavailableError
from bridge.storage.records import EventStatus
from connectors import stripe
from tests.conftest import API_KEY, RunningBridge, Sandbox, config_text, wait_until


def rule_config(tmp_path: Path, sandbox: Sandbox, credit: str, credyt_extra: str = "") -> str:
    """The default config with the Stripe connector's one rule crediting `credit`."""
    text = config_text(str(tmp_path / "bridge.db"), sandbox.url)
    text = text.replace(
        "        credit:\n          amount: paid\n  paddle:",
        f"        credit: {credit}\n  paddle:",
        1,
    )
    if credyt_extra:
        text = text.replace("  timeout: 5\n", f"  timeout: 5\n  {credyt_extra}\n", 1)
    return text


def invoice(event_id: str, customer: str, amount_minor: int, currency: str) -> dict[str, Any]:
    return stripe.sample_event(
        "invoice.paid",
        event_id=event_id,
        object_id=f"in_{event_id}",
        customer=customer,
        amount_minor=amount_minor,
        currency=currency,
    )


def credited(sandbox: Sandbox) -> list[tuple[str, Decimal]]:
    return [(a["body"]["asset"], a["body"]["amount"]) for a in sandbox.state.adjustments]


@pytest.mark.parametrize(
    ("currency", "amount", "sent"),
    [
        ("jpy", "1000.5", Decimal("1000")),  # no yen has a half
        ("kwd", "2.5005", Decimal("2.5")),  # three places, cut down: 2.500
        ("usd", "3.339", Decimal("3.33")),  # two places, never up
    ],
)
def test_a_credit_in_a_currency_is_cut_to_its_decimal_places(
    make_bridge: Any, sandbox: Sandbox, tmp_path: Path, currency: str, amount: str, sent: Decimal
) -> None:
    """A fixed amount per payment (a rule's `amount:`) with more places than the currency."""
    bridge: RunningBridge = make_bridge(rule_config(tmp_path, sandbox, f'{{amount: "{amount}"}}'))
    customer = sandbox.state.add_customer()
    response = bridge.send_stripe(invoice("evt_cur", customer, 100_000, currency))
    assert response.status_code == 200
    bridge.settle()
    assert credited(sandbox) == [(currency.upper(), sent)]
    assert sandbox.state.balance(customer, currency.upper()) == sent
    # The outbox row says what was sent: the report and the reversals read it.
    (row,) = bridge.bridge.store.adjustments_for_payment("in_evt_cur")
    assert Decimal(row.amount) == sent


def test_a_paid_amount_in_kwd_keeps_its_three_places(
    make_bridge: Any, sandbox: Sandbox, tmp_path: Path
) -> None:
    bridge = make_bridge()
    customer = sandbox.state.add_customer()
    bridge.send_stripe(invoice("evt_kwd", customer, 12345, "kwd"))
    bridge.settle()
    assert credited(sandbox) == [("KWD", Decimal("12.345"))]


def test_a_custom_asset_with_precision_0_from_credyt(
    make_bridge: Any, sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.state.add_asset("TOK", 0)
    bridge = make_bridge(rule_config(tmp_path, sandbox, '{amount: paid, asset: TOK, rate: "0.7"}'))
    customer = sandbox.state.add_customer()
    bridge.send_stripe(invoice("evt_tok", customer, 1234, "usd"))  # 12.34 * 0.7 = 8.638
    bridge.settle()
    assert credited(sandbox) == [("TOK", Decimal("8"))]


def test_a_custom_asset_with_precision_4_from_the_config(
    make_bridge: Any, sandbox: Sandbox, tmp_path: Path
) -> None:
    """`credyt.assets` settles an asset Credyt is not asked about (strict: it would 404)."""
    sandbox.state.strict_assets = True
    bridge = make_bridge(
        rule_config(
            tmp_path,
            sandbox,
            '{amount: paid, asset: PTS, rate: "0.33333"}',
            credyt_extra="assets: {PTS: 4}",
        )
    )
    customer = sandbox.state.add_customer()
    bridge.send_stripe(invoice("evt_pts", customer, 1001, "usd"))  # 10.01 * 0.33333 = 3.3366333
    bridge.settle()
    assert credited(sandbox) == [("PTS", Decimal("3.3366"))]


def test_credyt_down_for_the_precision_retries_the_event_and_guesses_nothing(
    make_bridge: Any, sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.state.add_asset("TOK", 1)
    customer = sandbox.state.add_customer()
    # GET /assets is the sandbox's `assets` fault group; the customer id comes from
    # metadata, so no look-up is made.
    sandbox.state.inject(fail_next=10_000, fail_status=503, only="assets")
    bridge = make_bridge(rule_config(tmp_path, sandbox, '{amount: paid, asset: TOK, rate: "3"}'))
    bridge.send_stripe(invoice("evt_down", customer, 1111, "usd"))  # 33.33 TOK -> 33.3

    def tried() -> bool:
        row = bridge.bridge.store.get_event("evt_down")
        return row is not None and row.attempts >= 1

    wait_until(tried, 10, "a failed precision look-up")
    row = bridge.bridge.store.get_event("evt_down")
    assert row is not None and row.status is EventStatus.PENDING
    assert "precision of asset TOK" in (row.reason or "")
    assert row.next_attempt_at is not None and row.next_attempt_at > time.time()  # backs off
    assert bridge.bridge.store.adjustments_for_payment("in_evt_down") == []  # no guess
    sandbox.state.inject()  # Credyt is back
    bridge.settle(15)
    assert credited(sandbox) == [("TOK", Decimal("33.3"))]


def test_an_asset_credyt_does_not_know_fails_the_event_with_the_key_to_set(
    make_bridge: Any, sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.state.strict_assets = True
    bridge = make_bridge(rule_config(tmp_path, sandbox, "{amount: paid, asset: NOPE}"))
    customer = sandbox.state.add_customer()
    bridge.send_stripe(invoice("evt_nope", customer, 500, "usd"))
    bridge.settle()
    row = bridge.bridge.store.get_event("evt_nope")
    assert row is not None and row.status == EventStatus.FAILED.value
    assert "no asset NOPE" in (row.reason or "") and "credyt.assets" in (row.reason or "")
    assert sandbox.state.adjustments == []


def test_the_sandbox_answers_assets_as_the_sdk_reads_them(sandbox: Sandbox) -> None:
    from corehttp.credentials import ServiceKeyCredential
    from credytapi import CredytApiClient

    sandbox.state.add_asset("TOK", 4)
    client = CredytApiClient(endpoint=sandbox.url, credential=ServiceKeyCredential(API_KEY))
    assert client.assets.get("JPY").precision == 0
    assert client.assets.get("KWD").precision == 3
    assert client.assets.get("TOK").precision == 4
    sandbox.state.strict_assets = True
    with pytest.raises(Exception, match="404|Not Found|not found"):
        client.assets.get("NOPE")


def test_the_client_reads_one_asset_once_however_many_events_ask(sandbox: Sandbox) -> None:
    async def scenario() -> tuple[list[int], int]:
        client = CredytClient(sandbox.url, API_KEY)
        try:
            precisions = AssetPrecisions(client)
            before = sandbox.state.request_count
            found = await asyncio.gather(*(precisions.precision("KWD") for _ in range(20)))
            found.append(await precisions.precision("KWD"))
            return found, sandbox.state.request_count - before
        finally:
            await client.aclose()

    found, requests = asyncio.run(scenario())
    assert found == [3] * 21
    assert requests == 1


def test_unreachable_credyt_is_unavailable_not_a_guess() -> None:
    asked: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        return httpx.Response(503, text="down")

    async def scenario() -> int:
        client = CredytClient("http://credyt.invalid", API_KEY)
        for pooled in client._clients:
            pooled._transport = httpx.MockTransport(refuse)
        try:
            with pytest.raises(CredytUnavailableError, match="precision of asset USD"):
                await AssetPrecisions(client).precision("USD")
            # the config's value is used without asking Credyt
            return await AssetPrecisions(client, {"usd": 2}).precision("USD")
        finally:
            await client.aclose()

    assert asyncio.run(scenario()) == 2
    assert asked == ["/assets/USD"]


def test_quantize_rounds_toward_zero() -> None:
    assert quantize(Decimal("1498.5"), 0) == Decimal("1498")
    assert quantize(Decimal("0.999"), 2) == Decimal("0.99")
    assert quantize(Decimal("-1.239"), 2) == Decimal("-1.23")
    assert quantize(Decimal("5"), 4) == Decimal("5.0000")


@pytest.mark.parametrize(
    ("value", "message"),
    [("{TOK: -1}", "at least 0"), ("{TOK: 19}", "at most 18"), ("{TOK: two}", "whole number")],
)
def test_bad_asset_precisions_are_config_errors(value: str, message: str) -> None:
    text = config_text("bridge.db", "http://127.0.0.1:1").replace(
        "  timeout: 5\n", f"  timeout: 5\n  assets: {value}\n", 1
    )
    with pytest.raises(ConfigError, match=message):
        parse_config(text)


def test_asset_precisions_are_read_from_the_config() -> None:
    text = config_text("bridge.db", "http://127.0.0.1:1").replace(
        "  timeout: 5\n", "  timeout: 5\n  assets: {TOK: 0, credits: 4}\n", 1
    )
    assert parse_config(text).credyt.assets == {"TOK": 0, "CREDITS": 4}
