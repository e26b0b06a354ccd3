"""The bridge as a real process: a free loopback port, the installed command, and
`credyt-bridge serve` started and waited for."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bridge.service import HTTP_DRAIN, SHUTDOWN_GRACE
from tests.conftest import wait_until

# Stopping takes the HTTP drain plus the workers' grace at the very most.
STOP_LIMIT = HTTP_DRAIN + SHUTDOWN_GRACE + 5
# The bridge run from the source tree's package rather than the installed script.
MODULE_COMMAND = [sys.executable, "-m", "bridge"]


def free_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bridge_command() -> list[str]:
    """The installed `credyt-bridge` console script (next to the interpreter running the
    tests, else on PATH), else `python -m bridge`."""
    script = Path(sys.executable).with_name("credyt-bridge")
    if script.exists():
        return [str(script)]
    found = shutil.which("credyt-bridge")
    return [found] if found else [sys.executable, "-m", "bridge"]


def serve_command(config: Path, port: int, command: list[str] | None = None) -> list[str]:
    """`credyt-bridge serve` on 127.0.0.1:`port` with `config`; `command` replaces the
    installed script (say, `MODULE_COMMAND`)."""
    return [
        *(command or bridge_command()),
        "serve",
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


def answers(
    url: str, process: subprocess.Popen[bytes], output: Callable[[], str] = lambda: ""
) -> bool:
    """`url` answers 200; an AssertionError with `output` if the process has exited."""
    code = process.poll()
    assert code is None, f"{process.args!r} exited {code}:\n{output()}"
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_answering(
    url: str,
    process: subprocess.Popen[bytes],
    timeout: float = 30,
    output: Callable[[], str] = lambda: "",
) -> None:
    """Until `url` answers 200 while `process` runs."""
    wait_until(lambda: answers(url, process, output), timeout, url)


class ServeProcess:
    """`credyt-bridge serve` in a subprocess, its output in a log file."""

    def __init__(self, config: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.output = log.open("a")
        self.process = subprocess.Popen(
            serve_command(config, self.port), stdout=self.output, stderr=subprocess.STDOUT
        )
        wait_answering(f"{self.url}/healthz", self.process, 30, self.log.read_text)

    def stop(self, signum: int) -> tuple[int, float]:
        """Send the signal; the exit status and how long the stop took."""
        started = time.monotonic()
        self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout=STOP_LIMIT + 10)
        finally:
            self.kill()
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.output.close()
