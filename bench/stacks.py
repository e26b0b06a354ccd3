"""A fresh bridge stack for one phase: `credyt-bridge sandbox` and `credyt-bridge serve`.

Each its own subprocess on a free loopback port, the bridge with a fresh database
(unless one is given) and the config of bridge_contract.py. Measures nothing itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import bridge_contract as bc
import procs
from harness import Context
from procs import Server


@dataclass
class Stack:
    bridge: Server
    sandbox: Server
    config: Path
    database: Path


@contextmanager
def stack(ctx: Context, name: str, database: Path | None = None) -> Iterator[Stack]:
    """A sandbox and a bridge (fresh database unless given) on free loopback ports."""
    workdir = ctx.subdir(name)
    database = database or workdir / "bridge.db"
    sandbox_port, bridge_port = procs.free_port(), procs.free_port()
    with procs.running(
        f"{name}-sandbox",
        bc.sandbox_argv(sandbox_port),
        sandbox_port,
        ctx.log_dir,
        ready_path=bc.SANDBOX_READY_PATH,
    ) as sandbox:
        config = workdir / "bridge.yaml"
        config.write_text(bc.config_text(database, sandbox.url, ctx.settings.secret))
        with procs.running(
            f"{name}-bridge",
            bc.serve_argv(config, bridge_port),
            bridge_port,
            ctx.log_dir,
            ready_path=bc.BRIDGE_READY_PATH,
        ) as bridge:
            yield Stack(bridge, sandbox, config, database)
