"""The ceiling phases: the empty endpoint and the naive SQLite endpoint (bench/baselines.py).

For each baseline server (its own subprocess, uvicorn + uvloop + httptools): requests/s
and p50/p99 at full speed, p99 at each fixed rate, and the server's peak RSS. The
empty endpoint's requests/s is published as `empty.rps` for the bridge's ingest phase.
"""

from __future__ import annotations

import sys
from pathlib import Path

import measure
import procs
from harness import Context, Row, mebibytes, millis, per_second

BASELINES = Path(__file__).with_name("baselines.py")


def _argv(app: str, port: int, *extra: str) -> list[str]:
    return [sys.executable, str(BASELINES), app, "--port", str(port), *extra]


def _measure(ctx: Context, phase: str, key: str, argv_extra: tuple[str, ...], app: str) -> None:
    port = procs.free_port()
    with procs.running(key, _argv(app, port, *argv_extra), port, ctx.log_dir) as server:
        full = measure.full_speed(ctx, server)
        ctx.add(
            Row(
                phase, "requests/s, full speed", per_second(full.rps), note=measure.load_note(full)
            ),
            Row(
                phase,
                "p50 / p99, full speed",
                f"{millis(full.p50_ms)} / {millis(full.p99_ms)}",
                note=f"{ctx.settings.connections} connections",
            ),
        )
        ctx.figures[f"{key}.rps"] = full.rps
        for rate in ctx.settings.fixed_rates:
            fixed = measure.fixed_rate(ctx, server, rate)
            ctx.add(
                Row(
                    phase,
                    f"p99 at {rate:,}/s",
                    millis(fixed.p99_ms),
                    note=f"p50 {millis(fixed.p50_ms)}; " + measure.load_note(fixed),
                )
            )
    ctx.add(Row(phase, "peak RSS", mebibytes(server.peak_rss_mb)))


def empty_endpoint(ctx: Context) -> None:
    _measure(ctx, "ceiling: empty endpoint", "empty", (), "empty")


def naive_direct(ctx: Context) -> None:
    db = ctx.subdir("naive-direct") / "naive.db"
    _measure(
        ctx,
        "ceiling: naive SQLite (on loop)",
        "naive_direct",
        ("--db", str(db), "--mode", "direct"),
        "naive",
    )


def naive_threadpool(ctx: Context) -> None:
    db = ctx.subdir("naive-threadpool") / "naive.db"
    _measure(
        ctx,
        "ceiling: naive SQLite (thread pool)",
        "naive_threadpool",
        ("--db", str(db), "--mode", "threadpool"),
        "naive",
    )
