"""Load against a server that is already running: full speed and fixed rates.

`full_speed` measures requests/s and p50/p99 with wrk (`signed.lua`), or with the
Python closed loop when wrk is missing. A short warm-up (event ids of its own) first
estimates the rate, so the measured run gets enough unique pre-signed webhooks to
last its whole duration without repeating an event id. `fixed_rate` measures p50/p99
at a fixed offered rate with the Python open loop. Signatures are made right before
each run, well inside the 300 s tolerance.
"""

from __future__ import annotations

import sys

import cpu
import loadgen
import wrkload
from harness import Context
from loadgen import LoadResult
from presign import SignedRequests, presign
from procs import HOST, Server

MAX_PRESIGNED = 2_000_000
_warned_no_wrk = False


def _warn_no_wrk() -> None:
    global _warned_no_wrk
    if not _warned_no_wrk:
        print(f"{wrkload.INSTALL_HINT}; using the Python generator instead", file=sys.stderr)
        _warned_no_wrk = True


def _blast(
    ctx: Context, server: Server, signed: SignedRequests, duration: float, mode: str
) -> LoadResult:
    """As fast as the server answers, for `duration` s or until `signed` runs out."""
    settings = ctx.settings
    if not settings.use_wrk or wrkload.wrk_path() is None:
        if settings.use_wrk:
            _warn_no_wrk()
        requests = signed.http_requests(f"{HOST}:{server.port}")
        if mode == "cycle":
            requests *= 4
        return loadgen.run(
            loadgen.closed_loop(
                HOST, server.port, requests, connections=settings.connections, duration=duration
            )
        )
    path = signed.write(ctx.subdir("requests") / f"{server.name}.txt")
    try:
        return wrkload.run_wrk(
            server.url,
            path,
            duration=duration,
            threads=settings.wrk_threads,
            connections=settings.connections,
            mode=mode,
        )
    finally:
        path.unlink(missing_ok=True)


def warm_up(ctx: Context, server: Server, prefix: str) -> LoadResult:
    """A short full-speed run (event ids `warm…`); its rate sizes the measured run."""
    signed = presign(20_000, secret=ctx.settings.secret, prefix=f"warm{prefix}")
    return _blast(ctx, server, signed, ctx.settings.warmup_s, mode="cycle")


def full_speed_cpu(ctx: Context, server: Server, prefix: str = "full") -> tuple[LoadResult, float]:
    """The full-speed run and the server's CPU seconds during it (warm-up left out)."""
    warm = warm_up(ctx, server, prefix)
    duration = ctx.settings.full_speed_s
    count = min(MAX_PRESIGNED, max(20_000, round(2 * warm.rps * duration)))
    signed = presign(count, secret=ctx.settings.secret, prefix=prefix)
    began = cpu.cpu_seconds(server.pid)
    result = _blast(ctx, server, signed, duration, mode="stop")
    return result, cpu.cpu_seconds(server.pid) - began


def full_speed(ctx: Context, server: Server, prefix: str = "full") -> LoadResult:
    return full_speed_cpu(ctx, server, prefix)[0]


def open_loop(
    ctx: Context, server: Server, signed: SignedRequests, rate: float, duration: float
) -> LoadResult:
    requests = signed.http_requests(f"{HOST}:{server.port}")
    return loadgen.run(loadgen.open_loop(HOST, server.port, requests, rate=rate, duration=duration))


def fixed_rate_cpu(
    ctx: Context, server: Server, rate: int, prefix: str | None = None
) -> tuple[LoadResult, float]:
    """The fixed-rate run and the server's CPU seconds during it."""
    duration = ctx.settings.fixed_s
    signed = presign(
        round(rate * duration), secret=ctx.settings.secret, prefix=prefix or f"r{rate}x"
    )
    began = cpu.cpu_seconds(server.pid)
    result = open_loop(ctx, server, signed, rate, duration)
    return result, cpu.cpu_seconds(server.pid) - began


def fixed_rate(ctx: Context, server: Server, rate: int, prefix: str | None = None) -> LoadResult:
    return fixed_rate_cpu(ctx, server, rate, prefix)[0]


def load_note(result: LoadResult) -> str:
    """What a reader must know about a run: errors, or ids running out."""
    notes = []
    if result.errors:
        kinds = ", ".join(f"{k} x{n}" for k, n in sorted(result.error_kinds.items()))
        notes.append(f"{result.errors} errors" + (f" ({kinds})" if kinds else ""))
    if result.exhausted:
        notes.append("ran out of pre-signed requests: rate is a lower bound")
    notes.append(result.tool)
    return "; ".join(notes)
