"""`credyt-bridge demo`: the whole flow on this machine, with no accounts and no network.

Starts the Credyt sandbox and a bridge (on `config.example.yaml`, the embedded
defaults) on free loopback ports, sends signed Stripe and Paddle webhooks (renewals, a
duplicate, the same invoice under another event, a Stripe top-up and its refund
reported twice, a Paddle top-up with VAT, what `amount: net` would credit for it (a dry
run of the rules) and its refund, one Credyt failure that is retried),
waits for every adjustment to be delivered, and prints the wallets and the outbox.
Returns True when the balances are what the payments say.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import click
import httpx

from bridge.config import EXAMPLE_CONFIG
from bridge.config.loading import load_config
from bridge.credyt.sandbox import SandboxState, create_sandbox_app
from bridge.operating.basis_preview import preview_basis
from bridge.operating.tables import outbox_table
from bridge.receiving.servers import base_url, bind_socket, make_server
from bridge.service import Bridge
from bridge.storage.records import AdjustmentStatus
from connectors import connector_type, paddle, stripe

STRIPE_SECRET = "whsec_demo_" + "0" * 24
PADDLE_SECRET = "pdl_ntfset_demo_" + "0" * 24
# The demo shows one Stripe and one Paddle connector; each signs with its own secret.
SECRETS = {"stripe": STRIPE_SECRET, "paddle": PADDLE_SECRET}
API_KEY = "key_sandbox_demo"


@dataclass(frozen=True)
class Step:
    title: str
    psp: str
    event: dict[str, Any]
    expect: str  # "accepted" | "duplicate"
    before: Callable[[], None] | None = None
    note: str = ""  # what to expect of it, said on its line
    # More to say once the bridge has stored it (lines, printed under its answer).
    explain: Callable[[], Awaitable[list[str]]] | None = None


def _steps(alice: str, bob: str, sandbox: SandboxState, bridge: Bridge) -> list[Step]:
    now = int(time.time())
    renewal = stripe.sample_event(
        "invoice.paid",
        event_id="evt_demo_renewal",
        object_id="in_demo_renewal",
        customer=alice,
        amount_minor=4999,
        currency="usd",
        created=now,
    )
    same_invoice = stripe.sample_event(
        "invoice.payment_succeeded",
        event_id="evt_demo_renewal_attempt",
        object_id="in_demo_renewal",
        customer=alice,
        amount_minor=4999,
        currency="usd",
        created=now,
    )
    by_lookup = stripe.sample_event(
        "invoice.paid",
        event_id="evt_demo_yen",
        object_id="in_demo_yen",
        psp_customer="cus_demo_bob",
        amount_minor=1500,
        currency="jpy",
        created=now,
        api_version="2020-08-27",
    )
    retried = stripe.sample_event(
        "invoice.paid",
        event_id="evt_demo_retried",
        object_id="in_demo_retried",
        customer=alice,
        amount_minor=1000,
        currency="usd",
        created=now,
    )
    stripe_topup = stripe.sample_event(
        "payment_intent.succeeded",
        event_id="evt_demo_topup",
        object_id="pi_demo_topup",
        customer=alice,
        amount_minor=2500,
        currency="usd",
        metadata={"credyt_topup": "true"},
        created=now,
    )
    stripe_refund = stripe.sample_event(
        "refund.created",
        event_id="evt_demo_stripe_refund",
        object_id="re_demo_refund",
        payment="pi_demo_topup",
        amount_minor=1000,
        currency="usd",
        created=now,
    )
    stripe_charge_refunded = stripe.sample_event(
        "charge.refunded",
        event_id="evt_demo_charge_refunded",
        object_id="ch_demo_topup",
        payment="pi_demo_topup",
        amount_minor=1000,
        payment_amount_minor=2500,
        currency="usd",
        created=now,
    )
    paddle_payment = paddle.sample_event(
        "transaction.completed",
        event_id="evt_demo_txn",
        object_id="txn_demo_topup",
        customer=bob,
        amount_minor=3600,  # 30.00 + 20% VAT: `paid` credits 36.00, `net` would 30.00
        tax_minor=600,
        currency="EUR",
        origin="web",
        created=now,
    )
    paddle_refund = paddle.sample_event(
        "adjustment.updated",
        event_id="evt_demo_refund",
        object_id="adj_demo_refund",
        transaction_id="txn_demo_topup",
        customer=bob,
        amount_minor=1200,  # a third of the payment: a third of the credit
        tax_minor=200,
        currency="EUR",
        action="refund",
        status="approved",
        created=now,
    )
    return [
        Step("Stripe renewal, invoice.paid, USD 49.99", "stripe", renewal, "accepted"),
        Step(
            "the same delivery again (a Stripe retry)",
            "stripe",
            renewal,
            "duplicate",
            note="no new credit",
        ),
        Step(
            "the same invoice, invoice.payment_succeeded",
            "stripe",
            same_invoice,
            "accepted",
            note="same payment: no new credit",
        ),
        Step("Stripe JPY 1500, customer found by external_id", "stripe", by_lookup, "accepted"),
        Step(
            "Stripe USD 10.00 while Credyt fails once",
            "stripe",
            retried,
            "accepted",
            before=lambda: sandbox.inject(fail_next=1, only="adjustments"),
            note="Credyt's 500 is injected; the bridge retries",
        ),
        Step("Stripe top-up, payment_intent.succeeded, USD 25", "stripe", stripe_topup, "accepted"),
        Step("Stripe refund of USD 10.00, refund.created", "stripe", stripe_refund, "accepted"),
        Step(
            "charge.refunded for that same refund",
            "stripe",
            stripe_charge_refunded,
            "accepted",
            note="no second debit",
        ),
        Step(
            "Paddle top-up, EUR 36.00 incl. 6.00 VAT",
            "paddle",
            paddle_payment,
            "accepted",
            explain=lambda: _net_instead(bridge, "evt_demo_txn"),
        ),
        Step("Paddle refund, EUR 12.00 incl. 2.00 VAT", "paddle", paddle_refund, "accepted"),
    ]


async def _net_instead(bridge: Bridge, event_id: str) -> list[str]:
    """What `amount: net` would credit for the stored taxed payment `event_id`, by the
    rule engine in dry run (bridge.operating.basis_preview): config.example.yaml keeps
    `paid`, the documented contract."""
    preview = await preview_basis(bridge.config, bridge.store, bridge.client, event_id, "net")
    amounts = preview.amounts
    if not preview.credits or amounts is None or amounts.tax is None:
        return [f"with amount: net it would not credit: {preview.reason}"]
    asset, net = preview.credits[0]
    paid, tax = amounts.paid, amounts.tax
    return [
        f"amount: paid (config.example.yaml, the documented contract) credits {asset} {paid};",
        "a dry run of the same stored event with amount: net (nothing sent) would credit",
        f"{asset} {net.quantize(paid)} ({paid} less {tax} VAT): set it if you owe the tax on "
        "top of your prices",
    ]


NEXT_STEPS = """
Next steps, with your own config.yaml (see docs/configuration.md):
  credyt-bridge sandbox --port 8090                  # a local Credyt, in another terminal
  credyt-bridge serve --config config.yaml           # the bridge, on port 8080
  credyt-bridge send stripe invoice.paid --customer cust_... --config config.yaml
  credyt-bridge events list --follow --config config.yaml"""


async def run_demo(*, keep: bool = False, width: int | None = None) -> bool:
    """The demo; `keep` leaves its folder (the database and a config.yaml that reads
    it), `width` is what its tables fit."""
    folder = tempfile.mkdtemp(prefix="credyt-bridge-demo-")
    try:
        return await _run(folder, width)
    finally:
        if keep:
            config = _write_kept_config(folder)
            click.echo(f"\nkept {folder}: bridge.db and config.yaml; look inside with")
            click.echo(f"  credyt-bridge events list --config {config}")
            click.echo(f"  credyt-bridge outbox list --config {config}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
        click.echo(NEXT_STEPS)


def _write_kept_config(folder: str) -> str:
    """The embedded config with the kept database filled in; its secrets stay `${VAR}`,
    which the read-only commands do not need."""
    path = os.path.join(folder, "config.yaml")
    database = os.path.join(folder, "bridge.db")
    text = EXAMPLE_CONFIG.read_text().replace("${BRIDGE_DATABASE:-bridge.db}", database)
    with open(path, "w", encoding="utf-8") as file:
        file.write(text)
    return path


async def _run(folder: str, width: int | None) -> bool:
    sandbox = SandboxState()
    alice = sandbox.add_customer(external_id="user_alice", name="Alice")
    bob = sandbox.add_customer(external_id="cus_demo_bob", name="Bob")
    sandbox_sock = bind_socket()
    bridge_sock = bind_socket()
    sandbox_server = make_server(create_sandbox_app(sandbox, api_key=API_KEY))
    environ = {
        "CREDYT_API_URL": base_url(sandbox_sock),
        "CREDYT_API_KEY": API_KEY,
        "STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
        "PADDLE_WEBHOOK_SECRET": PADDLE_SECRET,
        "BRIDGE_DATABASE": os.path.join(folder, "bridge.db"),
    }
    config = load_config(EXAMPLE_CONFIG, environ)
    bridge = Bridge(config)
    bridge_server = make_server(bridge.app)
    bridge_server.config.timeout_graceful_shutdown = 5
    click.echo(f"Credyt sandbox: {base_url(sandbox_sock)}   bridge: {base_url(bridge_sock)}")
    click.echo(f"config: {EXAMPLE_CONFIG.name} (embedded), database: {environ['BRIDGE_DATABASE']}")
    click.echo("Each step sends a signed webhook and says what the bridge should answer:\n")
    servers = [
        asyncio.create_task(sandbox_server.serve(sockets=[sandbox_sock])),
        asyncio.create_task(bridge_server.serve(sockets=[bridge_sock])),
    ]
    try:
        await _until(lambda: sandbox_server.started and bridge_server.started, 10)
        steps = _steps(alice, bob, sandbox, bridge)
        ok = await _send_all(base_url(bridge_sock), steps)
        delivered = await _until_delivered(bridge, 30)
        ok = ok and delivered
        click.echo("\nOutbox (what went to Credyt, by the step that caused it):")
        click.echo(steps_outbox_table(bridge, steps, width))
        ok = _print_balances(sandbox, alice, bob) and ok
    finally:
        bridge_server.should_exit = True
        sandbox_server.should_exit = True
        await asyncio.gather(*servers, return_exceptions=True)
    click.echo("\ndemo " + ("passed" if ok else "FAILED"))
    return ok


async def _send_all(url: str, steps: list[Step]) -> bool:
    ok = True
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for number, step in enumerate(steps, 1):
            if step.before is not None:
                step.before()
            body = json.dumps(step.event).encode()
            headers = connector_type(step.psp).sign(body, SECRETS[step.psp])
            response = await client.post(f"/webhooks/{step.psp}", content=body, headers=headers)
            status = response.json().get("status") if response.status_code == 200 else None
            mark = "ok" if status == step.expect else "UNEXPECTED"
            ok = ok and status == step.expect
            answer = f"{response.status_code} {status}"
            click.echo(f"{number:>2}. {step.title:<48} -> {answer:<12}  [{mark}]")
            if step.note:
                click.echo(f"    {step.note}")
            for line in await step.explain() if step.explain is not None else ():
                click.echo(f"    {line}")
            await asyncio.sleep(0.2)  # let each step show its effect in order
    return ok


async def _until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def _until_delivered(bridge: Bridge, timeout: float) -> bool:
    def settled() -> bool:
        counts = bridge.store.counts()
        return not counts["events"].get("pending") and not counts["adjustments"].get("pending")

    done = await _until(settled, timeout)
    if not done:
        click.echo("timed out waiting for the outbox to drain")
    return done and all(
        row.status is AdjustmentStatus.DELIVERED for row in bridge.store.list_adjustments()
    )


def steps_outbox_table(bridge: Bridge, steps: list[Step], width: int | None) -> str:
    """The outbox, oldest first, with the number of the step whose event queued each row."""
    step_of: dict[int, int] = {}
    for number, step in enumerate(steps, 1):
        # Stripe events carry their id as "id", Paddle's as "event_id".
        row = bridge.store.get_event(str(step.event.get("event_id") or step.event["id"]))
        for adjustment in bridge.store.adjustments_for_event(row.id) if row else ():
            step_of.setdefault(adjustment.id, number)
    rows = list(reversed(bridge.store.list_adjustments()))
    return outbox_table(rows, width, steps=[step_of.get(r.id) for r in rows])


def _print_balances(sandbox: SandboxState, alice: str, bob: str) -> bool:
    expected = {
        # 49.99 once despite 3 deliveries, + 10.00 retried, + 25.00 top-up - 10.00 refunded
        (alice, "USD"): Decimal("74.99"),
        (bob, "JPY"): Decimal("1500"),
        # 36.00 paid, less a third (12.00 of 36.00 refunded)
        (bob, "EUR"): Decimal("24.00"),
    }
    click.echo("\nWallets at the Credyt sandbox:")
    ok = True
    for (customer, asset), want in expected.items():
        have = sandbox.balance(customer, asset)
        mark = "ok" if have == want else f"expected {want}"
        ok = ok and have == want
        click.echo(f"  {customer}  {asset}  {have:>10}   [{mark}]")
    return ok
