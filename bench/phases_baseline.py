"""The floors: the empty endpoint, the naive SQLite endpoint (bench/baselines.py), and a
bare httpx POST to the Credyt sandbox (bench/bare_post.py).

For each baseline server (its own subprocess, uvicorn + uvloop + httptools): requests/s
and p50/p99 at full speed, the server's CPU per request (utime + stime from /proc), p99
at each fixed rate, and its peak RSS; the empty endpoint also runs at the cost phase's
moderate rate (200/s), for its CPU and p99 there. The bare POST floor starts a
`credyt-bridge sandbox` and posts adjustments from a small subprocess, at full speed and
at 200/s: posts/s and that process's CPU per POST. Every figure a bridge phase divides
by is published in `Context.figures` (`empty.rps`, `empty.cpu@200`, `bare.rate`, ...).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import bridge_contract as bc
import measure
import procs
from harness import Context, Row, mebibytes, micros, millis, per_second, ratio

BASELINES = Path(__file__).with_name("baselines.py")
BARE_POST = Path(__file__).with_name("bare_post.py")
BARE_CONCURRENCY = 4  # one of the deliverer's pools (4 connections each)


def _argv(app: str, port: int, *extra: str) -> list[str]:
    return [sys.executable, str(BASELINES), app, "--port", str(port), *extra]


def _measure(
    ctx: Context,
    phase: str,
    key: str,
    argv_extra: tuple[str, ...],
    app: str,
    extra_rates: tuple[int, ...] = (),
) -> None:
    port = procs.free_port()
    empty_rps = ctx.figures.get("empty.rps") if key != "empty" else None
    with procs.running(key, _argv(app, port, *argv_extra), port, ctx.log_dir) as server:
        full, cpu_s = measure.full_speed_cpu(ctx, server)
        per_request = cpu_s / full.ok if full.ok else 0.0
        ctx.figures[f"{key}.rps"] = full.rps
        ctx.figures[f"{key}.cpu_full"] = per_request
        ctx.figures[f"{key}.p99_full"] = full.p99_ms
        ctx.add(
            Row(
                phase,
                "requests/s, full speed",
                per_second(full.rps),
                note=measure.load_note(full),
                ratio=ratio(full.rps, empty_rps, "empty"),
            ),
            Row(
                phase,
                "p50 / p99, full speed",
                f"{millis(full.p50_ms)} / {millis(full.p99_ms)}",
                note=f"{ctx.settings.connections} connections",
            ),
            Row(
                phase,
                "CPU per request, full speed",
                micros(per_request),
                note=f"server utime+stime {cpu_s:.2f} s over {full.ok:,} requests",
                ratio=ratio(per_request, ctx.figures.get("empty.cpu_full"), "empty")
                if empty_rps
                else "",
            ),
        )
        for rate in sorted({*extra_rates, *ctx.settings.fixed_rates}):
            fixed, cpu_s = measure.fixed_rate_cpu(ctx, server, rate)
            ctx.figures[f"{key}.p99@{rate}"] = fixed.p99_ms
            ctx.figures[f"{key}.cpu@{rate}"] = cpu_s / fixed.ok if fixed.ok else 0.0
            ctx.add(
                Row(
                    phase,
                    f"p99 at {rate:,}/s",
                    millis(fixed.p99_ms),
                    note=f"p50 {millis(fixed.p50_ms)}; "
                    f"CPU {micros(cpu_s / max(1, fixed.ok))}/request; " + measure.load_note(fixed),
                    ratio=ratio(fixed.p99_ms, ctx.figures.get(f"empty.p99@{rate}"), "empty p99")
                    if empty_rps
                    else "",
                )
            )
    ctx.add(Row(phase, "peak RSS", mebibytes(server.peak_rss_mb)))


def empty_endpoint(ctx: Context) -> None:
    _measure(ctx, "floor: empty endpoint", "empty", (), "empty", (ctx.settings.cost_rate,))


def naive_direct(ctx: Context) -> None:
    db = ctx.subdir("naive-direct") / "naive.db"
    _measure(
        ctx,
        "floor: naive SQLite (on loop)",
        "naive_direct",
        ("--db", str(db), "--mode", "direct"),
        "naive",
    )


def naive_threadpool(ctx: Context) -> None:
    db = ctx.subdir("naive-threadpool") / "naive.db"
    _measure(
        ctx,
        "floor: naive SQLite (thread pool)",
        "naive_threadpool",
        ("--db", str(db), "--mode", "threadpool"),
        "naive",
    )


def _bare_posts(sandbox_url: str, count: int, rate: float) -> dict[str, float]:
    argv = [sys.executable, str(BARE_POST), "--url", sandbox_url, "--count", str(count)]
    argv += ["--rate", str(rate), "--concurrency", str(BARE_CONCURRENCY)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120 + count / 20)
    for line in done.stdout.splitlines():
        if line.startswith("BARE_POST "):
            result: dict[str, float] = json.loads(line.removeprefix("BARE_POST "))
            if result["errors"]:
                raise RuntimeError(f"bare POST: {result['errors']:.0f} of {count} not a 201")
            return result
    raise RuntimeError(
        f"bare POST printed no result (exit {done.returncode}): {done.stderr[-300:]}"
    )


def bare_post(ctx: Context) -> None:
    """Bare httpx POSTs of adjustments to the sandbox: the floor of one delivery."""
    phase, count, rate = "floor: bare httpx POST", ctx.settings.bare_posts, ctx.settings.cost_rate
    port = procs.free_port()
    argv = bc.sandbox_argv(port)
    with procs.running("bare-sandbox", argv, port, ctx.log_dir, ready_path=bc.SANDBOX_READY_PATH):
        url = f"http://{procs.HOST}:{port}"
        full = _bare_posts(url, count, 0)
        paced = _bare_posts(url, round(rate * ctx.settings.fixed_s), rate)
    full_rate = full["created"] / full["wall_s"]
    ctx.figures["bare.rate"] = full_rate
    ctx.figures["bare.cpu_full"] = full["cpu_s"] / full["created"]
    ctx.figures[f"bare.cpu@{rate}"] = paced["cpu_s"] / paced["created"]
    note = f"one httpx.AsyncClient, {BARE_CONCURRENCY} connections, uvloop; {count:,} posts"
    ctx.add(
        Row(phase, "posts/s, full speed", per_second(full_rate), note=note),
        Row(
            phase,
            "CPU per POST, full speed",
            micros(ctx.figures["bare.cpu_full"]),
            note="the posting process's own CPU",
        ),
        Row(
            phase,
            f"CPU per POST at {rate}/s",
            micros(ctx.figures[f"bare.cpu@{rate}"]),
            note=f"{paced['created']:,.0f} posts on a fixed schedule",
        ),
    )
