"""Servers under test as subprocesses on loopback, and their memory (measures RSS).

Each server runs in its own process so it never shares a GIL with the load generator
or the harness. Peak memory is the kernel's high-water mark of the server's resident
set (`VmHWM` in /proc/<pid>/status), read just before the server is stopped, so it
covers everything the server did since it started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"


class ServerError(RuntimeError):
    """A server under test did not start; the message ends with its log's tail."""


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    peak_rss_mb: float | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _status_kb(pid: int, field: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def peak_rss_mb(pid: int) -> float | None:
    """The process's resident-set high-water mark so far, in MiB (Linux only)."""
    kb = _status_kb(pid, "VmHWM")
    return None if kb is None else kb / 1024


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _answers(url: str, need_2xx: bool) -> bool:
    """True once the server answers HTTP (with a 2xx if `need_2xx`)."""
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError as exc:
        exc.close()
        return not need_2xx
    except OSError:
        return False


def wait_ready(server: Server, ready_path: str | None, timeout: float) -> None:
    """Until GET `ready_path` answers 2xx (None: until the port answers HTTP at all)."""
    url = server.url + (ready_path or "/")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise ServerError(
                f"{server.name} exited with {server.proc.returncode}:\n{log_tail(server.log_path)}"
            )
        if _answers(url, need_2xx=ready_path is not None):
            return
        time.sleep(0.05)
    raise ServerError(f"{server.name} not ready after {timeout:g} s:\n{log_tail(server.log_path)}")


def start(
    name: str,
    argv: Sequence[str],
    port: int,
    log_dir: Path,
    *,
    ready_path: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 30,
) -> Server:
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    server = Server(name, proc, port, log_path)
    try:
        wait_ready(server, ready_path, timeout)
    except BaseException:
        stop(server)
        raise
    return server


def stop(server: Server, timeout: float = 10) -> None:
    """Record the peak RSS, then SIGINT (graceful), SIGTERM, SIGKILL: this process only."""
    if server.proc.poll() is None:
        server.peak_rss_mb = peak_rss_mb(server.pid)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if server.proc.poll() is not None:
            return
        server.proc.send_signal(sig)
        try:
            server.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def running(
    name: str,
    argv: Sequence[str],
    port: int,
    log_dir: Path,
    *,
    ready_path: str | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Server]:
    server = start(name, argv, port, log_dir, ready_path=ready_path, env=env)
    try:
        yield server
    finally:
        stop(server)
