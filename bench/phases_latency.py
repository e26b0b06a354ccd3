"""The end-to-end phases: receipt -> 201 at a fixed rate, its CPU cost, and saturation.

Each run starts a fresh stack (stacks.py), warms it up at the run's rate (not
measured), sends signed webhooks on loadgen's open loop and reads, from the sandbox's
record of the 201s it answered (bridge_contract's `sandbox_arrivals`), when each
webhook's adjustment arrived; its latency runs from the webhook's due send time to
that arrival.

- cost: at a fixed moderate rate (200/s), the CPU seconds of the `serve` process
  (utime + stime from /proc, sampled every 0.25 s) over the steady part of the run
  (its first 20% and last 10% left out) divided by the payments due in that part;
  beside the floor of one payment (CPU of one empty request + of one bare httpx POST,
  both at the same rate, measured by the floor phases of the same run). The same run
  gives receipt -> 201 p50/p99 and the answer's p99 at that rate.
- saturation: short steps at rising fixed rates (100, 200, 300, 400, 600, 800, ...)
  until receipt -> 201 p99 reaches 100 ms (or a delivery is missing), one refining step
  between the last rate that held and the first that did not, then the p99 at half the
  rate found. When even the first step fails, the rate halves down to 25/s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import bridge_contract as bc
import cpu
import measure
from harness import Context, Row, micros, millis, per_second, ratio
from loadgen import LoadResult, percentile
from presign import SignedRequests, presign
from stacks import Stack, stack

STEADY_SKIP, STEADY_TAIL = 0.2, 0.1  # shares of a cost run left out at its start and end
MIN_RATE = 25  # the saturation search halves below its first rate down to this


@dataclass(frozen=True)
class Deliveries:
    """One open-loop run and when each of its webhooks' adjustments got its 201."""

    rate: float
    sent: LoadResult
    latencies_ms: list[float]
    arrivals: list[float]  # time.time() of each measured webhook's 201 at the sandbox
    missing: int  # webhooks whose adjustment the sandbox never recorded (in the wait)

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99_ms(self) -> float:
        """The p99, counting every missing delivery as slower than any that arrived."""
        if not self.missing:
            return percentile(self.latencies_ms, 99)
        padded = [*self.latencies_ms, *([float("inf")] * self.missing)]
        return percentile(padded, 99)

    def p50_p99(self) -> str:
        """ "p50 / p99", the p99 as "not all delivered" while some adjustment is missing."""
        p99 = "not all delivered" if self.missing else millis(self.p99_ms)
        return f"{millis(self.p50_ms)} / {p99}"

    def p99_ratio(self, floor: float | None, floor_name: str) -> str:
        return "" if self.missing else ratio(self.p99_ms, floor, floor_name)

    def summary(self) -> str:
        if self.missing:
            return f"{self.missing} of {self.sent.sent:,} not delivered in the wait"
        return f"{len(self.latencies_ms):,} adjustments; max {millis(max(self.latencies_ms))}"


def _send(
    ctx: Context, run: Stack, rate: float, duration: float, prefix: str
) -> tuple[SignedRequests, LoadResult]:
    """`rate`/s webhooks for `duration` s; returns once their adjustments are delivered, or
    after a bounded wait (what is still missing then is counted by the caller)."""
    signed = presign(max(1, round(rate * duration)), secret=ctx.settings.secret, prefix=prefix)
    before = bc.outbox_counts(run.bridge.url).get("delivered", 0)
    sent = measure.open_loop(ctx, run.bridge, signed, rate, duration)
    try:
        bc.wait_for_outbox(run.bridge.url, "delivered", before + sent.ok, timeout=10 + duration)
    except TimeoutError:
        pass
    return signed, sent


def deliver(ctx: Context, run: Stack, rate: float, duration: float, prefix: str) -> Deliveries:
    """After a warm-up at the same rate (its own event ids, not measured: a bridge in
    service is warm), `rate`/s webhooks for `duration` s and when each one's 201 came."""
    _send(ctx, run, rate, ctx.settings.warmup_s, prefix=f"w{prefix}")
    signed, sent = _send(ctx, run, rate, duration, prefix)
    arrivals = bc.sandbox_arrivals(run.sandbox.url)
    found = ((k, arrivals.get(signed.event_id(k))) for k in range(len(signed)))
    arrived = [(k, at) for k, at in found if at is not None]
    latencies = [(at - (sent.start_wall + k / rate)) * 1000 for k, at in arrived]
    times = [at for _, at in arrived]
    return Deliveries(rate, sent, latencies, times, len(signed) - len(latencies))


def _floor_cpu(ctx: Context, rate: int) -> float | None:
    empty, bare = ctx.figures.get(f"empty.cpu@{rate}"), ctx.figures.get(f"bare.cpu@{rate}")
    return empty + bare if empty and bare else None


def _nearest_empty_p99(ctx: Context, rate: float) -> tuple[float | None, str]:
    rates = [int(k.split("@")[1]) for k in ctx.figures if k.startswith("empty.p99@")]
    if not rates:
        return None, "empty"
    nearest = min(rates, key=lambda r: abs(r - rate))
    return ctx.figures[f"empty.p99@{nearest}"], f"empty p99 at {nearest:,}/s"


def cost(ctx: Context) -> None:
    rate, duration = ctx.settings.cost_rate, ctx.settings.cost_s
    with stack(ctx, "cost") as run, cpu.CpuSampler(run.bridge.pid) as sampler:
        done = deliver(ctx, run, rate, duration, prefix="cost")
    start = done.sent.start_wall
    steady = (start + STEADY_SKIP * duration, start + (1 - STEADY_TAIL) * duration)
    wall, cpu_s = sampler.between(*steady)
    due = rate * wall
    per_payment = cpu_s / due
    delivered = sum(steady[0] <= at <= steady[1] for at in done.arrivals)
    steady_note = f"{delivered:,} of {due:,.0f} due delivered in it"
    if delivered < 0.9 * due:  # behind: the CPU went on receiving, the rest is still queued
        steady_note += " (fell behind: not a steady state, so no verdict)"
    floor = _floor_cpu(ctx, rate)
    share = per_payment / floor if floor and delivered >= 0.9 * due else None
    ctx.figures["bridge.cpu_per_payment"] = per_payment
    floor_note = (
        f"floor {micros(floor)} = empty request {micros(ctx.figures[f'empty.cpu@{rate}'])} + "
        f"bare POST {micros(ctx.figures[f'bare.cpu@{rate}'])}"
        if floor
        else "run the empty and bare-post phases too for the floor"
    )
    empty_p99 = ctx.figures.get(f"empty.p99@{rate}")
    ctx.add(
        Row(
            "bridge cost",
            f"CPU per payment at {rate}/s",
            micros(per_payment),
            "<= 1.5x floor",
            None if share is None else share <= 1.5,
            f"serve utime+stime {cpu_s:.2f} s over {wall:.1f} s steady, {steady_note}; "
            + floor_note,
            ratio=ratio(per_payment, floor, "floor"),
        ),
        Row(
            "bridge latency",
            f"receipt -> 201, p50 / p99 at {rate}/s",
            done.p50_p99(),
            "p99 <= 20 ms",
            done.p99_ms <= 20,
            done.summary(),
            ratio=done.p99_ratio(empty_p99, "empty p99"),
        ),
        Row(
            "bridge latency",
            f"answer p99 at {rate}/s",
            millis(done.sent.p99_ms),
            note=f"p50 {millis(done.sent.p50_ms)}; " + measure.load_note(done.sent),
            ratio=ratio(done.sent.p99_ms, empty_p99, "empty p99"),
        ),
    )


def _step(ctx: Context, rate: int, duration: float) -> Deliveries:
    with stack(ctx, f"saturation-{rate}") as run:
        return deliver(ctx, run, rate, duration, prefix=f"sat{rate}x")


def _holds(ctx: Context, step: Deliveries) -> bool:
    return not step.missing and step.p99_ms < ctx.settings.saturation_p99_ms


def _search(ctx: Context) -> tuple[int | None, bool, list[Deliveries]]:
    """The highest step rate that held (after one refining step), whether any step
    failed at all (if not, the rate found is a lower bound), and every step run."""
    settings, steps = ctx.settings, []
    budget = time.monotonic() + 30 * settings.saturation_step_s  # bounded whatever happens
    held: int | None = None
    failed: int | None = None
    for rate in settings.saturation_rates:
        step = _step(ctx, rate, settings.saturation_step_s)
        steps.append(step)
        if not _holds(ctx, step):
            failed = rate
            break
        held = rate
        if time.monotonic() > budget:
            break
    while held is None and failed is not None and failed > MIN_RATE:  # even the first failed
        failed //= 2
        step = _step(ctx, failed, settings.saturation_step_s)
        steps.append(step)
        if _holds(ctx, step):
            held, failed = failed, failed * 2
    if held is not None and failed is not None:
        grain = 25 if held >= 100 else 5
        middle = (held + failed) // 2 // grain * grain
        if held < middle < failed:
            step = _step(ctx, middle, settings.saturation_step_s)
            steps.append(step)
            held = middle if _holds(ctx, step) else held
    return held, failed is not None, steps


def saturation(ctx: Context) -> None:
    limit = ctx.settings.saturation_p99_ms
    held, bounded, steps = _search(ctx)
    trail = ", ".join(
        f"{s.rate:,.0f}/s: {'missing' if s.missing else millis(s.p99_ms)}" for s in steps
    )
    floor = _floor_cpu(ctx, ctx.settings.cost_rate)
    ctx.add(
        Row(
            "bridge saturation",
            f"highest rate with receipt -> 201 p99 < {limit:.0f} ms",
            "none" if held is None else per_second(held) + ("" if bounded else " or more"),
            note=f"steps of {ctx.settings.saturation_step_s:g} s, p99 {trail}; "
            "ratio: against 1 / (floor CPU per payment), one core's rate at the floor",
            ratio=ratio(held, 1 / floor if floor else None, "floor rate") if held else "",
        )
    )
    if held is None:
        ctx.add(Row("bridge saturation", "receipt -> 201 p99 at half of it", "n/a", "<= 50 ms"))
        return
    half = held // 2
    with stack(ctx, "saturation-half") as run:
        done = deliver(ctx, run, half, ctx.settings.e2e_s, prefix="sathalf")
    empty_p99, empty_name = _nearest_empty_p99(ctx, half)
    ctx.add(
        Row(
            "bridge saturation",
            f"receipt -> 201, p50 / p99 at half of it ({half:,}/s)",
            done.p50_p99(),
            "p99 <= 50 ms",
            done.p99_ms <= 50,
            done.summary(),
            ratio=done.p99_ratio(empty_p99, empty_name),
        )
    )
