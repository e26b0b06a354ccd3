"""The store can not write: the receiver answers 503 and /readyz fails; then it recovers.

The database lives on a real, tiny tmpfs (mounted for the test; this needs root, as in
the CI container). Filling the disk makes every commit fail with SQLITE_FULL: webhooks
are answered 503 so the PSP retries, /readyz answers 503, and the workers keep running.
Deleting the filler clears the fault: the PSP's retries are accepted, /readyz is 200,
and every payment acknowledged before, during and after is credited exactly once.

Without the right to mount, the same fault is made with `PRAGMA max_page_count` on the
bridge's own writer connection (the database can not grow: SQLITE_FULL as well); only
/readyz is then not checked, because its heartbeat rewrites a page that already exists.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from connectors import stripe
from tests.conftest import STRIPE_SECRET, RunningBridge, Sandbox, wait_until
from tests.helpers.logs import LogBuffer
from tests.integration.reliability.conftest import (
    COUNTS,
    assert_exactly_once,
    reliability_config,
    stripe_payment,
)

FILLER_CHUNK = b"\0" * 65536


@dataclass
class Disk:
    path: Path
    mounted: bool


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    """A 4 MB tmpfs at tmp_path/disk if this process may mount, else a plain folder."""
    path = tmp_path / "disk"
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    mounted = done.returncode == 0
    yield Disk(path, mounted)
    if mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Disk) -> Path:
    filler = disk.path / "filler"
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(FILLER_CHUNK)
        except OSError:  # ENOSPC: the disk is full
            pass
    return filler


def post(running: RunningBridge, event: dict[str, object]) -> int:
    body = json.dumps(event).encode()
    try:
        return running.post("stripe", body, stripe.sign(body, STRIPE_SECRET)).status_code
    except httpx.HTTPError:  # pragma: no cover - reported as a failure below
        return -1


def test_a_full_disk_answers_503_fails_readyz_and_recovers(
    disk: Disk, make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, logs: LogBuffer
) -> None:
    running = make_bridge(reliability_config(str(disk.path / "bridge.db"), sandbox.url))
    customer = sandbox.state.add_customer()
    expected: set[str] = set()
    for _ in range(3):
        event, tid = stripe_payment(customer)
        assert post(running, event) == 200
        expected.add(tid)
    running.settle()
    # Work in flight when the disk fills: lookups and deliveries that answer late, so
    # the processor and the deliverer must record their results on a full disk.
    sandbox.state.add_customer(external_id="cus_store_fault")
    sandbox.state.inject(delay=2.0)  # answers land after the disk has filled up
    for _ in range(3):
        event, tid = stripe_payment(customer)
        event["data"]["object"]["parent"]["subscription_details"]["metadata"] = {}
        event["data"]["object"]["customer"] = "cus_store_fault"
        assert post(running, event) == 200
        expected.add(tid)
    for _ in range(3):
        event, tid = stripe_payment(customer)
        assert post(running, event) == 200
        expected.add(tid)
    wait_until(lambda: sandbox.state.request_count >= 4, 10, "lookups and deliveries to start")

    if disk.mounted:
        filler = fill(disk)
    else:
        running.bridge.store.writer.run_sync(  # type: ignore[attr-defined]
            lambda conn: conn.execute(
                "PRAGMA max_page_count = " + str(conn.execute("PRAGMA page_count").fetchone()[0])
            )
        )
    # The PSP sends payments while the disk is full. Some may still fit in space the
    # WAL already holds; from the first 503 on, nothing does.
    refused: list[dict[str, object]] = []
    answers: list[int] = []
    for _ in range(60):
        event, tid = stripe_payment(customer)
        event["data"]["object"]["description"] = "x" * 8000
        answer = post(running, event)
        answers.append(answer)
        assert answer in (200, 503), answer
        if answer == 200:
            expected.add(tid)
        else:
            refused.append(event)
            expected.add(tid)  # the PSP retries it below
        if len(refused) >= 5:
            break
    assert answers[-5:] == [503] * 5, answers
    COUNTS["store faults: webhooks answered 503"] += len(refused)
    if disk.mounted:
        wait_until(
            lambda: httpx.get(f"{running.url}/readyz").status_code == 503,
            10,
            "/readyz to report the full disk",
        )
        COUNTS["store faults: full disks (tmpfs)"] += 1
    else:
        COUNTS["store faults: full databases (max_page_count)"] += 1
    assert httpx.get(f"{running.url}/healthz").status_code == 200

    wait_until(
        lambda: bool({"event_record_failed", "delivery_record_retry"} & set(logs.names())),
        10,
        "a worker to meet the full disk",
    )
    sandbox.state.inject()
    # The fault clears: the PSP's retries go in, and everything is credited once.
    if disk.mounted:
        os.remove(filler)
    else:
        running.bridge.store.writer.run_sync(  # type: ignore[attr-defined]
            lambda conn: conn.execute("PRAGMA max_page_count = 1073741823")
        )
    wait_until(
        lambda: httpx.get(f"{running.url}/readyz").status_code == 200, 10, "/readyz to recover"
    )
    for event in refused:
        assert post(running, event) == 200
    event, tid = stripe_payment(customer)
    assert post(running, event) == 200
    expected.add(tid)
    running.settle(timeout=60)
    assert_exactly_once(sandbox.state, expected)
    names = logs.names()
    assert "webhook_store_failed" in names
    # The workers met the fault, rode it out instead of dying or spinning on it.
    met = [n for n in names if n in ("event_record_failed", "delivery_record_retry")]
    assert met, "neither worker had to record anything on the full disk"
    crashed = [e for e in logs.events() if e["event"] == "event_processing_crashed"]
    assert not crashed, crashed[0]
    assert len(met) < 100, f"{len(met)} retries: a busy loop on the full disk"
    COUNTS["store faults: worker writes refused and retried"] += len(met)
    COUNTS["store faults: webhooks sent"] += len(answers) + len(refused) + 4
