"""Everything the benchmark assumes about the bridge, in one place (measures nothing).

The bridge phases (phases_bridge.py) only talk to the bridge through what is here:
the config file, the `credyt-bridge serve` / `sandbox` command lines, `/metrics`, the
sandbox's `/_sandbox/*` control endpoints, and, for the growth phase, the `Store`
interface plus the SQLite schema's columns to seed a million finished rows fast.
When one of these changes in the core, adjust it here.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from presign import DEFAULT_CUSTOMER, body_template
from procs import HOST

BRIDGE = [sys.executable, "-m", "bridge"]  # the `credyt-bridge` console script
BRIDGE_READY_PATH = "/readyz"  # 200 once the store is writable
SANDBOX_READY_PATH = "/_sandbox/state"  # control endpoint: no key, never faulted
SANDBOX_API_KEY = "key_sandbox"  # the sandbox's default X-CREDYT-API-KEY
PSP_CUSTOMER = "cus_bench"  # the Stripe customer in the bench webhooks
OUTBOX_GAUGE = "bridge_outbox_adjustments"  # /metrics gauge, label status
ACCEPTED_COUNTER = "bridge_webhooks_total"  # /metrics counter, labels connector, outcome


Timings = list[list[float]]  # milliseconds, one list per database


class NeedsBridge(Exception):
    """A phase cannot run yet: the message says what the bridge must provide."""


def config_text(database: Path, credyt_url: str, secret: str) -> str:
    """The bridge config for one stack: one Stripe connector, invoice.paid -> credit."""
    return f"""\
database: {database}
credyt:
  api_url: {credyt_url}
  api_key: {SANDBOX_API_KEY}
connectors:
  stripe:
    type: stripe
    secrets: ["{secret}"]
    rules:
      - name: subscription-payment
        on: invoice.paid
        credit:
          amount: paid
          reason: external_topup
"""


def serve_argv(config: Path, port: int) -> list[str]:
    return [*BRIDGE, "serve", "--config", str(config), "--host", HOST, "--port", str(port)]


def sandbox_argv(port: int, customer: str = DEFAULT_CUSTOMER) -> list[str]:
    return [
        *BRIDGE,
        "sandbox",
        "--host",
        HOST,
        "--port",
        str(port),
        "--customer",
        f"{customer}={PSP_CUSTOMER}",
    ]


def bridge_missing() -> str | None:
    """Why the bridge phases cannot run, or None when `serve` and `sandbox` exist."""
    try:
        done = subprocess.run(
            [*BRIDGE, "--help"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`credyt-bridge --help` failed: {exc}"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"`credyt-bridge --help` exits {done.returncode}: {last}"
    missing = [c for c in ("serve", "sandbox") if not re.search(rf"^\s+{c}\b", done.stdout, re.M)]
    return f"`credyt-bridge --help` lists no {', '.join(missing)}" if missing else None


# -- /metrics --------------------------------------------------------------------------


def _get(url: str, timeout: float = 30) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: bytes = response.read()
        return body


def _post_json(url: str, payload: dict[str, Any]) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


def metric_values(bridge_url: str, name: str, label: str) -> dict[str, int]:
    """`name{..., label="x", ...} N` lines of /metrics as {x: N}, summed over other labels."""
    text = _get(bridge_url + "/metrics").decode()
    pattern = re.compile(rf'^{name}\{{[^}}]*\b{label}="([^"]*)"[^}}]*\}}\s+(\S+)$', re.M)
    values: dict[str, int] = {}
    for key, value in pattern.findall(text):
        values[key] = values.get(key, 0) + int(float(value))
    return values


def outbox_counts(bridge_url: str) -> dict[str, int]:
    """Outbox adjustments by status (pending, delivered, dead)."""
    return metric_values(bridge_url, OUTBOX_GAUGE, "status")


def webhook_outcomes(bridge_url: str) -> dict[str, int]:
    """Webhooks by outcome (accepted, duplicate, rejected, ...)."""
    return metric_values(bridge_url, ACCEPTED_COUNTER, "outcome")


def wait_for_outbox(url: str, status: str, at_least: int, timeout: float) -> float:
    """Poll /metrics until `at_least` adjustments have `status`; returns when (perf_counter)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if outbox_counts(url).get(status, 0) >= at_least:
            return time.perf_counter()
        time.sleep(0.1)
    seen = outbox_counts(url)
    raise TimeoutError(f"fewer than {at_least} {status} adjustments after {timeout:g} s: {seen}")


# -- the sandbox ----------------------------------------------------------------------


def refuse_adjustments(sandbox_url: str, count: int, status: int = 400) -> None:
    """The next `count` adjustment POSTs are answered `status` (a 4xx: the row goes dead)."""
    payload = {"fail_next": count, "fail_status": status, "only": "adjustments"}
    _post_json(sandbox_url + "/_sandbox/faults", payload)


def sandbox_arrivals(sandbox_url: str) -> dict[str, float]:
    """PSP event id -> when the sandbox recorded (and answered 201) its adjustment."""
    state = json.loads(_get(sandbox_url + "/_sandbox/state", timeout=120))
    arrivals: dict[str, float] = {}
    for record in state["adjustments"]:
        event_id = record["body"].get("metadata", {}).get("event_id")
        if event_id:
            arrivals[event_id] = datetime.fromisoformat(record["received_at"]).timestamp()
    return arrivals


# -- the store (drain and growth) -------------------------------------------------------


def _open_store(database: Path) -> Any:
    try:
        from bridge.storage.store import open_store
    except ImportError as exc:
        raise NeedsBridge(f"bridge.storage.store.open_store: {exc}") from exc
    return open_store(str(database))


def _with_store(database: Path, action: Callable[[Any], Any]) -> Any:
    store = _open_store(database)
    try:
        return action(store)
    finally:
        store.close()


def retry_dead(database: Path) -> int:
    """`outbox retry --dead`: every dead adjustment pending again, due now."""
    return int(_with_store(database, lambda s: asyncio.run(s.retry_adjustments(dead=True))))


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def create_schema(database: Path) -> None:
    """The store's own schema (whatever its version), checked for the columns seeded."""
    _with_store(database, lambda _: None)
    with sqlite3.connect(database) as conn:
        for table, needed in SEEDED_COLUMNS.items():
            missing = needed - _columns(conn, table)
            if missing:
                raise NeedsBridge(
                    f"growth seeds {table}.{', '.join(sorted(missing))}, which the store no "
                    "longer has: update bridge_contract.seed_finished()"
                )


SEEDED_COLUMNS = {
    "inbox": {
        "connector", "event_id", "event_type", "livemode", "received_at", "body", "status",
        "attempts", "next_attempt_at", "updated_at", "payment_key", "customer_id",
    },
    "outbox": {
        "transaction_id", "inbox_id", "connector", "rule", "kind", "payment_key", "customer_id",
        "asset", "account", "amount", "payment_amount_minor", "body", "status", "attempts",
        "next_attempt_at", "queued_at", "received_at", "created_at", "updated_at",
        "delivered_at", "last_status", "lease_until",
    },
}  # fmt: skip

SEED_INBOX = """
WITH RECURSIVE seq(n) AS (SELECT :first UNION ALL SELECT n + 1 FROM seq WHERE n < :last)
INSERT INTO inbox (connector, event_id, event_type, livemode, received_at, body, status,
                   attempts, next_attempt_at, updated_at, payment_key, customer_id)
SELECT 'stripe', 'evt_' || printf('seed%09d', n), 'invoice.paid', 0, :t - n * 0.001,
       CAST(replace(:body, '@ID@', printf('seed%09d', n)) AS BLOB), 'processed', 1, NULL,
       :t, 'in_' || printf('seed%09d', n), :customer
FROM seq
"""

SEED_OUTBOX = """
INSERT INTO outbox (transaction_id, inbox_id, connector, rule, kind, payment_key,
                    customer_id, asset, account, amount, payment_amount_minor, body, status,
                    attempts, next_attempt_at, queued_at, received_at, created_at, updated_at,
                    delivered_at, last_status)
SELECT lower(hex(randomblob(16))), id, 'stripe', 'subscription-payment', 'credit', payment_key,
       customer_id, 'USD', 'default', '20.00', 2000,
       '{"transaction_id":"seed","amount":"20.00","asset":"USD","reason":"external_topup"}',
       'delivered', 1, NULL, received_at, received_at, received_at, :t, received_at + 0.05, 201
FROM inbox WHERE id BETWEEN :first_id AND :last_id
"""


def seed_finished(database: Path, count: int, batch: int = 100_000) -> None:
    """Add `count` finished events (processed, each with a delivered adjustment)."""
    create_schema(database)
    params = {"t": time.time(), "customer": DEFAULT_CUSTOMER, "body": body_template()}
    with sqlite3.connect(database, isolation_level=None) as conn:
        conn.execute("PRAGMA synchronous = OFF")
        for first in range(1, count + 1, batch):
            last = min(count, first + batch - 1)
            conn.execute("BEGIN")
            before = conn.execute("SELECT COALESCE(MAX(id), 0) FROM inbox").fetchone()[0]
            conn.execute(SEED_INBOX, {**params, "first": first, "last": last})
            after = conn.execute("SELECT MAX(id) FROM inbox").fetchone()[0]
            conn.execute(SEED_OUTBOX, {"t": params["t"], "first_id": before + 1, "last_id": after})
            conn.execute("COMMIT")
        conn.execute("ANALYZE")


def add_due(database: Path, count: int) -> None:
    """`count` pending adjustments due now (what a claim finds), for the growth phase."""
    now = time.time()
    with sqlite3.connect(database, isolation_level=None) as conn:
        conn.executemany(
            "INSERT INTO outbox (transaction_id, connector, rule, kind, payment_key, customer_id,"
            " asset, account, amount, body, status, attempts, next_attempt_at, queued_at,"
            " created_at, updated_at) VALUES (?, 'stripe', 'r', 'credit', ?, ?, 'USD',"
            " 'default', '1', '{}', 'pending', 0, ?, ?, ?, ?)",
            [
                (f"due-{i}", f"in_due{i}", DEFAULT_CUSTOMER, now - 1, now, now, now)
                for i in range(count)
            ],
        )


def release_leases(database: Path) -> None:
    with sqlite3.connect(database, isolation_level=None) as conn:
        conn.execute("UPDATE outbox SET lease_until = NULL WHERE status = 'pending'")


async def _one_claim(store: Any, database: Path, limit: int) -> float:
    began = time.perf_counter()
    rows = await store.claim_adjustments(time.time(), limit, 60.0)
    elapsed = (time.perf_counter() - began) * 1000
    if not rows:
        raise RuntimeError("growth: the claim found no due adjustments")
    release_leases(database)
    return elapsed


async def _claims(stores: Sequence[tuple[Any, Path]], limit: int, repeats: int) -> Timings:
    timings: Timings = [[] for _ in stores]
    for _ in range(repeats):
        for index, (store, database) in enumerate(stores):
            timings[index].append(await _one_claim(store, database, limit))
    return timings


def _list_once(store: Any, status: str | None) -> float:
    from bridge.storage.records import EventFilter

    began = time.perf_counter()
    store.list_events(EventFilter(status=status))
    return (time.perf_counter() - began) * 1000


def _on_stores(
    databases: Sequence[Path], action: Callable[[list[tuple[Any, Path]]], Timings]
) -> Timings:
    stores: list[tuple[Any, Path]] = []
    try:
        for database in databases:
            stores.append((_open_store(database), database))
        return action(stores)
    finally:
        for store, _ in stores:
            store.close()


def claim_ms(databases: Sequence[Path], *, limit: int, repeats: int) -> Timings:
    """Per database, the times of `repeats` deliverer claims (`Store.claim_adjustments`, its
    commit included). The databases take turns, so disk noise hits them alike; leases are
    released after each claim so every claim finds the same due rows."""
    return _on_stores(databases, lambda stores: asyncio.run(_claims(stores, limit, repeats)))


def list_events_ms(
    databases: Sequence[Path], *, repeats: int, status: str | None = None
) -> Timings:
    """Per database, the times of `Store.list_events` with the CLI's defaults (what
    `events list` runs), the databases taking turns."""

    def measure(stores: list[tuple[Any, Path]]) -> Timings:
        timings: Timings = [[] for _ in stores]
        for _ in range(repeats):
            for index, (store, _) in enumerate(stores):
                timings[index].append(_list_once(store, status))
        return timings

    return _on_stores(databases, measure)


def events_list_cli_ms(config: Path) -> float | None:
    """Wall time of `credyt-bridge events list --json` (None while the command is missing)."""
    argv = [*BRIDGE, "events", "list", "--config", str(config), "--json"]
    began = time.perf_counter()
    try:
        done = subprocess.run(argv, capture_output=True, timeout=300, check=False)
    except subprocess.TimeoutExpired:
        return None
    elapsed = (time.perf_counter() - began) * 1000
    return elapsed if done.returncode == 0 else None
