"""httpcore streams whose "is the idle connection readable?" check is one poll(2).

httpcore asks every idle connection of a pool whether its socket is readable (the
server closed a kept-alive connection) twice per request, and each ask through its
anyio stream builds anyio's dict of socket attributes, then a new `select.poll`
object: about 200 µs of CPU per delivery measured at 200 payments/s. The streams
here answer the same question with one `poll(0)` on an object registered once per
socket; everything else goes to httpcore's own anyio streams unchanged.
"""

from __future__ import annotations

import select
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx
import structlog

log = structlog.get_logger("bridge.credyt.streams")

# httpcore's socket options: (level, name, value) or (level, name, None, length)
SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


class PolledStream(httpcore.AsyncNetworkStream):
    """An httpcore network stream that checks readability with a kept `select.poll`."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: socket.socket | None = inner.get_extra_info("socket")
        self._poll: Any = None  # select.poll, registered with `_fd`
        self._fd = -1

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return PolledStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return self.is_readable()
        return self._inner.get_extra_info(info)

    def is_readable(self) -> bool:
        """What httpcore's `is_socket_readable` answers: True when a read would not
        block (data or the server's close), or when there is no socket any more."""
        fd = -1 if self._socket is None else self._socket.fileno()
        if fd < 0:
            return True
        if fd != self._fd:
            self._poll = select.poll()
            self._poll.register(fd, select.POLLIN)
            self._fd = fd
        return bool(self._poll.poll(0))


class PolledBackend(httpcore.AsyncNetworkBackend):
    """httpcore's anyio backend, its streams wrapped in `PolledStream`."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return PolledStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_unix_socket(path, timeout, socket_options)
        return PolledStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def poll_idle_connections(client: httpx.AsyncClient) -> bool:
    """Give `client`'s connection pool the `PolledBackend` (before its first request).

    httpx does not pass a network backend through; its pool is httpcore's, whose
    connections take the backend from the pool when they are opened. An httpx or
    httpcore whose pool is laid out otherwise keeps its own check (False): only a
    little more CPU, never a failure to start."""
    pool = getattr(client._transport, "_pool", None)
    if not isinstance(pool, httpcore.AsyncConnectionPool) or not hasattr(pool, "_network_backend"):
        log.info("credyt_pool_poll_skipped", pool=type(pool).__name__)
        return False
    pool._network_backend = PolledBackend()
    return True
