"""A PostgreSQL outage: the bridge takes webhooks again within seconds of the server's
return, without a restart.

The test runs its own PostgreSQL cluster (stopping the session's shared server would
disturb other tests), stops it while webhooks keep arriving, starts it again and
measures only how long after the return the first webhook is accepted, against a bound
far above the expected second and far below the pool's default reconnect backoff.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg

from bridge.storage.records import EventStatus
from tests.conftest import RunningBridge, Sandbox, config_text
from tests.helpers.samples import invoice_event
from tests.integration.postgres.conftest import Cluster

OUTAGE = 16.0  # seconds: past it, psycopg_pool's default backoff waits ~15 s more
RECOVERED_WITHIN = 6.0  # seconds after the server is back


def test_webhooks_are_accepted_within_seconds_of_the_database_returning(
    cluster: Cluster, make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE bridge_outage")
    url = cluster.url.rsplit("/", 1)[0] + "/bridge_outage"
    bridge = make_bridge(config_text(url, sandbox.url), database=url)
    customer = sandbox.state.add_customer()
    sent = iter(range(1_000_000))

    def send() -> int:
        n = next(sent)
        event = invoice_event(f"evt_out_{n}", f"in_out_{n}", customer=customer)
        try:
            return bridge.send_stripe(event).status_code
        except httpx.HTTPError:
            return 0

    assert send() == 200
    bridge.settle()

    # Webhooks keep arriving while the server is down, as a PSP's retries would.
    down = threading.Event()
    answers: list[tuple[float, int]] = []
    back_at: list[float] = []

    def traffic() -> None:
        while not down.is_set():
            answers.append((time.monotonic(), send()))
            time.sleep(0.2)

    cluster.stop()
    sender = threading.Thread(target=traffic)
    sender.start()
    time.sleep(OUTAGE)
    down.set()
    sender.join(30)
    # 503, or no answer within the client's 5 s while the pool waits for a connection
    assert answers and all(code in (503, 0) for _, code in answers), answers
    cluster.start()
    back_at.append(time.monotonic())

    while True:
        code = send()
        if code == 200:
            break
        waited = time.monotonic() - back_at[0]
        assert waited < RECOVERED_WITHIN, f"still {code} {waited:.1f}s after the database returned"
        time.sleep(0.1)
    recovered = time.monotonic() - back_at[0]
    print(f"accepted again {recovered:.1f}s after the database returned")
    assert recovered < RECOVERED_WITHIN, f"accepted only {recovered:.1f}s after the return"
    bridge.settle(20)
    row = bridge.bridge.store.get_event("evt_out_0")
    assert row is not None and row.status is EventStatus.PROCESSED
