"""bench/cpu.py reads a process's CPU from /proc/<pid>/stat: the cost phase's figure (CPU
per payment) is only as right as that parse. A child burns a known amount of CPU; the
reading must grow by about that much, and a sampler must see it between two times."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

BENCH_CPU = Path(__file__).parents[2] / "bench" / "cpu.py"
BURN_S = 0.4

BURNER = f"""
import time, sys
sys.stdin.readline()
began = time.process_time()
while time.process_time() - began < {BURN_S}:
    pass
print("done", flush=True)
sys.stdin.readline()
"""

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_cpu", BENCH_CPU)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def test_a_childs_burned_cpu_shows_in_its_proc_reading_and_in_a_sampler() -> None:
    cpu = _load()
    argv = [sys.executable, "-c", BURNER]
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as child:
        assert child.stdin is not None and child.stdout is not None
        try:
            with cpu.CpuSampler(child.pid, interval=0.05) as sampler:
                before = cpu.cpu_seconds(child.pid)
                began = time.time()
                child.stdin.write("go\n")
                child.stdin.flush()
                assert child.stdout.readline().strip() == "done"
                ended = time.time()
                after = cpu.cpu_seconds(child.pid)
        finally:
            child.stdin.write("stop\n")
            child.stdin.flush()
            child.wait(timeout=10)
    burned = after - before
    # Clock ticks are 10 ms; the child also spends a little on its own loop around the burn.
    assert BURN_S - 0.05 <= burned <= BURN_S + 0.3
    _wall, sampled = sampler.between(began, ended)
    assert BURN_S - 0.15 <= sampled <= BURN_S + 0.3


def test_the_machine_line_names_cpu_cores_python_and_date() -> None:
    machine = _load().machine()
    assert set(machine) >= {"cpu", "cores", "python", "date"}
    assert machine["python"] == ".".join(map(str, sys.version_info[:3]))
    assert machine["cores"].isdigit()
