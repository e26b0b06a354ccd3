"""`credyt-bridge demo` explains itself in 100 columns, and `demo --keep` keeps a folder
that holds what it says: the database and a config the read-only commands open."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from tests.helpers.processes import MODULE_COMMAND

SECRET_VARIABLES = ("CREDYT_API_KEY", "STRIPE_WEBHOOK_SECRET", "PADDLE_WEBHOOK_SECRET")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}
    return subprocess.run(
        [*MODULE_COMMAND, *args],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "100", "BRIDGE_CONFIG": ""},
        timeout=120,
    )


def test_demo_explains_each_step_and_keeps_what_it_says() -> None:
    demo = run("demo", "--keep")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    out = demo.stdout
    kept = Path(re.search(r"^kept (\S+): bridge.db and config.yaml", out, re.M).group(1))  # type: ignore[union-attr]
    try:
        assert all(len(line) <= 100 for line in out.splitlines()), out
        assert "delivery_retry_scheduled" not in out + demo.stderr  # no raw log lines
        lines = out.splitlines()

        def step(number: int) -> tuple[str, str]:
            at = next(n for n, line in enumerate(lines) if line.startswith(f"{number:>2}. "))
            return lines[at], lines[at + 1]

        assert "200 duplicate" in step(2)[0] and step(2)[1].strip() == "no new credit"
        assert step(3)[1].strip() == "same payment: no new credit"
        assert "injected" in step(5)[1] and "retries" in step(5)[1]
        # the taxed Paddle top-up: credited by `paid` (the example config's contract),
        # and what `amount: net` would credit for it, by a dry run of the rules
        at = lines.index(step(9)[0])
        said = " ".join(line.strip() for line in lines[at + 1 : at + 4])
        assert (
            "amount: paid (config.example.yaml, the documented contract) credits EUR 36.00" in said
        )
        assert "amount: net (nothing sent) would credit EUR 30.00 (36.00 less 6.00 VAT)" in said
        header = next(line for line in lines if line.startswith("step "))
        assert header.split()[:3] == ["step", "id", "status"] and "attempts" in header
        rows = {
            int(line.split()[0]): line.split() for line in lines if re.match(r"^ +\d+ +\d+ ", line)
        }
        assert sorted(rows) == [1, 4, 5, 6, 7, 9, 10]  # steps 2, 3 and 8 credit nothing
        attempts = header.split().index("attempts")
        assert rows[5][attempts] == "2"  # the injected 500, then the retry
        assert "demo passed" in out
        assert "Next steps" in out and "credyt-bridge events list --follow" in out

        assert sorted(p.name for p in kept.iterdir() if not p.name.startswith("bridge.db-")) == [
            "bridge.db",
            "config.yaml",
        ]
        listed = run("events", "list", "--json", "--config", str(kept / "config.yaml"))
        assert listed.returncode == 0, listed.stderr  # no secret variable is set
        assert len(json.loads(listed.stdout)) == 10 - 1  # step 2 is the stored duplicate
    finally:
        shutil.rmtree(kept, ignore_errors=True)
