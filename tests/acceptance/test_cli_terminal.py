"""Long operations on a terminal and in a pipe: a progress bar and a confirmation for a
person (the command runs on a pseudo-terminal), plain summary lines for a script; and
`backfill stripe --event`, which fetches single events like `stripe events resend`."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.acceptance.test_backfill import (
    backfill_config,
    psp_api,
    stripe_invoice_event,
)
from tests.conftest import RunningBridge, Sandbox
from tests.helpers.operator import run_cli
from tests.helpers.processes import MODULE_COMMAND
from tests.helpers.psp_api import STRIPE_KEY, PspApi

__all__ = ["psp_api"]  # the fixture, shared with test_backfill


def on_terminal(
    config: Path, *args: str, answer: str = "", env: dict[str, str] | None = None
) -> tuple[int, str]:
    """`python -m bridge ARGS` with stdin, stdout and stderr on a pseudo-terminal; typed
    `answer` once it asks; its exit status and everything it showed."""
    main, secondary = pty.openpty()
    process = subprocess.Popen(
        [*MODULE_COMMAND, *args],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env={**os.environ, "BRIDGE_CONFIG": str(config), "COLUMNS": "100", **(env or {})},
        cwd=config.parent,
    )
    os.close(secondary)
    shown = b""
    answered = not answer
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # the command exited and closed the terminal
                break
            if not chunk:
                break
            shown += chunk
            if not answered and b"[y/N]" in shown:
                os.write(main, answer.encode() + b"\n")
                answered = True
        elif process.poll() is not None:
            break
    os.close(main)
    return process.wait(timeout=10), shown.decode(errors="replace")


def failed_events(running: RunningBridge, count: int) -> None:
    from connectors import stripe

    for n in range(count):
        event = stripe.sample_event(
            "invoice.paid",
            event_id=f"evt_tty_{n}",
            object_id=f"in_tty_{n}",
            psp_customer="cus_tty_unknown",
            amount_minor=100,
            currency="usd",
        )
        assert running.send_stripe(event).status_code == 200
    running.settle()


def test_bulk_replay_asks_on_a_terminal_and_yes_skips_the_question(
    make_bridge: Callable[..., RunningBridge],
    sandbox: Sandbox,
    tmp_path: Path,
    psp_api: tuple[PspApi, str],
) -> None:
    config = backfill_config(tmp_path, sandbox.url, psp_api[1])
    running = make_bridge(config=config.read_text())
    failed_events(running, 3)
    code, shown = on_terminal(config, "replay", "--status", "failed", answer="n")
    assert "replay 3 failed event(s) with the current rules?" in shown
    assert code == 1 and "Aborted" in shown
    assert running.bridge.store.get_event("evt_tty_0").attempts == 1  # type: ignore[union-attr]

    sandbox.state.add_customer(external_id="cus_tty_unknown")
    code, shown = on_terminal(config, "replay", "--status", "failed", "--yes")
    assert code == 0, shown
    assert "[y/N]" not in shown
    assert "replaying" in shown and "3/3" in shown  # the progress bar
    assert "3 event(s) replayed; left 3 processed" in shown

    piped = run_cli(config, "replay", "--status", "processed", "--dry-run")
    assert "[y/N]" not in piped.stdout + piped.stderr and piped.stderr == ""


def test_backfill_draws_progress_on_a_terminal_only_and_fetches_single_events(
    make_bridge: Callable[..., RunningBridge],
    sandbox: Sandbox,
    tmp_path: Path,
    psp_api: tuple[PspApi, str],
) -> None:
    api, api_url = psp_api
    config = backfill_config(tmp_path, sandbox.url, api_url)
    running = make_bridge(config=config.read_text())
    customer = sandbox.state.add_customer()
    api.stripe_events = [stripe_invoice_event(n, customer, age=60 * n) for n in range(1, 4)]
    env = {"STRIPE_API_KEY": STRIPE_KEY}

    one = run_cli(config, "backfill", "stripe", "--event", "evt_bf_002", env=env)
    assert one.stdout.splitlines() == [
        "stripe: 1 event(s) fetched; 1 were missing and are stored for processing; "
        "0 already stored",
        "  stored evt_bf_002",
    ]
    assert one.stderr == ""
    running.settle()
    assert running.bridge.store.get_event("evt_bf_002") is not None
    assert running.bridge.store.get_event("evt_bf_001") is None

    missing = run_cli(config, "backfill", "stripe", "--event", "evt_nope", ok=False, env=env)
    assert missing.returncode == 1
    assert missing.stderr.startswith("Error: Stripe has no event 'evt_nope'")
    both = run_cli(config, "backfill", "stripe", "--event", "evt_bf_001", "--since", "1d", ok=False)
    assert "give --since DURATION or --event EVENT_ID" in both.stderr

    code, shown = on_terminal(config, "backfill", "stripe", "--since", "1d", env=env)
    assert code == 0, shown
    assert "listing stripe events" in shown  # the progress bar, on a terminal
    assert "2 were missing and are stored for processing; 1 already stored" in shown


def test_prune_shows_its_running_counts_on_a_terminal_only(
    make_bridge: Callable[..., RunningBridge],
    sandbox: Sandbox,
    tmp_path: Path,
    psp_api: tuple[PspApi, str],
) -> None:
    config = backfill_config(tmp_path, sandbox.url, psp_api[1])
    running = make_bridge(config=config.read_text())
    customer = sandbox.state.add_customer()
    event = stripe_invoice_event(1, customer, age=60)
    assert running.send_stripe(event).status_code == 200
    running.settle()
    assert running.bridge.store.list_adjustments("delivered")  # something prune may take

    code, shown = on_terminal(config, "prune", "--older-than", "1d")
    assert code == 0, shown
    # the running counts after each batch, then the summary line
    assert "pruning: 0 adjustments, 0 attempts, 0 events so far" in shown
    assert "pruned rows older than 1 days: 0 adjustments, 0 attempts, 0 events" in shown

    piped = run_cli(config, "prune", "--older-than", "1d")
    assert "pruning:" not in piped.stdout + piped.stderr
    assert piped.stdout.startswith("pruned rows older than 1 days:")
