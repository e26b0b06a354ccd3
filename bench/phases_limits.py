"""Credyt's rate limits: `maxrate` and `outage` (registered in bench/run.py).

- maxrate: a backlog of pending adjustments (50,000; --quick 2,000; made as the drain
  phase makes it) delivered with `credyt.max_rate: 250` to a sandbox without a limit:
  the achieved rate from the sandbox's own arrival times, and its deviation from
  max_rate (target: within 5%). 250/s is below what a 2-core machine drains without
  a limit (about 400/s): a limit above the machine's own pace measures the machine;
- outage: the bridge runs while nothing listens at Credyt's address (connections
  refused, the breaker opens) and webhooks arrive (10,000; --quick 1,000); after the
  outage the sandbox comes back with `--rate-limit 200` under `max_rate: 300` (an
  account whose limit is below what the bridge was told, and below the machine's own
  pace, so the bridge does meet the limit): the 429s the sandbox
  answered and the time to drain. The default outage is 30 s (--quick 5 s), not 10
  minutes, so that the full run stays minutes long: run
  `python bench/phases_limits.py --outage-seconds 600` for the real 10 minutes.

Each reuses phases_bridge's backlog filler and bridge_contract's argv and config.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import bridge_contract as bc
import loadgen
import procs
import report
from harness import Context, Row, Settings, per_second
from phases_bridge import _fill_backlog
from presign import presign
from procs import HOST, Server

MAX_RATE = 250.0  # credyt.max_rate in the maxrate phase
OUTAGE_MAX_RATE = 300.0  # credyt.max_rate in the outage phase, above Credyt's limit
CREDYT_LIMIT = 200.0  # the sandbox's --rate-limit in the outage phase
TOLERANCE = 0.05  # maxrate: the achieved rate is within 5% of max_rate
OUTAGE_SECONDS = {True: 5.0, False: 30.0}  # quick, full; --outage-seconds overrides
OUTAGE_WEBHOOKS = {True: 1_000, False: 10_000}
outage_seconds: float | None = None  # set by --outage-seconds


def limited_config(database: Path, credyt_url: str, secret: str, max_rate: float) -> str:
    """bridge_contract's config with `credyt.max_rate` set, and USD's precision given
    (else the processor asks Credyt, and an outage holds the events in the inbox
    instead of building the outbox backlog this bench is about)."""
    text = bc.config_text(database, credyt_url, secret)
    limits = f"  max_rate: {max_rate:g}\n  assets: {{USD: 2}}\n"
    return text.replace("credyt:\n", "credyt:\n" + limits, 1)


def sandbox_argv(port: int, rate_limit: float | None) -> list[str]:
    extra = [] if rate_limit is None else ["--rate-limit", f"{rate_limit:g}"]
    return [*bc.sandbox_argv(port), *extra]


@contextmanager
def running_sandbox(
    ctx: Context, name: str, port: int, rate_limit: float | None
) -> Iterator[Server]:
    with procs.running(
        f"{name}-sandbox",
        sandbox_argv(port, rate_limit),
        port,
        ctx.log_dir,
        ready_path=bc.SANDBOX_READY_PATH,
    ) as sandbox:
        yield sandbox


@contextmanager
def running_bridge(
    ctx: Context, name: str, database: Path, credyt_url: str, max_rate: float
) -> Iterator[Server]:
    """A bridge with max_rate set; ready once it answers /healthz (Credyt may be down)."""
    config = ctx.subdir(name) / "bridge.yaml"
    config.write_text(limited_config(database, credyt_url, ctx.settings.secret, max_rate))
    port = procs.free_port()
    with procs.running(
        f"{name}-bridge", bc.serve_argv(config, port), port, ctx.log_dir, ready_path="/healthz"
    ) as bridge:
        yield bridge


def sandbox_state(sandbox_url: str) -> dict[str, object]:
    with urllib.request.urlopen(sandbox_url + "/_sandbox/state", timeout=120) as answer:
        state: dict[str, object] = json.loads(answer.read())
    return state


def maxrate(ctx: Context) -> None:
    backlog = ctx.settings.drain_backlog
    database = ctx.subdir("maxrate") / "bridge.db"
    _fill_backlog(ctx, database, backlog)
    port = procs.free_port()
    with running_sandbox(ctx, "maxrate", port, None) as sandbox:
        with running_bridge(ctx, "maxrate", database, sandbox.url, MAX_RATE) as bridge:
            bc.wait_for_outbox(
                bridge.url, "delivered", backlog, timeout=60 + 2 * backlog / MAX_RATE
            )
        arrivals = sorted(bc.sandbox_arrivals(sandbox.url).values())
    achieved = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    deviation = achieved / MAX_RATE - 1
    ctx.add(
        Row(
            "limits maxrate",
            f"drain at max_rate {MAX_RATE:g}/s",
            per_second(achieved),
            f"within {TOLERANCE:.0%} of {MAX_RATE:g}/s",
            abs(deviation) <= TOLERANCE,
            f"{deviation:+.1%} from max_rate; {len(arrivals):,} adjustments (sandbox arrival "
            f"times, first to last); {backlog:,} pending at start",
        )
    )


def outage(ctx: Context) -> None:
    quick = ctx.settings.quick
    seconds = outage_seconds if outage_seconds is not None else OUTAGE_SECONDS[quick]
    webhooks = OUTAGE_WEBHOOKS[quick]
    database = ctx.subdir("outage") / "bridge.db"
    port = procs.free_port()  # Credyt's address: nothing listens there during the outage
    signed = presign(webhooks, secret=ctx.settings.secret, prefix="outage")
    with running_bridge(
        ctx, "outage", database, f"http://{HOST}:{port}", OUTAGE_MAX_RATE
    ) as bridge:
        began = time.perf_counter()
        result = loadgen.run(
            loadgen.closed_loop(
                HOST,
                bridge.port,
                signed.http_requests(f"{HOST}:{bridge.port}"),
                connections=ctx.settings.connections,
                duration=300,
            )
        )
        if result.ok < webhooks:
            raise RuntimeError(f"outage: only {result.ok} of {webhooks} webhooks accepted")
        time.sleep(max(0.0, seconds - (time.perf_counter() - began)))
        pending = bc.outbox_counts(bridge.url).get("pending", 0)
        with running_sandbox(ctx, "outage", port, CREDYT_LIMIT) as sandbox:
            back = time.perf_counter()
            ended = bc.wait_for_outbox(
                bridge.url, "delivered", webhooks, timeout=120 + webhooks / 50
            )
            state = sandbox_state(sandbox.url)
    limited = int(str(state["rate_limited"]))
    requests = int(str(state["adjustment_requests"]))
    drain = ended - back
    ctx.add(
        Row(
            "limits outage",
            f"429s after a {seconds:g} s outage",
            f"{limited:,}",
            f"no storm (< 1% of {webhooks:,})",
            limited < webhooks / 100,
            f"sandbox --rate-limit {CREDYT_LIMIT:g} under max_rate {OUTAGE_MAX_RATE:g}; "
            f"{requests:,} adjustment requests for {webhooks:,} payments; "
            f"{pending:,} adjustments pending when it came back"
            + ("" if outage_seconds else "; shortened outage: --outage-seconds 600 for 10 min"),
        ),
        Row(
            "limits outage",
            "backlog drained after the outage",
            f"{drain:.1f} s",
            "",
            None,
            f"{per_second(webhooks / drain)} against the sandbox's {CREDYT_LIMIT:g}/s",
        ),
    )


PHASES: dict[str, Callable[[Context], None]] = {"maxrate": maxrate, "outage": outage}


def main(argv: list[str] | None = None) -> int:
    """Run the two phases alone: `python bench/phases_limits.py [--quick]
    [--outage-seconds 600] [--phases maxrate outage]`."""
    global outage_seconds
    parser = argparse.ArgumentParser(description="Credyt's rate limits: maxrate and outage.")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--outage-seconds", type=float, help="default 30 (--quick 5)")
    parser.add_argument("--phases", nargs="+", choices=list(PHASES), default=list(PHASES))
    args = parser.parse_args(argv)
    outage_seconds = args.outage_seconds
    ctx = Context(Settings.make(quick=args.quick), Path(tempfile.mkdtemp(prefix="credyt-limits-")))
    for name in args.phases:
        PHASES[name](ctx)
    print(report.table(ctx.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
