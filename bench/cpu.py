"""CPU time of a process from /proc, and the machine a run is on (measures nothing itself).

`cpu_seconds(pid)` is utime + stime of /proc/<pid>/stat (fields 14 and 15, in clock
ticks), so a phase can take the CPU a server spent between two moments and divide it
by the requests it served then. `CpuSampler` reads it every `interval` seconds in a
thread while a load runs, so the steady part of a run (after its start, before its
tail) can be picked afterwards from wall-clock times. `machine()` says where the
figures come from: CPU model, cores, Python, date.
"""

from __future__ import annotations

import os
import platform
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used so far (Linux only)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / TICKS_PER_SECOND


@dataclass
class CpuSampler:
    """(time.time(), cpu_seconds) of `pid` every `interval` s while the `with` block runs."""

    pid: int
    interval: float = 0.25
    samples: list[tuple[float, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _sample(self) -> None:
        try:
            self.samples.append((time.time(), cpu_seconds(self.pid)))
        except (OSError, ValueError, IndexError):
            pass  # the process has exited: keep what was read

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> CpuSampler:
        self._sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()

    def between(self, began: float, ended: float) -> tuple[float, float]:
        """(wall seconds, CPU seconds) between the samples nearest `began` and `ended`."""
        if len(self.samples) < 2:
            raise RuntimeError("fewer than two CPU samples")
        first = min(self.samples, key=lambda s: abs(s[0] - began))
        last = min(self.samples, key=lambda s: abs(s[0] - ended))
        if last[0] <= first[0]:
            raise RuntimeError("the steady part of the run is shorter than one CPU sample")
        return last[0] - first[0], last[1] - first[1]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, str]:
    """Where a run's figures come from (printed above the table and kept in --json)."""
    return {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load": f"{os.getloadavg()[0]:.2f}",
    }
