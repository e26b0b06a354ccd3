"""Webhooks, backfill and `reconcile --fix` mixed never credit one payment twice.

Hypothesis draws a few Stripe payments (some refunded, some disputed) and one random
interleaving of what can bring each to the bridge: its webhooks (duplicates included),
a backfill of the events API, and `reconcile --fix` over the objects API, with the
processor and deliverer running meanwhile. Real parts throughout: the PSP stand-in and
the Credyt sandbox on loopback, a SQLite file, the stripe library listing, the bridge's
processor and deliverer in process. Afterwards every webhook arrives once more (late);
then each wallet must hold exactly what its payments say, no transaction id may have
carried two bodies, and a last reconcile must find every payment `ok`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.config.loading import parse_config
from bridge.operating.backfill import BackfillSummary, rule_event_types
from bridge.operating.backfill import backfill as run_backfill
from bridge.operating.reconcile import EDGE, open_objects
from bridge.operating.reconcile import reconcile as run_reconcile
from bridge.operating.reconcile_report import ReconcileReport
from bridge.service import Bridge
from connectors.stripe.events_api import StripeEvents
from tests.conftest import STRIPE_SECRET, Sandbox, bridge_config
from tests.helpers.exactly_once import settle
from tests.helpers.psp_api import STRIPE_KEY, PspApi, serve_psp_api
from tests.helpers.reconcile_world import RECONCILE_CONNECTORS, StripeWorld

pytestmark = pytest.mark.filterwarnings(
    "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
)

_examples = itertools.count()


@pytest.fixture(scope="module")
def psp() -> Iterator[tuple[PspApi, str]]:
    with serve_psp_api(PspApi(page_size=3)) as served:
        yield served


@st.composite
def histories(draw: st.DrawFn) -> tuple[int, int, int, list[tuple[str, int]]]:
    payments = draw(st.integers(1, 4))
    refunded = draw(st.integers(0, payments))
    disputed = draw(st.integers(0, payments - refunded))
    count = payments + refunded + disputed
    webhooks = [("webhook", i) for i in range(count)]
    extra = draw(st.lists(st.sampled_from(webhooks), max_size=count))
    runs = draw(st.lists(st.sampled_from([("backfill", 0), ("fix", 0), ("settle", 0)]), max_size=4))
    skipped = draw(st.sets(st.integers(0, count - 1)))  # webhooks that never came on time
    steps = [w for w in webhooks if w[1] not in skipped] + extra + runs + [("fix", 0)]
    return payments, refunded, disputed, draw(st.permutations(steps))


async def play(
    bridge: Bridge, world: StripeWorld, steps: list[tuple[str, int]], sandbox: Sandbox
) -> ReconcileReport:
    connector = bridge.config.connectors["stripe"]
    reader = bridge.connectors["stripe"].connector
    events = world.events

    async def deliver(event: dict[str, Any]) -> None:
        body = json.dumps(event).encode()
        await bridge.store.accept("stripe", reader.envelope(body), body, time.time())
        bridge.processor.wake()

    async def reconcile(repair: bool) -> ReconcileReport:
        source = open_objects(connector, STRIPE_KEY)
        since = time.time() - 86400
        report = ReconcileReport("stripe", since, time.time() + 1)
        try:
            objects = source.objects(since - EDGE, report.until, rule_event_types(connector))
            await run_reconcile(
                bridge.store,
                bridge.config,
                connector,
                source,
                objects,
                report,
                rate=0,
                repair=repair,
            )
        finally:
            source.close()
        bridge.processor.wake()
        bridge.deliverer.wake()
        return report

    async def backfill() -> None:
        source = StripeEvents(STRIPE_KEY, connector.api_base)
        types = rule_event_types(connector)
        since = time.time() - 86400
        try:
            await run_backfill(
                bridge.store,
                connector,
                reader,
                source.events(since, types),
                BackfillSummary("stripe", since, types),
            )
        finally:
            source.close()
        bridge.processor.wake()

    workers = [
        asyncio.create_task(bridge.processor.run()),
        asyncio.create_task(bridge.deliverer.run()),
    ]
    try:
        for action, index in steps:
            if action == "webhook":
                await deliver(events[index])
            elif action == "backfill":
                await backfill()
            elif action == "fix":
                await reconcile(repair=True)
            else:
                await settle(bridge, held_ok=True)
        await settle(bridge, held_ok=True)
        for event in events:  # every webhook, late
            await deliver(event)
        await settle(bridge)
        return await reconcile(repair=False)
    finally:
        await asyncio.gather(bridge.processor.stop(2), bridge.deliverer.stop(2))
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await bridge.client.aclose()


@settings(
    max_examples=int(os.environ.get("RECONCILE_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories())
def test_webhooks_backfill_and_reconcile_fix_never_credit_twice(
    shared_sandbox: Sandbox,
    psp: tuple[PspApi, str],
    history: tuple[int, int, int, list[tuple[str, int]]],
) -> None:
    payments, refunded, disputed, steps = history
    api, api_url = psp
    sandbox = shared_sandbox
    sandbox.state.reset()
    customer = sandbox.state.add_customer()
    world = StripeWorld(
        customer, payments, refunded, disputed, tag=f"px{next(_examples)}t{time.time_ns()}"
    )
    world.serve(api)
    api.stripe_events = world.events
    with tempfile.TemporaryDirectory() as folder:
        connectors = RECONCILE_CONNECTORS.format(api_url=api_url, secret=STRIPE_SECRET)
        text = bridge_config(str(Path(folder) / "bridge.db"), sandbox.url, connectors)
        bridge = Bridge(parse_config(text))
        try:
            last = asyncio.run(play(bridge, world, steps, sandbox))
            dead = [row.last_error for row in bridge.store.list_adjustments("dead")]
        finally:
            bridge.store.close()
    assert not dead, dead
    assert sandbox.state.conflicts == []  # no transaction id carried two bodies
    assert sandbox.state.balance(customer, "USD") == world.balance()
    transaction_ids = [a["transaction_id"] for a in sandbox.state.adjustments]
    assert len(transaction_ids) == len(set(transaction_ids)) == len(world.events)
    assert last.all_ok, [row.as_dict() for row in last.rows]
    assert last.counts["ok"] == len(world.events)
