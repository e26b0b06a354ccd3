"""What the commands share: the --config, --json and time options, the config and
store they open, and the BridgeError-to-message wrapper.
"""

from __future__ import annotations

import errno
import functools
import json
import socket
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import click

from bridge.config.loading import load_config
from bridge.config.schema import Config
from bridge.errors import BridgeError
from bridge.logs import configure_logging

if TYPE_CHECKING:
    from bridge.storage.store import Store


F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
CONFIG_HELP = "Config file (default: $BRIDGE_CONFIG)."
EVENT_STATUSES = ("pending", "processed", "ignored", "failed")
PORT = click.IntRange(1, 65535)  # 0 would listen on a random port without saying so
ADJUSTMENT_STATUSES = ("pending", "delivered", "dead", "held", "rejected")


def config_option(fn: F) -> F:
    return click.option(
        "--config",
        "config_path",
        envvar="BRIDGE_CONFIG",
        metavar="FILE",
        help=CONFIG_HELP,
    )(fn)


def require_config(config_path: str | None, *, secrets: bool = True) -> Config:
    """The config. `secrets=False` for commands that only touch the database: they run
    without the secrets' variables (`events list` needs no BRIDGE_ADMIN_TOKEN)."""
    if not config_path:
        raise click.ClickException("no config file: pass --config FILE or set BRIDGE_CONFIG")
    return load_config(config_path, resolve_secrets=secrets)


def bridge_errors(fn: F) -> F:
    """Turn a BridgeError into a one-line message and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BridgeError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(
        fn
    )


def on_terminal() -> bool:
    """True when a person watches: stderr is a terminal (progress bars, confirmations)."""
    return sys.stderr.isatty()


@contextmanager
def progress(items: Iterable[T], label: str, length: int | None = None) -> Iterator[Iterable[T]]:
    """`items`, drawn as a progress bar on stderr when it is a terminal; piped, unchanged
    (the command's summary line says what happened)."""
    if not on_terminal():
        yield items
        return
    with click.progressbar(
        items, length=length, label=label, file=sys.stderr, show_pos=True
    ) as bar:
        yield bar


@contextmanager
def progress_counter(label: str, length: int) -> Iterator[Callable[[], None]]:
    """A function to call after each of `length` steps: a progress bar on a terminal,
    nothing when piped."""
    if not on_terminal():
        yield lambda: None
        return
    with click.progressbar(length=length, label=label, file=sys.stderr, show_pos=True) as bar:
        yield lambda: bar.update(1)


def wide_option(fn: F) -> F:
    return click.option(
        "--wide",
        is_flag=True,
        help="Every column and whole lines (default: fit $COLUMNS or the terminal).",
    )(fn)


def table_width(wide: bool) -> int | None:
    """The characters a table may use: None (no limit) with --wide or into a pipe."""
    from bridge.operating.table_layout import terminal_width

    return None if wide else terminal_width()


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


@contextmanager
def existing_store(config: Config) -> Iterator[Store]:
    """The serving bridge's store, closed on the way out; see `open_existing_store`."""
    from bridge.operating.operations import open_existing_store

    configure_logging("warning")  # stderr; stdout is the command's answer
    store = open_existing_store(config.database)
    try:
        yield store
    finally:
        store.close()


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket listening on host:port, or one line saying why not (a busy port...)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        hint = {
            errno.EADDRINUSE: "another process listens there; stop it or pick another --port",
            errno.EACCES: "ports below 1024 need privileges; pick a --port above 1023",
            errno.EADDRNOTAVAIL: "this machine has no such address; check --host",
        }.get(exc.errno or 0, "check --host and --port")
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; {hint}"
        ) from None
    except (socket.gaierror, UnicodeError) as exc:
        sock.close()
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc}; check --host") from None
    sock.set_inheritable(True)
    return sock


def listening_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def moment_option(name: str, what: str) -> Callable[[F], F]:
    return click.option(
        name,
        metavar="WHEN",
        help=f"{what}: a duration ago (30m, 2h, 7d) or an ISO time (2026-11-24T09:00Z).",
    )


def optional_moment(text: str | None) -> float | None:
    from bridge.operating.operations import parse_moment

    return None if text is None else parse_moment(text)
