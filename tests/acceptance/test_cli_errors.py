"""Every failure on the command line is one `Error: ...` line that says what to do, never a
traceback or a silent exit: a config that is not UTF-8, a busy port for `sandbox` and
`serve`, a port out of range, an empty `${VAR}`, a database folder the user cannot write.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import config_text
from tests.helpers.processes import MODULE_COMMAND, free_port, serve_command


def run(
    *args: str, env: dict[str, str] | None = None, user: int | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MODULE_COMMAND, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        user=user,
    )


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The one `Error:` line of a failed command (no traceback anywhere)."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    [line] = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    return line


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_config_with_a_byte_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    text = config_text(str(tmp_path / "bridge.db"), "http://127.0.0.1:9")
    path.write_bytes(text.replace("connectors:", "# caf\xe9\nconnectors:").encode("latin-1"))
    line = error_line(run("check", "--config", str(path)))
    wanted = text.splitlines().index("connectors:") + 1
    assert line == f"Error: {path}:{wanted}: not UTF-8 (byte 0xe9); save the file as UTF-8"
    assert error_line(run("events", "list", "--config", str(path))) == line


def test_sandbox_on_a_busy_port_is_one_line(busy_port: int) -> None:
    line = error_line(run("sandbox", "--port", str(busy_port)))
    assert f"cannot listen on 127.0.0.1:{busy_port}: Address already in use" in line
    assert "pick another --port" in line


def test_serve_on_a_busy_port_is_one_line(tmp_path: Path, busy_port: int) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(config_text(str(tmp_path / "bridge.db"), "http://127.0.0.1:9"))
    proc = run(*serve_args(config, busy_port))
    line = error_line(proc)
    assert f"cannot listen on 127.0.0.1:{busy_port}: Address already in use" in line
    assert proc.returncode == 1


@pytest.mark.parametrize("command", ["serve", "sandbox"])
@pytest.mark.parametrize("port", ["99999", "0", "-1"])
def test_a_port_out_of_range_is_refused_not_replaced(command: str, port: str) -> None:
    line = error_line(run(command, "--port", port))
    assert line.startswith("Error: Invalid value for '--port'")
    assert "1<=x<=65535" in line


def test_an_empty_variable_is_reported_as_empty(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    text = config_text(str(tmp_path / "bridge.db"), "http://127.0.0.1:9")
    config.write_text(text.replace("api_key: key_test_sandbox", "api_key: ${T_EMPTY_KEY}"))
    line = error_line(run("check", "--config", str(config), env={"T_EMPTY_KEY": ""}))
    assert "credyt.api_key: environment variable T_EMPTY_KEY is empty" in line
    unset = run("check", "--config", str(config), env={})
    assert "T_EMPTY_KEY is not set" in error_line(unset)


def serve_args(config: Path, port: int) -> list[str]:
    return serve_command(config, port, command=MODULE_COMMAND)[len(MODULE_COMMAND) :]


NO_OVERRIDE = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search"]


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="drops root's permission override with setpriv, as a container's user has none",
)
def test_a_database_folder_the_user_cannot_write_names_the_uid(tmp_path: Path) -> None:
    data = tmp_path / "data"  # a bind mount the bridge's user does not own
    data.mkdir(mode=0o555)
    config = tmp_path / "config.yaml"
    config.write_text(config_text(str(data / "bridge.db"), "http://127.0.0.1:9"))
    proc = subprocess.run(
        [*NO_OVERRIDE, *serve_command(config, free_port(), command=MODULE_COMMAND)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    line = error_line(proc)
    assert f"the database {data / 'bridge.db'} is not writable by uid 0" in line
    assert f"sudo chown -R 0 {data}" in line and "the Docker image runs as uid 10001" in line
    assert not (data / "bridge.db").exists()
