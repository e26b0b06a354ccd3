"""credyt-bridge benchmark: `python bench/run.py [--quick] [--phases ...]`.

Starts every server under test as its own subprocess on a free 127.0.0.1 port, loads
it from this process (wrk, or the Python generators), and prints one table:
phase | measure | figure | target | met?. Phases, in order:

- empty, naive-direct, naive-threadpool, bare-post: the floors (bench/baselines.py,
  bench/bare_post.py): an empty Starlette endpoint and a naive one-transaction-per-webhook
  SQLite endpoint on the same server stack (requests/s, p50/p99 at full speed, CPU per
  request, p99 at fixed rates, peak RSS), and bare httpx POSTs to the Credyt sandbox
  (posts/s, CPU per POST);
- ingest, fixed, e2e, cost, saturation, drain, growth: the bridge against its targets
  (bench/phases_bridge.py, bench/phases_latency.py); skipped, with the reason, while
  `credyt-bridge serve` and `credyt-bridge sandbox` do not exist.

Every figure with a floor measured in the same run also shows its ratio to it (the
`ratio` column), so runs on different machines compare; the machine is printed above
the table.

`--quick` makes every phase a few seconds long (smoke test); the full run takes a few
minutes per phase. All traffic stays on 127.0.0.1 and every load is bounded in count
and time. Needs Linux (/proc for RSS) and, for the full-speed figures, wrk
(`apt-get install wrk`); without wrk the Python closed loop stands in.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cpu
import phases_baseline
import phases_bridge
import phases_limits
import report
import wrkload
from harness import Context, Row, Settings

Phase = Callable[[Context], None]

BASELINE_PHASES: dict[str, Phase] = {
    "empty": phases_baseline.empty_endpoint,
    "naive-direct": phases_baseline.naive_direct,
    "naive-threadpool": phases_baseline.naive_threadpool,
    "bare-post": phases_baseline.bare_post,
}
# Credyt's rate limits (bench/phases_limits.py): last, each starts the stacks it needs.
LIMIT_PHASES: dict[str, Phase] = dict(phases_limits.PHASES)
OWN_STACK_PHASES: dict[str, Phase] = {**BASELINE_PHASES, **LIMIT_PHASES}
ALL_PHASES = [*BASELINE_PHASES, *phases_bridge.PHASES, *LIMIT_PHASES]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark credyt-bridge against an empty and a naive SQLite endpoint.",
        epilog="example: python bench/run.py --quick --phases empty naive-direct",
    )
    parser.add_argument("--quick", action="store_true", help="a few seconds per phase")
    parser.add_argument("--phases", nargs="+", choices=ALL_PHASES, default=ALL_PHASES)
    parser.add_argument("--connections", type=int, default=32, help="full-speed connections")
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument(
        "--no-wrk", action="store_true", help="use the Python generator at full speed too"
    )
    parser.add_argument("--workdir", type=Path, help="keep databases and logs here")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    return parser.parse_args(argv)


def environment() -> str:
    wrk = wrkload.wrk_path()
    load = os.getloadavg()[0]
    busy = " (busy machine: figures will be low and noisy)" if load > 0.5 else ""
    return (
        f"{platform.node()}: {os.cpu_count()} cores, load {load:.2f}{busy}, "
        f"Python {platform.python_version()}, "
        f"{'wrk at ' + wrk if wrk else 'no wrk (' + wrkload.INSTALL_HINT + ')'}"
    )


def _planned_rows(name: str, figure: str, note: str) -> list[Row]:
    phase = f"bridge {name}"
    return [Row(phase, m, figure, t, None, note) for m, t in phases_bridge.PLANNED[name]]


def run_phase(ctx: Context, name: str, bridge_reason: str | None) -> bool:
    """Run one phase; False if it failed (its rows then say why)."""
    is_bridge = name in phases_bridge.PHASES
    if is_bridge and bridge_reason:
        ctx.add(*_planned_rows(name, "skipped", f"needs the bridge: {bridge_reason}"))
        return True
    phase = phases_bridge.PHASES[name] if is_bridge else OWN_STACK_PHASES[name]
    began = time.monotonic()
    print(f"-- {name} ...", file=sys.stderr, flush=True)
    try:
        phase(ctx)
    except phases_bridge.NeedsBridge as exc:
        ctx.add(*_planned_rows(name, "skipped", f"needs the bridge: {exc}"))
    except Exception as exc:  # a failed phase is reported; the others still run
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"-- {name} FAILED: {exc}", file=sys.stderr)
        ctx.add(Row(name, "phase", "FAILED", "", False, message))
        return False
    print(f"-- {name} done in {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
    return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings.make(
        quick=args.quick,
        connections=args.connections,
        wrk_threads=args.wrk_threads,
        use_wrk=not args.no_wrk,
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="credyt-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = Context(settings, workdir)
    machine = cpu.machine()
    print(environment(), file=sys.stderr)
    wanted = [name for name in ALL_PHASES if name in args.phases]
    needs_bridge = any(name in phases_bridge.PHASES for name in wanted)
    bridge_reason = phases_bridge.bridge_missing() if needs_bridge else None
    ok = all([run_phase(ctx, name, bridge_reason) for name in wanted])
    print(report.table(ctx.rows, machine))
    if args.json:
        report.write_json(ctx.rows, ctx.figures, args.json, machine)
    if ok and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    elif not ok:
        print(f"logs and databases kept in {workdir}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
