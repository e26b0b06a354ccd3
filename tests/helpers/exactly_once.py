"""The exactly-once property's driver, shared by the SQLite and the PostgreSQL runs.

`draw_deliveries` draws a scenario for one PSP, makes a sandbox customer per payment
and returns every signed event in one random order, duplicates included;
`deliver` is the receiver's path minus HTTP; `settle` waits until nothing is pending;
`assert_balances` holds the sandbox to what the payments say, exactly.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from bridge.events import Envelope
from bridge.service import Bridge
from bridge.storage.records import EventFilter
from tests.conftest import Sandbox
from tests.helpers.histories import Scenario
from tests.helpers.paddle_histories import PaddleStories
from tests.helpers.stripe_histories import StripeStories

Psp = StripeStories | PaddleStories
STRIPE = StripeStories()
PADDLE = PaddleStories()


@st.composite
def scenarios(draw: st.DrawFn, psp: Psp) -> Scenario:
    options = draw(psp.options())
    stories = draw(st.lists(psp.story(options), min_size=1, max_size=3))
    operations = draw(
        st.lists(
            st.tuples(
                st.integers(0, 40), st.sampled_from(["prune", "backfill", "replay", "reconfigure"])
            ),
            max_size=3,
        )
    )
    return Scenario(options, stories, draw(st.booleans()), draw(st.booleans()), operations)


@dataclass
class Drawn:
    """One example: the scenario, a sandbox customer per story, the deliveries in order."""

    scenario: Scenario
    customers: list[str]
    deliveries: list[dict[str, Any]]


def draw_deliveries(psp: Psp, data: st.DataObject, sandbox: Sandbox, tag: str) -> Drawn:
    """Draw a scenario on a reset sandbox; `tag` makes this example's ids unique."""
    scenario = data.draw(scenarios(psp), label="scenario")
    sandbox.state.reset()
    customers: list[str] = []
    events: list[dict[str, Any]] = []
    for number, story in enumerate(scenario.stories):
        story_tag = f"{tag}p{number}t{time.time_ns() % 10**10}"
        prefix = "cus" if psp is STRIPE else "ctm"
        customer = sandbox.state.add_customer(external_id=f"{prefix}_{story_tag}")
        customers.append(customer)
        events.extend(psp.events(story, story_tag, customer))
    again = data.draw(st.lists(st.sampled_from(events), max_size=len(events)), label="duplicates")
    deliveries = data.draw(st.permutations(events + again), label="order")
    return Drawn(scenario, customers, deliveries)


def assert_balances(psp: Psp, drawn: Drawn, sandbox: Sandbox) -> None:
    """No transaction id carried two bodies, and every wallet holds what its payment says."""
    scenario = drawn.scenario
    assert sandbox.state.conflicts == []
    for customer, story in zip(drawn.customers, scenario.stories, strict=True):
        for asset, want in psp.expected(story, scenario.options).items():
            have = sandbox.state.balance(customer, asset)
            assert have == want, (asset, have, want, story, scenario.options)


async def deliver(bridge: Bridge, psp: Psp, event: dict[str, Any]) -> None:
    """The receiver's path, minus HTTP: verify the signed body, store it, wake."""
    connector = bridge.connectors[psp.name].connector
    body, headers = psp.sign(event)
    connector.verify({k.lower(): v for k, v in headers.items()}, body)
    envelope: Envelope = connector.envelope(body)
    await bridge.store.accept(psp.name, envelope, body, time.time())
    bridge.processor.wake()
    await asyncio.sleep(0)


def all_events() -> EventFilter:
    return EventFilter(limit=10_000)


async def settle(bridge: Bridge, timeout: float = 60.0, *, held_ok: bool = False) -> None:
    """Until nothing is pending (a liveness bound, not a timing assertion); `held_ok`:
    but events held for another event of their payment."""
    deadline = time.monotonic() + timeout
    while True:
        counts = bridge.store.counts()
        events = counts["events"].get("pending")
        if events and held_ok:
            waiting = [
                r for r in bridge.store.list_events(all_events()) if r.status.value == "pending"
            ]
            events = sum(1 for r in waiting if not (r.reason or "").startswith("held:"))
        if not events and not counts["adjustments"].get("pending"):
            return
        if time.monotonic() > deadline:
            pending = [
                (row.event_type, row.reason)
                for row in bridge.store.list_events(all_events())
                if row.status.value == "pending"
            ]
            raise AssertionError(f"the bridge did not settle: {counts} {pending}")
        await asyncio.sleep(0.01)
