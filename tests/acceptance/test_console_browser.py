"""The console in a real browser: Debian's headless Chromium driven by Playwright.

An operator logs in, finds a failed event by filter, opens it, runs a dry-run replay,
confirms it, and sees the adjustment delivered at the sandbox. A POST without the CSRF
token is refused, an event whose body holds `<script>alert(1)</script>` shows it as
text, and without `server.admin_token` there is no `/console`.

Screenshots of the overview and an event go to the test's tmp folder; with
`CONSOLE_SCREENSHOTS=1` they are also written to docs/console-overview.png and
docs/console-event.png (how the README's pictures are made).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright

from connectors import stripe
from tests.conftest import RunningBridge, Sandbox, config_text, wait_until

CHROMIUM = Path("/usr/bin/chromium")
DOCS = Path(__file__).resolve().parents[2] / "docs"
TOKEN = "browser-console-token-0123456789"
SCRIPT = "<script>alert(1)</script>"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="no /usr/bin/chromium: apt-get install chromium (.ci/run installs it)",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    opened = context.new_page()
    yield opened
    context.close()


def console_bridge(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> RunningBridge:
    extra = f"server:\n  admin_token: {TOKEN}\n"
    return make_bridge(config=config_text(str(tmp_path / "bridge.db"), sandbox.url, extra))


def earlier_webhooks(running: RunningBridge, sandbox: Sandbox, count: int) -> None:
    """Paid invoices received over the last hour, stored as the receiver stores them,
    so the overview's chart has a shape."""
    customer = sandbox.state.add_customer(external_id="cus_browser_regular")
    connector = running.bridge.connectors["stripe"].connector
    now = time.time()
    for n in range(count):
        event = stripe.sample_event(
            "invoice.paid",
            event_id=f"evt_browser_{n}",
            object_id=f"in_browser_{n}",
            customer=customer,
            amount_minor=1000 + 100 * n,
        )
        body = json.dumps(event).encode()
        at = now - 3500 + n * (3400 / count)
        accept = running.bridge.store.accept("stripe", connector.envelope(body), body, at)
        # Playwright's sync API holds this thread's event loop: store from another thread
        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(asyncio.run, accept).result()


def watch_dialogs(page: Page) -> list[str]:
    """The messages of every alert/confirm the page opens (a script that ran)."""
    dialogs: list[str] = []

    def seen(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", seen)
    return dialogs


def screenshot(page: Page, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000  # a rendered page, not a blank one
    if os.environ.get("CONSOLE_SCREENSHOTS") == "1":
        shutil.copyfile(path, DOCS / name)


def log_in(page: Page, url: str) -> None:
    page.goto(url + "/console")
    expect(page).to_have_url(url + "/console/login?next=%2Fconsole")
    page.fill("#token", TOKEN)
    page.click("section.login button[type=submit]")
    expect(page).to_have_url(url + "/console")


def test_an_operator_finds_a_failed_event_and_replays_it(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path, page: Page
) -> None:
    running = console_bridge(make_bridge, sandbox, tmp_path)
    earlier_webhooks(running, sandbox, 24)
    late = stripe.sample_event(
        "invoice.paid",
        event_id="evt_1QfXzA2eZvKYlo2C",
        object_id="in_1QfXz92eZvKYlo2Cq1Hn",
        psp_customer="cus_R8dLx0Vt3kqP2a",
        amount_minor=4999,
    )
    assert running.send_stripe(late).status_code == 200
    running.settle()
    dialogs = watch_dialogs(page)

    log_in(page, running.url)
    expect(page.locator("#breaker")).to_have_text("closed")
    page.click("header >> text=Events")
    page.select_option("select[name=status]", "failed")
    page.fill("input[name=since]", "24h")
    page.click("text=Filter")
    rows = page.locator("table.events tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("no Credyt customer with external_id cus_R8dLx0Vt3kqP2a")
    expect(page.locator(".cli code").first).to_have_text(
        "credyt-bridge events list --status failed --since 24h"
    )
    rows.first.locator("text=evt_1QfXzA2eZvKYlo2C").click()

    expect(page.locator("h1")).to_contain_text("stripe invoice.paid")
    expect(page.locator("#reason")).to_contain_text("no credyt_customer_id")
    expect(page.locator("#raw")).to_contain_text('"id": "evt_1QfXzA2eZvKYlo2C"')
    expect(page.locator("#normalized")).to_contain_text('"psp_customer_id": "cus_R8dLx0Vt3kqP2a"')

    customer = sandbox.state.add_customer(external_id="cus_R8dLx0Vt3kqP2a")
    page.click("text=Replay (dry run first)")
    expect(page.locator("h1")).to_have_text("Replay: dry run")
    expect(page.locator("table.replay")).to_contain_text(f"49.99 USD to {customer}")
    expect(page.locator("table.replay")).to_contain_text("new")
    row = running.bridge.store.get_event("evt_1QfXzA2eZvKYlo2C")
    assert row is not None and row.status == "failed"  # the dry run changed nothing
    assert running.bridge.store.adjustments_for_event(row.id) == []

    page.click("text=Confirm: replay 1 event(s)")
    expect(page.locator("h1")).to_have_text("Replayed")
    expect(page.locator("table.replay")).to_contain_text("queued for delivery")
    wait_until(lambda: sandbox.state.balance(customer, "USD") == Decimal("49.99"))

    page.goto(running.url + "/console/events/evt_1QfXzA2eZvKYlo2C")
    expect(page.locator("section.adjustment")).to_contain_text("delivered")
    expect(page.locator("table.attempts")).to_contain_text("201")
    screenshot(page, tmp_path, "console-event.png")
    page.click("header >> text=Overview")
    expect(page.locator("svg rect.webhooks")).to_have_count(12)
    screenshot(page, tmp_path, "console-overview.png")
    assert dialogs == []


def test_a_post_without_the_csrf_token_is_refused(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path, page: Page
) -> None:
    running = console_bridge(make_bridge, sandbox, tmp_path)
    log_in(page, running.url)
    # the browser's own session cookie goes with it; only the token is missing
    refused = page.request.post(
        running.url + "/console/adjustments/retry", form={"dead": "yes"}, max_redirects=0
    )
    assert refused.status == 403 and "CSRF" in refused.text()


def test_a_script_in_an_event_body_renders_as_text(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path, page: Page
) -> None:
    running = console_bridge(make_bridge, sandbox, tmp_path)
    hostile = stripe.sample_event(
        "invoice.paid",
        event_id="evt_browser_xss",
        object_id="in_browser_xss",
        psp_customer=SCRIPT,
        metadata={"note": SCRIPT},
    )
    assert running.send_stripe(hostile).status_code == 200
    running.settle()
    dialogs = watch_dialogs(page)
    log_in(page, running.url)
    page.goto(running.url + "/console/events/evt_browser_xss")
    expect(page.locator("#raw")).to_contain_text(SCRIPT)
    expect(page.locator("#reason")).to_contain_text(SCRIPT)
    assert page.locator("main script").count() == 0
    page.goto(running.url + "/console/events")
    expect(page.locator("table.events")).to_contain_text(SCRIPT)
    assert dialogs == []


def test_without_an_admin_token_there_is_no_console(running: RunningBridge, page: Page) -> None:
    for path in ("/console", "/console/login"):
        answer = page.goto(running.url + path)
        assert answer is not None and answer.status == 404
