"""Helpers for the operator-tool tests: a config file on disk and the real command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import RunningBridge, config_text


def write_config(tmp_path: Path, sandbox_url: str, extra: str = "") -> Path:
    """The config a test bridge runs with, written where the CLI can read it."""
    path = tmp_path / "config.yaml"
    path.write_text(config_text(str(tmp_path / "bridge.db"), sandbox_url, extra))
    return path


def run_cli(
    config: Path, *args: str, ok: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m bridge ARGS` in a subprocess, with BRIDGE_CONFIG pointing at `config`."""
    proc = subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "BRIDGE_CONFIG": str(config), **(env or {})},
        cwd=config.parent,
        timeout=120,
    )
    if ok and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_json(config: Path, *args: str) -> Any:
    return json.loads(run_cli(config, *args).stdout)


def snapshot(running: RunningBridge) -> tuple[list[Any], list[Any]]:
    """Every event and adjustment row as stored, to show a command changed nothing."""
    store = running.bridge.store
    from bridge.storage.records import EventFilter

    return store.list_events(EventFilter(limit=10_000)), store.list_adjustments(limit=10_000)
