"""Exactly once across replicas: the exactly-once property, on two bridges sharing one
PostgreSQL database.

The payment histories of `tests/integration/test_exactly_once.py` (duplicates, any order, several
payment events for one payment, partial and full refunds, disputes, replays) are split
between two bridges, alternately, each with its own store, processor and deliverer on
the same database. The two decide concurrently about the same payments, so this holds
only if the inbox is unique across them, claims never overlap, and one payment is
decided by one replica at a time (the store's payment locks). Balances must come out
exactly as the payments say, with no transaction id carrying two bodies.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.config.loading import parse_config
from bridge.service import Bridge
from bridge.storage.records import EventFilter
from bridge.storage.store import ChangeFeed
from tests.conftest import Sandbox, bridge_config
from tests.helpers.exactly_once import (
    PADDLE,
    STRIPE,
    Psp,
    assert_balances,
    deliver,
    draw_deliveries,
    settle,
)
from tests.helpers.histories import Scenario
from tests.integration.postgres.conftest import PostgresServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"),
]

EXAMPLES = int(os.environ.get("REPLICA_EXACTLY_ONCE_EXAMPLES", "12"))
_runs = iter(range(10**9))


async def run_on_two_replicas(
    psp: Psp, scenario: Scenario, sandbox: Sandbox, deliveries: list[dict[str, Any]], url: str
) -> None:
    config = parse_config(bridge_config(url, sandbox.url, psp.config(scenario.options)))
    bridges = [Bridge(config), Bridge(config)]
    workers: list[asyncio.Task[None]] = []
    unsubscribe = []

    def start() -> None:
        for bridge in bridges:
            assert isinstance(bridge.store, ChangeFeed)
            unsubscribe.append(
                bridge.store.subscribe(
                    events=bridge.processor.wake, adjustments=bridge.deliverer.wake
                )
            )
            workers.append(asyncio.create_task(bridge.processor.run()))
            workers.append(asyncio.create_task(bridge.deliverer.run()))

    try:
        if not scenario.burst:
            start()
        for number, event in enumerate(deliveries):
            await deliver(bridges[number % 2], psp, event)  # round-robin, as a load balancer would
        if scenario.burst:
            start()
        await settle(bridges[0])
        if scenario.replay:  # from one replica; NOTIFY wakes both
            rows = bridges[0].store.list_events(EventFilter(limit=10_000))
            await bridges[0].store.reset_events([row.id for row in rows])
            await settle(bridges[0])
        failed = [
            (row.event_type, row.reason)
            for row in bridges[0].store.list_events(EventFilter(status="failed", limit=100))
        ]
        dead = [row.last_error for row in bridges[0].store.list_adjustments("dead")]
        assert not failed, failed
        assert not dead, dead
    finally:
        for stop in unsubscribe:
            stop()
        for bridge in bridges:
            await asyncio.gather(bridge.processor.stop(2), bridge.deliverer.stop(2))
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        for bridge in bridges:
            await bridge.client.aclose()
            bridge.store.close()


def check_on_replicas(
    psp: Psp, data: st.DataObject, sandbox: Sandbox, server: PostgresServer
) -> None:
    drawn = draw_deliveries(psp, data, sandbox, f"r{next(_runs)}")
    url = server.create_database("bridge_prop")
    asyncio.run(run_on_two_replicas(psp, drawn.scenario, sandbox, drawn.deliveries, url))
    assert_balances(psp, drawn, sandbox)


PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY
@given(data=st.data())
def test_stripe_exactly_once_on_two_replicas(
    shared_sandbox: Sandbox,
    postgres_server: PostgresServer,
    data: st.DataObject,
) -> None:
    check_on_replicas(STRIPE, data, shared_sandbox, postgres_server)


@PROPERTY
@given(data=st.data())
def test_paddle_exactly_once_on_two_replicas(
    shared_sandbox: Sandbox,
    postgres_server: PostgresServer,
    data: st.DataObject,
) -> None:
    check_on_replicas(PADDLE, data, shared_sandbox, postgres_server)
