"""`events list --follow`: a live view of each webhook and its adjustments, next to a real
`credyt-bridge serve` that logs the address it listens on when it starts."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

import httpx

from connectors import stripe
from tests.conftest import STRIPE_SECRET, Sandbox, config_text
from tests.helpers.processes import MODULE_COMMAND, ServeProcess


class Lines:
    """A subprocess's stdout, line by line, read in a thread so a test can wait with a
    deadline instead of blocking on a pipe."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.queue: queue.Queue[str] = queue.Queue()
        assert process.stdout is not None
        stdout = process.stdout
        threading.Thread(target=self._read, args=(stdout,), daemon=True).start()

    def _read(self, stdout: IO[str]) -> None:
        for line in stdout:
            self.queue.put(line)

    def until(self, *wanted: str, timeout: float = 20) -> list[str]:
        """Every line until each of `wanted` has been in one."""
        seen: list[str] = []
        missing = set(wanted)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.queue.get(timeout=0.1).rstrip("\n")
            except queue.Empty:
                continue
            seen.append(line)
            missing -= {w for w in missing if w in line}
            if not missing:
                return seen
        self.process.kill()
        _, errors = self.process.communicate()
        raise AssertionError(f"no line with {wanted!r} within {timeout}s; saw {seen}; {errors}")


def paid(event_id: str, customer: str | None, psp_customer: str = "cus_live") -> bytes:
    event = stripe.sample_event(
        "invoice.paid",
        event_id=event_id,
        object_id="in_" + event_id,
        customer=customer,
        psp_customer=psp_customer,
        amount_minor=4250,
        currency="usd",
    )
    return json.dumps(event).encode()


def follow_command(config: Path, *args: str) -> subprocess.Popen[str]:
    """`events list --follow ARGS` at 100 columns, once it says it is following."""
    process = subprocess.Popen(
        [*MODULE_COMMAND, "events", "list", "--follow", "--config", str(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "100"},
    )
    assert process.stderr is not None
    assert "following events in" in process.stderr.readline()  # from here on it shows
    return process


def send(serve: ServeProcess, body: bytes) -> None:
    headers = stripe.sign(body, STRIPE_SECRET)
    answer = httpx.post(f"{serve.url}/webhooks/stripe", content=body, headers=headers)
    assert answer.status_code == 200


def test_follow_prints_each_webhook_and_its_delivery_as_it_happens(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(config_text(str(tmp_path / "bridge.db"), sandbox.url))
    log = tmp_path / "serve.log"
    serve = ServeProcess(config, log)
    try:
        assert "bridge_listening" in log.read_text() and serve.url in log.read_text()
        with follow_command(config) as follow:
            lines = Lines(follow)
            customer = sandbox.state.add_customer()
            send(serve, paid("evt_live_ok", customer))
            send(serve, paid("evt_live_bad", None, "cus_nobody"))
            seen = lines.until("evt_live_bad  failed", ": delivered (Credyt 201)")
            follow.send_signal(signal.SIGINT)
            assert follow.wait(timeout=10) == 0
    finally:
        serve.kill()
    ok = [line for line in seen if "evt_live_ok" in line]
    assert ok[-1].endswith("stripe  invoice.paid  evt_live_ok  processed"), ok
    credit = next(line for line in seen if "delivered" in line)
    assert f"#1 payment 42.5 USD to {customer}: delivered" in credit, credit
    bad = next(line for line in seen if "evt_live_bad  failed" in line)
    assert len(bad) == 100 and bad.endswith("…")  # the reason is cut at the width
    assert all(len(line) <= 100 for line in seen)


def test_follow_with_json_prints_one_object_a_line(tmp_path: Path, sandbox: Sandbox) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(config_text(str(tmp_path / "bridge.db"), sandbox.url))
    serve = ServeProcess(config, tmp_path / "serve.log")
    try:
        with follow_command(config, "--json") as follow:
            lines = Lines(follow)
            send(serve, paid("evt_live_json", sandbox.state.add_customer()))
            changes = [json.loads(line) for line in lines.until('"status": "delivered"')]
            follow.terminate()
            assert follow.wait(timeout=10) == 0
    finally:
        serve.kill()
    assert {c["event_id"] for c in changes} == {"evt_live_json"}
    assert changes[-1]["adjustment"]["amount"] == "42.5"
    assert changes[-1]["event_status"] == "processed"
