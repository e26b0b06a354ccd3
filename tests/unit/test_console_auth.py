"""The console's session cookies, CSRF comparison, log-in throttle and page helpers."""

from __future__ import annotations

import base64
import json

import pytest
from starlette.requests import Request
from starlette.responses import Response

from bridge.console import pages
from bridge.console.auth import LoginThrottle, SessionSigner, csrf_matches
from bridge.console.routes import _cookie, _safe_next
from bridge.errors import OperationError

TOKEN = "unit-console-token-0123456789"
NOW = 1_800_000_000.0


def test_a_session_round_trips_and_expires() -> None:
    signer = SessionSigner(TOKEN, lifetime=3600)
    cookie, session = signer.new_session(NOW)
    assert signer.session(cookie, NOW + 10) == session
    assert session.expires == int(NOW) + 3600
    assert signer.session(cookie, NOW + 3600) is None  # expired at its expiry
    assert (
        TOKEN not in cookie
        and TOKEN not in base64.urlsafe_b64decode(cookie.split(".")[0] + "==").decode()
    )


def test_replicas_with_the_same_token_accept_each_other_s_sessions() -> None:
    cookie, session = SessionSigner(TOKEN).new_session(NOW)
    assert SessionSigner(TOKEN).session(cookie, NOW) == session
    assert SessionSigner(TOKEN + "-rotated").session(cookie, NOW) is None


def test_a_forged_or_altered_cookie_is_no_session() -> None:
    signer = SessionSigner(TOKEN)
    cookie, _ = signer.new_session(NOW)
    payload, signature = cookie.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    longer = (
        base64.urlsafe_b64encode(json.dumps({**data, "exp": data["exp"] + 10**6}).encode())
        .decode()
        .rstrip("=")
    )
    for forged in (
        f"{longer}.{signature}",
        f"{payload}.{signature[:-2]}AA",
        payload,
        f"{payload}.{signature}.x",
        "",
        None,
        "a" * 5000,
    ):
        assert signer.session(forged, NOW) is None, forged
    # a log-in form's cookie is signed with the same key but is never a session
    login_cookie, _ = signer.new_login_form(NOW)
    assert signer.session(login_cookie, NOW) is None
    assert signer.login_form_token(cookie, NOW) is None


def test_the_log_in_form_token_comes_back_from_its_cookie_until_it_expires() -> None:
    signer = SessionSigner(TOKEN)
    cookie, token = signer.new_login_form(NOW)
    assert signer.login_form_token(cookie, NOW + 60) == token
    assert signer.login_form_token(cookie, NOW + 601) is None


def test_token_and_csrf_comparisons() -> None:
    signer = SessionSigner(TOKEN)
    assert signer.token_matches(TOKEN)
    assert not signer.token_matches(TOKEN[:-1]) and not signer.token_matches("")
    assert csrf_matches("abc", "abc")
    assert not csrf_matches("abc", None) and not csrf_matches("abc", "abd")


def test_the_throttle_allows_a_few_failures_per_window_and_forgets_old_ones() -> None:
    throttle = LoginThrottle(attempts=3, window=60, clients=2)
    for n in range(3):
        assert throttle.retry_after("10.0.0.1", 100 + n) == 0
        throttle.failed("10.0.0.1", 100 + n)
    assert throttle.retry_after("10.0.0.1", 103) == 57  # until the first failure is 60 s old
    assert throttle.retry_after("10.0.0.2", 103) == 0  # another client is not held up
    assert throttle.retry_after("10.0.0.1", 160.5) == 0
    throttle.failed("10.0.0.1", 200)
    throttle.succeeded("10.0.0.1")
    assert throttle.retry_after("10.0.0.1", 200) == 0
    for client in ("a", "b", "c"):  # the table keeps at most `clients` addresses
        for _ in range(3):
            throttle.failed(client, 300)
    assert throttle.retry_after("a", 300) == 0 and throttle.retry_after("c", 300) > 0


def test_the_cookie_is_secure_over_https_only() -> None:
    for scheme, secure in (("https", True), ("http", False)):
        request = Request({"type": "http", "scheme": scheme, "path": "/", "headers": []})
        response = Response()
        _cookie(response, request, "credyt_console", "value", 60)
        header = response.headers["set-cookie"].lower()
        assert ("; secure" in header) is secure
        assert "httponly" in header and "samesite=strict" in header and "path=/console" in header


def test_only_console_paths_are_followed_after_log_in() -> None:
    assert _safe_next("/console/events?status=failed") == "/console/events?status=failed"
    for target in ("//evil.example", "https://evil.example/console", "/console//evil", "/x"):
        assert _safe_next(target) == "/console"


def test_commands_are_quoted_for_the_shell() -> None:
    assert pages.command("credyt-bridge", "events", "list", "--customer", "a b;rm -rf") == (
        "credyt-bridge events list --customer 'a b;rm -rf'"
    )


def test_the_event_query_checks_its_filters_and_names_the_command() -> None:
    query = pages.event_query({"status": "failed", "since": "2h", "connector": "stripe"}, NOW)
    assert query.flt.status == "failed" and query.flt.since == NOW - 7200
    assert query.flt.limit == pages.PAGE_SIZE + 1
    assert query.cli == "credyt-bridge events list --status failed --connector stripe --since 2h"
    assert pages.event_query({"before": "42"}, NOW).flt.before_id == 42
    for bad in ({"status": "lost"}, {"before": "-1"}, {"before": "²"}, {"type": "x" * 201}):
        with pytest.raises(OperationError):
            pages.event_query(bad, NOW)


def test_the_chart_scales_bars_to_the_busiest_window() -> None:
    webhooks = [0] * 12
    deliveries = [0] * 12
    webhooks[0], webhooks[11], deliveries[11] = 5, 10, 2
    drawn = pages.chart({"webhooks": webhooks, "deliveries": deliveries}, NOW)
    assert drawn["peak"] == 10 and drawn["totals"] == {"webhooks": 15, "deliveries": 2}
    bars: list[pages.Bar] = drawn["bars"]
    tallest = max(b.height for b in bars)
    webhook_bars = [b for b in bars if b.series == "webhooks"]
    delivery_bars = [b for b in bars if b.series == "deliveries"]
    assert webhook_bars[11].height == tallest
    assert webhook_bars[0].height == pytest.approx(tallest / 2, abs=0.1)
    assert delivery_bars[11].height == pytest.approx(tallest / 5, abs=0.1)
    assert [b.height for b in webhook_bars[1:11]] == [0] * 10
    assert all(b.y + b.height == pytest.approx(drawn["baseline"], abs=0.1) for b in bars)
    assert "5 webhooks" in webhook_bars[0].title
