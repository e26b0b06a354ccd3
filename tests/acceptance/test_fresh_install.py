"""The README's first command on a fresh machine: a new virtual environment,
`pip install -e ".[dev]"`, then `credyt-bridge demo` exits 0 and prints the balances.

It installs from the package index, so it is slow; it fails (never skips) when the
index can not be reached: CI has the index.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BALANCE_LINE = re.compile(r"^\s+cust_\w+\s+[A-Z]{3}\s+-?\d+(\.\d+)?\s+\[ok\]\s*$", re.M)


def clean_env() -> dict[str, str]:
    """This process's environment without anything that points at its own Python."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "BRIDGE_CONFIG")
    }
    env["PYTHONNOUSERSITE"] = "1"
    return env


def run(command: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command,
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, (
        f"{' '.join(command)} exited {result.returncode}\n"
        f"--- stdout ---\n{result.stdout[-5000:]}\n--- stderr ---\n{result.stderr[-5000:]}"
    )
    return result


@pytest.mark.slow
def test_fresh_venv_install_then_demo(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], tmp_path, 120)
    python = venv / "bin" / "python"
    assert python.exists()
    probe = subprocess.run(
        [str(python), "-c", "import bridge"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        check=False,
    )
    assert probe.returncode != 0, "the new environment must not see this one's packages"

    run([str(python), "-m", "pip", "install", "-e", f"{ROOT}[dev]"], tmp_path, 600)

    credyt_bridge = venv / "bin" / "credyt-bridge"
    assert credyt_bridge.exists(), "the install did not provide the credyt-bridge command"
    result = run([str(credyt_bridge), "demo"], tmp_path, 180)
    assert "demo passed" in result.stdout
    balances = BALANCE_LINE.findall(result.stdout)
    assert balances, f"no balance line in:\n{result.stdout}"
    assert "FAILED" not in result.stdout

    module = run([str(python), "-m", "bridge", "--help"], tmp_path, 60)
    assert "demo" in module.stdout
