"""The bridge phases: ingest, fixed rates, end to end, cost, saturation, drain, growth.

Each phase starts a fresh stack: `credyt-bridge sandbox` and `credyt-bridge serve
--config <tmp config> --host 127.0.0.1 --port P`, each its own subprocess on loopback,
with a fresh database. What they measure:

- ingest: unique signed `invoice.paid` webhooks at full speed (wrk), durable storage on
  (the bridge's own SQLite, synchronous=FULL), while the processor and deliverer run
  behind it: requests/s (also as a share of the empty endpoint of the same run),
  p50/p99, and the bridge's peak RSS;
- fixed rates: p99 at 500/s and 2,000/s (Python open loop), one fresh stack per rate;
- end to end: p50/p99 from a webhook's due send time to the sandbox recording (and
  answering 201 to) its adjustment, at 500/s (the machinery, and the cost and
  saturation phases built on it, are in phases_latency.py);
- drain: a backlog of pending adjustments (50,000; made by letting the sandbox refuse
  every delivery with a 400, then `outbox retry --dead`) delivered by a restarted
  bridge to a healthy sandbox: adjustments/s;
- growth: the cost of the deliverer's claim and of `events list` with 1,000 and with
  1,000,000 finished rows (seeded straight into the schema).

Each figure with a floor of the same run (phases_baseline.py) carries its ratio to it.
How the harness talks to the bridge lives in bridge_contract.py.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import bridge_contract as bc
import loadgen
import measure
import phases_latency
from harness import Context, Row, mebibytes, millis, per_second, ratio
from loadgen import LoadResult
from presign import presign
from procs import HOST, Server
from stacks import stack

NeedsBridge = bc.NeedsBridge
bridge_missing = bc.bridge_missing

CLAIM_LIMIT = 32  # the deliverer claims up to its concurrency (credyt.concurrency: 32)


# PLANNED: each phase's rows (measure, target), so that a skipped phase still shows them.
PLANNED: dict[str, list[tuple[str, str]]] = {
    "ingest": [
        ("requests/s, full speed, durable", ">= 8,000/s"),
        ("share of the empty endpoint", ">= 35%"),
        ("p50 / p99, full speed", ""),
        ("peak RSS during ingest", "<= 150 MB"),
    ],
    "fixed": [("p99 at 500/s", ""), ("p99 at 2,000/s", "<= 15 ms")],
    "e2e": [("receipt -> 201, p50 / p99 at 500/s", "")],
    "cost": [
        ("CPU per payment at 200/s", "<= 1.5x floor"),
        ("receipt -> 201, p50 / p99 at 200/s", "p99 <= 20 ms"),
        ("answer p99 at 200/s", ""),
    ],
    "saturation": [
        ("highest rate with receipt -> 201 p99 < 100 ms", ""),
        ("receipt -> 201, p50 / p99 at half of it", "p99 <= 50 ms"),
    ],
    "drain": [("backlog delivered", ">= 2,000/s")],
    "growth": [
        ("claim, 1,000 finished rows", ""),
        ("claim, 1,000,000 finished rows", ""),
        ("claim cost large / small", "<= 1.2x"),
        ("events list, 1,000 / 1,000,000 rows", ""),
    ],
}


def _accepted_note(bridge: Server, result: LoadResult, what: str = "stored") -> str:
    outcomes = bc.webhook_outcomes(bridge.url)
    extra = {k: v for k, v in outcomes.items() if k != "accepted" and v}
    note = f"{outcomes.get('accepted', 0):,} {what}"
    return note + (f", {extra}" if extra else "") + "; " + measure.load_note(result)


def ingest(ctx: Context) -> None:
    phase = "bridge ingest"
    with stack(ctx, "ingest") as run:
        full = measure.full_speed(ctx, run.bridge, prefix="ing")
        note = _accepted_note(run.bridge, full, "stored incl. warm-up")
    rss = run.bridge.peak_rss_mb
    ceiling = ctx.figures.get("empty.rps")
    share = full.rps / ceiling if ceiling else None
    ctx.figures["bridge.rps"] = full.rps
    ctx.add(
        Row(
            phase,
            "requests/s, full speed, durable",
            per_second(full.rps),
            ">= 8,000/s",
            full.rps >= 8000,
            note,
            ratio=ratio(full.rps, ceiling, "empty"),
        ),
        Row(
            phase,
            "share of the empty endpoint",
            "n/a" if share is None else f"{share:.0%}",
            ">= 35%",
            None if share is None else share >= 0.35,
            f"empty: {per_second(ceiling)}" if ceiling else "run the empty phase too",
        ),
        Row(
            phase,
            "p50 / p99, full speed",
            f"{millis(full.p50_ms)} / {millis(full.p99_ms)}",
            note=f"{ctx.settings.connections} connections",
            ratio=ratio(full.p99_ms, ctx.figures.get("empty.p99_full"), "empty p99"),
        ),
        Row(
            phase,
            "peak RSS during ingest",
            mebibytes(rss),
            "<= 150 MB",
            None if rss is None else rss <= 150,
            "VmHWM of the serve process",
        ),
    )


def fixed_rates(ctx: Context) -> None:
    for rate in ctx.settings.fixed_rates:
        with stack(ctx, f"fixed-{rate}") as run:
            result = measure.fixed_rate(ctx, run.bridge, rate)
            note = _accepted_note(run.bridge, result)
        target, met = ("<= 15 ms", result.p99_ms <= 15) if rate == 2000 else ("", None)
        ctx.add(
            Row(
                "bridge fixed rate",
                f"p99 at {rate:,}/s",
                millis(result.p99_ms),
                target,
                met,
                f"p50 {millis(result.p50_ms)}; {note}",
                ratio=ratio(result.p99_ms, ctx.figures.get(f"empty.p99@{rate}"), "empty p99"),
            )
        )


def end_to_end(ctx: Context) -> None:
    rate, duration = ctx.settings.e2e_rate, ctx.settings.e2e_s
    with stack(ctx, "e2e") as run:
        done = phases_latency.deliver(ctx, run, rate, duration, prefix="e2e")
    ctx.add(
        Row(
            "bridge end to end",
            f"receipt -> 201, p50 / p99 at {rate}/s",
            done.p50_p99(),
            note=done.summary(),
            ratio=done.p99_ratio(ctx.figures.get(f"empty.p99@{rate}"), "empty p99"),
        )
    )


def _fill_backlog(ctx: Context, database: Path, backlog: int) -> None:
    """`backlog` webhooks, each one adjustment the sandbox refuses (dead), then retried."""
    signed = presign(backlog, secret=ctx.settings.secret, prefix="drain")
    with stack(ctx, "drain-fill", database=database) as run:
        bc.refuse_adjustments(run.sandbox.url, 2 * backlog)
        requests = signed.http_requests(f"{HOST}:{run.bridge.port}")
        result = loadgen.run(
            loadgen.closed_loop(
                HOST, run.bridge.port, requests, connections=ctx.settings.connections, duration=300
            )
        )
        if result.ok < backlog:
            raise RuntimeError(f"drain: only {result.ok} of {backlog} webhooks accepted")
        bc.wait_for_outbox(run.bridge.url, "dead", backlog, timeout=60 + backlog / 100)
    retried = bc.retry_dead(database)
    if retried != backlog:
        raise RuntimeError(f"drain: {retried} adjustments back to pending, not {backlog}")


def drain(ctx: Context) -> None:
    backlog = ctx.settings.drain_backlog
    database = ctx.subdir("drain") / "bridge.db"
    _fill_backlog(ctx, database, backlog)
    with stack(ctx, "drain", database=database) as run:
        began = time.perf_counter()
        first = bc.outbox_counts(run.bridge.url).get("delivered", 0)
        ended = bc.wait_for_outbox(run.bridge.url, "delivered", backlog, timeout=60 + backlog / 200)
    rate = (backlog - first) / (ended - began)
    ctx.add(
        Row(
            "bridge drain",
            "backlog delivered",
            per_second(rate),
            ">= 2,000/s",
            rate >= 2000,
            f"{backlog:,} pending adjustments; {first:,} delivered before the first poll; "
            f"peak RSS {mebibytes(run.bridge.peak_rss_mb)}",
            ratio=ratio(rate, ctx.figures.get("bare.rate"), "bare POST"),
        )
    )


def _seeded(ctx: Context, rows: int) -> tuple[Path, Path]:
    """A database with `rows` finished events plus CLAIM_LIMIT due adjustments, and a config."""
    workdir = ctx.subdir(f"growth-{rows}")
    database = workdir / "bridge.db"
    database.unlink(missing_ok=True)
    bc.seed_finished(database, rows)
    bc.add_due(database, CLAIM_LIMIT)
    config = workdir / "bridge.yaml"
    config.write_text(bc.config_text(database, "http://127.0.0.1:9", ctx.settings.secret))
    return database, config


def _medians(timings: bc.Timings) -> list[float]:
    return [statistics.median(t) for t in timings]


def _cli_note(configs: list[Path]) -> str:
    walls = [bc.events_list_cli_ms(config) for config in configs]
    if any(wall is None for wall in walls):
        return "no `events list` CLI yet"
    return "CLI wall " + " / ".join(millis(wall or 0) for wall in walls)


def growth(ctx: Context) -> None:
    sizes = ctx.settings.growth_sizes
    seeded = [_seeded(ctx, rows) for rows in sizes]
    databases, configs = [d for d, _ in seeded], [c for _, c in seeded]
    try:
        claim = _medians(bc.claim_ms(databases, limit=CLAIM_LIMIT, repeats=200))
        listed = _medians(bc.list_events_ms(databases, repeats=50))
        failed = _medians(bc.list_events_ms(databases, repeats=50, status="failed"))
        cli = _cli_note(configs)
    finally:
        for database in databases:
            database.unlink(missing_ok=True)  # a million rows is about 1.6 GB
    ratio = claim[1] / claim[0] if claim[0] else float("inf")
    phase, a, b = "bridge growth", f"{sizes[0]:,}", f"{sizes[1]:,}"
    ctx.add(
        Row(
            phase,
            f"claim, {a} finished rows",
            millis(claim[0]),
            note=f"Store.claim_adjustments of {CLAIM_LIMIT} due rows incl. its commit; "
            "median of 200, the two databases taking turns",
        ),
        Row(phase, f"claim, {b} finished rows", millis(claim[1]), note="median of 200"),
        Row(
            phase,
            "claim cost large / small",
            f"{ratio:.2f}x",
            "<= 1.2x",
            ratio <= 1.2,
            "quick: not the 1M target" if ctx.settings.quick else "",
        ),
        Row(
            phase,
            f"events list, {a} / {b} rows",
            f"{millis(listed[0])} / {millis(listed[1])}",
            note=f"Store.list_events (100 newest), median of 50; --status failed "
            f"{millis(failed[0])} / {millis(failed[1])}; {cli}",
        ),
    )


PHASES: dict[str, Callable[[Context], None]] = {
    "ingest": ingest,
    "fixed": fixed_rates,
    "e2e": end_to_end,
    "cost": phases_latency.cost,
    "saturation": phases_latency.saturation,
    "drain": drain,
    "growth": growth,
}
