"""The console on a real bridge over HTTP: log-in, session cookie, CSRF, rate limit,
escaping, strict input, and retry of dead adjustments through the same operations as
the CLI. (The browser walk-through is tests/acceptance/test_console_browser.py.)"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from bridge.console.auth import SESSION_COOKIE
from connectors import stripe
from tests.conftest import RunningBridge, Sandbox, config_text, wait_until
from tests.helpers.logs import LogBuffer

TOKEN = "console-token-for-tests-0123456789"
SCRIPT = "<script>alert(1)</script>"


def console_bridge(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> RunningBridge:
    extra = f"server:\n  admin_token: {TOKEN}\n"
    return make_bridge(config=config_text(str(tmp_path / "bridge.db"), sandbox.url, extra))


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def log_in(client: httpx.Client, token: str = TOKEN) -> httpx.Response:
    form = client.get("/console/login")
    assert form.status_code == 200
    return client.post("/console/login", data={"csrf": csrf_of(form), "token": token})


@contextmanager
def signed_in(running: RunningBridge) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=running.url) as client:
        assert log_in(client).status_code == 303
        yield client


def test_no_console_without_an_admin_token(running: RunningBridge) -> None:
    for path in ("/console", "/console/login", "/console/events", "/console/static/console.css"):
        assert httpx.get(running.url + path).status_code == 404, path
    assert httpx.post(running.url + "/console/login", data={"token": "x"}).status_code == 404


def test_log_in_sets_a_strict_http_only_session_cookie(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = console_bridge(make_bridge, sandbox, tmp_path)
    with httpx.Client(base_url=running.url) as client:
        first = client.get("/console")
        assert first.status_code == 303
        assert first.headers["location"] == "/console/login?next=%2Fconsole"
        wrong = log_in(client, "not-the-admin-token-at-all")
        assert wrong.status_code == 401 and "not the admin token" in wrong.text
        assert SESSION_COOKIE not in client.cookies
        answer = log_in(client)
        assert answer.status_code == 303 and answer.headers["location"] == "/console"
        cookie = next(
            c for c in answer.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE + "=")
        )
        attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
        assert {"httponly", "max-age", "path"} <= attributes
        assert "samesite=strict" in cookie.lower() and "path=/console" in cookie.lower()
        assert "secure" not in attributes  # plain HTTP here; over HTTPS it is Secure
        overview = client.get("/console")
        assert overview.status_code == 200 and "Circuit breaker" in overview.text
        assert TOKEN not in overview.text and TOKEN not in cookie


def test_every_page_has_a_strict_csp_and_no_inline_script(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = console_bridge(make_bridge, sandbox, tmp_path)
    event = stripe.sample_event(
        "invoice.paid", event_id="evt_csp", object_id="in_csp", customer="cust_csp"
    )
    sandbox.state.add_customer(customer_id="cust_csp")
    assert running.send_stripe(event).status_code == 200
    running.settle()
    with signed_in(running) as client:
        for path in (
            "/console",
            "/console/events",
            "/console/events/evt_csp",
            "/console/adjustments",
            "/console/adjustments/1",
            "/console/login",
        ):
            page = client.get(path, follow_redirects=True)
            assert page.status_code == 200, path
            csp = page.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp
            assert "frame-ancestors 'none'" in csp
            # every <script> names a file the bridge serves; none carries code
            assert re.findall(r"<script[^>]*>", page.text) == [
                '<script src="/console/static/console.js" defer>'
            ]
            assert not re.search(r"<[^>]+\son[a-z]+=", page.text), path  # no inline handlers
        assert client.get("/console/static/console.js").status_code == 200
        assert client.get("/console/static/..%2Fauth.py").status_code == 404


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = console_bridge(make_bridge, sandbox, tmp_path)
    late = stripe.sample_event(
        "invoice.paid", event_id="evt_csrf", object_id="in_csrf", psp_customer="cus_csrf"
    )
    assert running.send_stripe(late).status_code == 200
    running.settle()
    sandbox.state.add_customer(external_id="cus_csrf")
    with signed_in(running) as client:
        token = csrf_of(client.get("/console/events"))
        for data in (
            {"ids": "evt_csrf", "confirm": "yes"},
            {"ids": "evt_csrf", "confirm": "yes", "csrf": ""},
            {"ids": "evt_csrf", "confirm": "yes", "csrf": token[:-1] + "x"},
        ):
            refused = client.post("/console/replay", data=data)
            assert refused.status_code == 403 and "CSRF" in refused.text
        assert client.post("/console/adjustments/retry", data={"dead": "yes"}).status_code == 403
        assert client.post("/console/logout", data={}).status_code == 403
    # no session at all: refused too, with the right token from another session
    anonymous = httpx.post(
        running.url + "/console/replay", data={"ids": "evt_csrf", "confirm": "yes", "csrf": token}
    )
    assert anonymous.status_code == 403
    row = running.bridge.store.get_event("evt_csrf")
    assert row is not None and row.status == "failed"
    assert running.bridge.store.list_adjustments() == []


def test_replay_by_filter_is_offered_only_for_what_replay_can_filter(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = console_bridge(make_bridge, sandbox, tmp_path)
    with signed_in(running) as client:
        plain = client.get("/console/events", params={"status": "failed", "since": "1h"})
        assert "Replay every failed event of this filter" in plain.text
        assert "credyt-bridge replay --status failed --since 1h --dry-run" in plain.text
        narrower = client.get("/console/events", params={"status": "failed", "type": "x.y"})
        assert "Replay every failed event" not in narrower.text
        assert "tick the events" in narrower.text


def test_log_ins_leave_no_token_in_the_logs(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path, logs: LogBuffer
) -> None:
    running = console_bridge(make_bridge, sandbox, tmp_path)
    guess = "a-wrong-guess-at-the-token-42"
    with httpx.Client(base_url=running.url) as client:
        assert log_in(client, guess).status_code == 401
        assert log_in(client).status_code == 303
        client.get("/console")
    names = logs.names()
    assert "console_login_refused" in names and "console_login" in names
    assert TOKEN not in logs.getvalue() and guess not in logs.getvalue()


def test_log_in_attempts_are_rate_limited(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = console_bridge(make_bridge, sandbox, tmp_path)
    with httpx.Client(base_url=running.url) as client:
        for _ in range(5):
            assert log_in(client, "wrong-token-guess-0123456789").status_code == 401
        throttled = log_in(client)  # even the right token waits now
        assert throttled.status_code == 429
        assert 1 <= int(throttled.headers["retry-after"]) <= 60
        assert SESSION_COOKIE not in client.cookies


def test_a_script_in_an_event_body_renders_as_text(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = console_bridge(make_bridge, sandbox, tmp_path)
    hostile = stripe.sample_event(
        "invoice.paid",
        event_id="evt_xss",
        object_id="in_xss",
        psp_customer=SCRIPT,
        metadata={"note": SCRIPT},
    )
    assert running.send_stripe(hostile).status_code == 200
    running.settle()
    with signed_in(running) as client:
        for path in ("/console/events/evt_xss", "/console/events", "/console"):
            page = client.get(path)
            assert page.status_code == 200
            assert SCRIPT not in page.text, path
        detail = client.get("/console/events/evt_xss").text
        assert html.escape(SCRIPT) in detail or "&lt;script&gt;alert(1)&lt;/script&gt;" in detail


def test_bad_filters_and_ids_are_precise_errors(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = console_bridge(make_bridge, sandbox, tmp_path)
    with signed_in(running) as client:
        for params, words in (
            ({"status": "lost"}, "status must be one of"),
            ({"since": "yesterday"}, "neither a duration"),
            ({"before": "²"}, "before must be"),
            ({"customer": "x" * 300}, "longer than"),
        ):
            page = client.get("/console/events", params=params)
            assert page.status_code == 400 and words in page.text, params
        assert client.get("/console/adjustments", params={"limit": "0"}).status_code == 400
        assert client.get("/console/events/99999999999999999999").status_code == 404
        assert client.get("/console/adjustments/evt_none").status_code == 404
        csrf = csrf_of(client.get("/console"))
        nothing = client.post("/console/replay", data={"csrf": csrf})
        assert nothing.status_code == 400 and "name the events" in nothing.text
        as_json = {"content-type": "application/json"}
        json_body = client.post("/console/replay", content=b'{"csrf": "x"}', headers=as_json)
        assert json_body.status_code == 400
        big = client.post("/console/replay", data={"csrf": csrf, "ids": "1" * 70_000})
        assert big.status_code == 400 and "over" in big.text


def test_the_events_list_pages_back_through_older_events(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = console_bridge(make_bridge, sandbox, tmp_path)
    for n in range(55):
        event = stripe.sample_event(
            "invoice.paid", event_id=f"evt_page_{n:02}", object_id=f"in_page_{n}", customer="c_1"
        )
        assert running.send_stripe(event).status_code == 200
    with signed_in(running) as client:
        first = client.get("/console/events", params={"connector": "stripe"})
        shown = re.findall(r">(evt_page_\d+)</a>", first.text)
        assert shown == [f"evt_page_{n:02}" for n in range(54, 4, -1)]
        older = re.search(r'href="(/console/events\?[^"]+)">Older events', first.text)
        assert older is not None
        second = client.get(html.unescape(older.group(1)))
        assert re.findall(r">(evt_page_\d+)</a>", second.text) == [
            f"evt_page_{n:02}" for n in range(4, -1, -1)
        ]
        assert "connector=stripe" in older.group(1) and "Older events" not in second.text


def test_log_in_redirects_only_inside_the_console(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = console_bridge(make_bridge, sandbox, tmp_path)
    for target, landing in (
        ("/console/events?status=failed", "/console/events?status=failed"),
        ("//evil.example/console", "/console"),
        ("https://evil.example", "/console"),
        ("/console/\\evil", "/console"),
    ):
        with httpx.Client(base_url=running.url) as client:
            form = client.get("/console/login", params={"next": target})
            answer = client.post(
                "/console/login", data={"csrf": csrf_of(form), "token": TOKEN, "next": target}
            )
            assert answer.headers["location"] == landing, target


@pytest.mark.parametrize("how", ["one", "every dead"])
def test_retry_dead_adjustments_from_the_console(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path, how: str
) -> None:
    running = console_bridge(make_bridge, sandbox, tmp_path)
    dead = stripe.sample_event(
        "invoice.paid",
        event_id="evt_dead",
        object_id="in_dead",
        customer="cust_console_later",
        amount_minor=700,
    )
    assert running.send_stripe(dead).status_code == 200
    running.settle()
    [row] = running.bridge.store.list_adjustments("dead")
    with signed_in(running) as client:
        listed = client.get("/console/adjustments", params={"status": "dead"})
        assert f'value="{row.id}"' in listed.text
        assert "credyt-bridge outbox retry --dead" in listed.text
        shown = client.get(f"/console/adjustments/{row.id}")
        assert "404" in shown.text and f"credyt-bridge outbox retry {row.id}" in shown.text
        sandbox.state.add_customer(customer_id="cust_console_later")
        which = {"ids": str(row.id)} if how == "one" else {"dead": "yes"}
        data = {"csrf": csrf_of(shown), **which}
        retried = client.post("/console/adjustments/retry", data=data)
        assert retried.status_code == 200 and "1 adjustment(s) queued again" in retried.text
    wait_until(lambda: sandbox.state.balance("cust_console_later", "USD") == Decimal("7.00"))
