"""Reconcile at scale: N stand-in Stripe payments, all credited, reconciled end to end.

    python bench/reconcile_scale.py                  # 100,000 payments, then 10,000
    python bench/reconcile_scale.py --payments 20000 --compare 2000

Everything runs on 127.0.0.1: the PSP stand-in (tests/helpers/psp_api.py, pages of 100
as Stripe serves them) and the Credyt sandbox in this process, `credyt-bridge reconcile
stripe --rate 0 --json` as a subprocess. The bridge's database is seeded through the
real processor (each invoice stored as its webhook would be and decided by the current
rules); the credits are then applied to the sandbox directly and marked delivered, a
shortcut for seeding only. The script prints the reconcile run's wall time and the
subprocess's peak RSS for N and for the smaller comparison run: flat memory means the
two peaks are close although N is ten times larger.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.config.loading import parse_config  # noqa: E402
from bridge.credyt.sandbox import SandboxState, create_sandbox_app  # noqa: E402
from bridge.credyt.sandbox.wire import AdjustmentRequest  # noqa: E402
from bridge.receiving.servers import serve_in_thread  # noqa: E402
from bridge.service import Bridge  # noqa: E402
from tests.conftest import API_KEY  # noqa: E402
from tests.helpers.psp_api import STRIPE_KEY, PspApi, create_psp_api  # noqa: E402
from tests.helpers.reconcile_world import StripeWorld, reconcile_config  # noqa: E402


async def seed(config_path: Path, world: StripeWorld, sandbox: SandboxState) -> None:
    """Every invoice stored and decided by the real processor, then credited in Credyt."""
    bridge = Bridge(parse_config(config_path.read_text(), str(config_path)))
    reader = bridge.connectors["stripe"].connector
    store = bridge.store
    try:
        for start in range(0, len(world.invoices), 2000):
            chunk = world.invoices[start : start + 2000]
            bodies = [json.dumps(e).encode() for e in chunk]
            now = time.time()
            await asyncio.gather(
                *(store.accept("stripe", reader.envelope(b), b, now) for b in bodies)
            )
        worker = asyncio.create_task(bridge.processor.run())
        bridge.processor.wake()
        while store.counts()["events"].get("pending"):
            await asyncio.sleep(0.2)
        await bridge.processor.stop(2)
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        rows = store.list_adjustments("pending", limit=len(world.invoices) + 1)
    finally:
        await bridge.client.aclose()
        store.close()
    for row in rows:
        body = json.loads(row.body, parse_float=Decimal)
        request = AdjustmentRequest(row.transaction_id, row.asset, Decimal(row.amount), row.account)
        sandbox.apply_adjustment(row.customer_id, request, body)
    with sqlite3.connect(str(config_path.parent / "bridge.db")) as conn:
        conn.execute(
            "UPDATE outbox SET status = 'delivered', delivered_at = ?, attempts = 1,"
            " last_status = 201 WHERE status = 'pending'",
            (time.time(),),
        )


def high_water_kb(pid: int) -> int:
    """The process's peak resident set (VmHWM, kB), or 0 once it is gone. Not
    getrusage: a child's ru_maxrss counts the parent's pages it was forked with."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def run_once(payments: int) -> dict[str, float]:
    sandbox = SandboxState()
    api = PspApi(page_size=100, record_queries=False)
    with (
        tempfile.TemporaryDirectory() as folder,
        serve_in_thread(create_sandbox_app(sandbox, api_key=API_KEY)) as sandbox_url,
        serve_in_thread(create_psp_api(api)) as api_url,
    ):
        config = reconcile_config(Path(folder), sandbox_url, api_url)
        world = StripeWorld(sandbox.add_customer(), payments, 0, 0, spread=20 * 3600)
        world.serve(api)
        started = time.monotonic()
        asyncio.run(seed(config, world, sandbox))
        seeded = time.monotonic() - started
        env = {**os.environ, "BRIDGE_CONFIG": str(config), "STRIPE_API_KEY": STRIPE_KEY}
        runner = os.environ.get("BENCH_RUNNER")  # a script to run the CLI under (profiling)
        start = [sys.executable, runner] if runner else [sys.executable, "-m", "bridge"]
        command = [*start, "reconcile", "stripe", "--since", "1d"]
        started = time.monotonic()
        with tempfile.TemporaryFile() as out_file:
            proc = subprocess.Popen(
                [*command, "--rate", "0", "--json"],
                env=env,
                stdout=out_file,
                stderr=None if runner else subprocess.DEVNULL,
                cwd=folder,
            )
            peak_kb = 0
            while proc.poll() is None:  # VmHWM: the child's own peak (its mm since exec)
                peak_kb = max(peak_kb, high_water_kb(proc.pid))
                time.sleep(0.2)
            took = time.monotonic() - started
            out_file.seek(0)
            out = out_file.read()
        peak = peak_kb
        [report] = json.loads(out)["reports"]
        assert report["counts"]["ok"] == payments, (report["counts"], report["rows"][:2])
        return {
            "payments": payments,
            "seed_s": seeded,
            "reconcile_s": took,
            "per_s": payments / took,
            "peak_rss_mb": peak / 1024,
            "read_backs": report["read_backs"],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--payments", type=int, default=100_000)
    parser.add_argument("--compare", type=int, default=10_000)
    args = parser.parse_args()
    # The smaller run first: RUSAGE_CHILDREN keeps the largest child's peak so far.
    results = [run_once(n) for n in (args.compare, args.payments) if n]
    print("| payments | seeding | reconcile | payments/s | read-backs | peak RSS |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['payments']:,} | {r['seed_s']:.1f} s | {r['reconcile_s']:.1f} s | "
            f"{r['per_s']:,.0f}/s | {r['read_backs']:,.0f} | {r['peak_rss_mb']:.0f} MB |"
        )


if __name__ == "__main__":
    main()
