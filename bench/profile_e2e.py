"""CPU per payment and latency at one fixed rate, optionally under py-spy.

`python bench/profile_e2e.py --rate 200 --count 3000 [--pyspy profile.svg]` starts a
sandbox and `credyt-bridge serve` (as the `e2e` phase does), sends `count` signed
`invoice.paid` webhooks at `rate`/s (Python open loop), waits for every adjustment to
reach the sandbox, and prints: CPU seconds of the serve process per payment (utime +
stime from /proc/PID/stat over the run, up to the last 201, and split between the
event loop's thread and the others: SQLite's writer), the answer's p50/p99 and
receipt -> 201 p50/p99. `--pyspy FILE` records the serve process with py-spy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bridge_contract as bc
import loadgen
import procs
from loadgen import percentile
from presign import DEFAULT_SECRET, presign


def cpu_seconds(pid: int) -> float:
    return cpu_seconds_of(Path(f"/proc/{pid}/stat"))


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of the main thread (the event loop) and of the others (SQLite's writer)."""
    seconds: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = "main" if task.name == str(pid) else "other threads"
            seconds[name] = seconds.get(name, 0.0) + cpu_seconds_of(task / "stat")
        except OSError:
            continue
    return seconds


def cpu_seconds_of(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--pyspy", help="write a py-spy flame graph of serve here")
    parser.add_argument("--cprofile", help="run serve under cProfile, its stats written here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="profile-e2e-"))
    signed = presign(args.count, secret=DEFAULT_SECRET, prefix="prof")
    sandbox_port, bridge_port = procs.free_port(), procs.free_port()
    with procs.running(
        "sandbox",
        bc.sandbox_argv(sandbox_port),
        sandbox_port,
        work,
        ready_path=bc.SANDBOX_READY_PATH,
    ) as sandbox:
        config = work / "bridge.yaml"
        config.write_text(bc.config_text(work / "bridge.db", sandbox.url, DEFAULT_SECRET))
        argv = bc.serve_argv(config, bridge_port)
        if args.cprofile:  # the main thread only: the event loop
            argv = [sys.executable, "-m", "cProfile", "-o", args.cprofile, *argv[1:]]
        with procs.running(
            "bridge", argv, bridge_port, work, ready_path=bc.BRIDGE_READY_PATH
        ) as bridge:
            spy = None
            if args.pyspy:
                spy = subprocess.Popen(
                    [
                        "py-spy",
                        "record",
                        "--pid",
                        str(bridge.pid),
                        "-o",
                        args.pyspy,
                        "--rate",
                        "200",
                        "--nonblocking",
                        "--threads",
                        "--format",
                        "raw" if args.pyspy.endswith(".txt") else "flamegraph",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(1)
            before = cpu_seconds(bridge.pid)
            threads_before = thread_cpu(bridge.pid)
            requests = signed.http_requests(f"{procs.HOST}:{bridge.port}")
            sent = loadgen.run(
                loadgen.open_loop(
                    procs.HOST,
                    bridge.port,
                    requests,
                    rate=args.rate,
                    duration=args.count / args.rate + 5,
                )
            )
            # Poll the sandbox, not the bridge: a /metrics scrape counts every table,
            # CPU of the serve process that is no payment's.
            deadline = time.monotonic() + 120
            while len(bc.sandbox_arrivals(sandbox.url)) < sent.ok:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"fewer than {sent.ok} adjustments reached the sandbox")
                time.sleep(0.2)
            after = cpu_seconds(bridge.pid)
            threads = {
                name: value - threads_before.get(name, 0.0)
                for name, value in thread_cpu(bridge.pid).items()
            }
            if spy is not None:
                spy.send_signal(2)
                spy.wait(30)
            arrivals = bc.sandbox_arrivals(sandbox.url)
    latencies = [
        (arrivals[signed.event_id(k)] - (sent.start_wall + k / args.rate)) * 1000
        for k in range(len(signed))
        if signed.event_id(k) in arrivals
    ]
    per = (after - before) / max(1, len(latencies))
    print(
        f"rate {args.rate:g}/s, {len(latencies)} delivered of {args.count}: "
        f"CPU {per * 1e6:.0f} us/payment; "
        f"answer p50 {sent.p50_ms:.2f} ms p99 {sent.p99_ms:.2f} ms; "
        f"receipt->201 p50 {percentile(latencies, 50):.2f} ms "
        f"p99 {percentile(latencies, 99):.2f} ms"
    )
    count = max(1, len(latencies))
    print(
        "  by thread: "
        + ", ".join(
            f"{name} {value / count * 1e6:.0f} us"
            for name, value in sorted(threads.items())
            if value > 0
        )
    )
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
