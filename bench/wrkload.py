"""Full-speed load with wrk and `signed.lua` (measures requests/s, p50/p99 latency).

wrk (C, epoll, one thread by default so the server keeps the other core) sends the
pre-signed webhooks from a requests file as fast as the server answers them over C
keep-alive connections; `signed.lua`'s `done()` prints one `BENCH_RESULT {json}` line
that is parsed into a `LoadResult`. wrk's latency is per request, from write to the
end of the answer, so at full speed it includes queueing behind the C-1 others.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from loadgen import LoadResult

SCRIPT = Path(__file__).with_name("signed.lua")
INSTALL_HINT = "wrk not found: install it with `apt-get install wrk` (Debian/Ubuntu)"
RESULT_PREFIX = "BENCH_RESULT "


class WrkError(RuntimeError):
    pass


def wrk_path() -> str | None:
    return shutil.which("wrk")


def wrk_argv(
    url: str, requests_file: Path, *, threads: int, connections: int, duration: float, mode: str
) -> list[str]:
    return [
        wrk_path() or "wrk",
        f"-t{threads}",
        f"-c{max(connections, threads)}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "-s",
        str(SCRIPT),
        url,
        "--",
        str(requests_file),
        str(threads),
        mode,
    ]


def parse_result(stdout: str) -> LoadResult:
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return _to_result(json.loads(line[len(RESULT_PREFIX) :]))
    raise WrkError(f"wrk printed no {RESULT_PREFIX.strip()} line:\n{stdout[-2000:]}")


ERROR_KINDS = {
    "errors_connect": "connect",
    "errors_read": "read",
    "errors_write": "write",
    "errors_timeout": "timeout",
    "errors_status": "HTTP >= 400",
}


def _to_result(data: dict[str, float | int | bool]) -> LoadResult:
    kinds = {name: int(data[key]) for key, name in ERROR_KINDS.items() if int(data[key])}
    status_errors = int(data["errors_status"])
    return LoadResult(
        tool="wrk",
        ok=int(data["requests"]) - status_errors,
        errors=sum(kinds.values()),
        error_kinds=kinds,
        duration_s=float(data["duration_us"]) / 1e6,
        p50_ms=float(data["p50_us"]) / 1000,
        p99_ms=float(data["p99_us"]) / 1000,
        max_ms=float(data["max_us"]) / 1000,
        exhausted=bool(data["exhausted"]),
        sent=int(data["sent"]),
    )


def run_wrk(
    url: str,
    requests_file: Path,
    *,
    duration: float,
    threads: int = 1,
    connections: int = 32,
    mode: str = "stop",
) -> LoadResult:
    """One wrk run against `url`; bounded by -d and by a subprocess timeout."""
    if wrk_path() is None:
        raise WrkError(INSTALL_HINT)
    argv = wrk_argv(
        url, requests_file, threads=threads, connections=connections, duration=duration, mode=mode
    )
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
    if done.returncode != 0:
        raise WrkError(f"wrk exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return parse_result(done.stdout)
