"""Running ASGI apps: uvicorn in a background thread or as a task, with bounded headers.

Used by `serve`, the demo, the benchmarks and the tests. The socket is bound before the
server starts, so its port is known (port 0 picks a free one) and nothing races for it.

Every server runs `BoundedHttpToolsProtocol`: uvicorn's httptools protocol, except that a
request head (request line and headers) over `MAX_HEADER_BYTES` or with more than
`MAX_HEADERS` headers gets 431 and the connection is closed, and a connection that has
not finished sending a request head `HEADER_TIMEOUT` seconds after it opened (or
after its last response) is closed (one sweep a second). httptools alone has no limit:
one 128 MiB header, parsed as it trickled in, held every other request up for seconds.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = structlog.get_logger("bridge.receiving.servers")

MAX_HEADER_BYTES = 64 * 1024  # the request line and every header of one request
MAX_HEADERS = 100
HEADER_TIMEOUT = 10.0  # seconds to send a whole request head


class _TooManyHeaders(Exception):
    pass


_END_OF_HEAD = b"\r\n\r\n"
SWEEP_EVERY = 1.0  # seconds between two looks for connections whose head is overdue


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bounded, timed request head (see the module).

    Kept cheap on the webhook path: one `find` per read while a head is coming in, no
    per-header callback, no timer per request. Overdue heads are found by one sweep a
    second over the server's connections."""

    max_header_bytes = MAX_HEADER_BYTES
    max_headers = MAX_HEADERS
    header_timeout = HEADER_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # reading a request head (none parsed yet on this connection)
        self._head_bytes = 0
        self._head_tail = b""  # the last bytes seen, for a terminator split across reads
        self._head_since = self.loop.time()
        self._refused = False
        self._too_many = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_since = self.loop.time()
        _start_sweeper(self)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head and not self._head_fits(data):
            self._refuse("request header fields too large")
            return
        super().data_received(data)

    def _head_fits(self, data: bytes) -> bool:
        tail = self._head_tail
        end = -1
        if tail:  # a terminator may start in the bytes already seen
            across = (tail + data[:3]).find(_END_OF_HEAD)
            if across != -1:
                end = across - len(tail)
        if end == -1:
            found = data.find(_END_OF_HEAD)
            if found == -1:
                self._head_bytes += len(data)
                self._head_tail = data[-3:]
                return self._head_bytes <= self.max_header_bytes
            end = found
        size = self._head_bytes + end + 4
        # the rest of `data` is the body (or a pipelined request, counted from its next read)
        self._in_head, self._head_bytes, self._head_tail = False, 0, b""
        return size <= self.max_header_bytes

    def on_headers_complete(self) -> None:
        self._in_head = False
        if len(self.headers) > self.max_headers:
            self._too_many = True
            raise _TooManyHeaders  # httptools stops parsing; send_400_response sends 431
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes, self._head_tail = True, 0, b""

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._head_since = self.loop.time()  # the next head has as long as the first

    def send_400_response(self, msg: str) -> None:
        if self._too_many:
            self._refuse("too many request header fields")
        else:
            super().send_400_response(msg)

    def _refuse(self, why: str) -> None:
        self._refused = True
        log.warning("request_head_refused", reason=why, client=_client(self.client))
        body = why.encode("ascii")
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        self.transport.close()

    def _overdue(self, now: float) -> bool:
        """Waiting for a head (not for the app's answer) for longer than the timeout."""
        waiting = self.cycle is None or self.cycle.response_complete
        return self._in_head and waiting and now - self._head_since > self.header_timeout

    def _time_out_head(self) -> None:
        if self._head_bytes or self._head_tail:  # an idle keep-alive says nothing
            log.info("request_head_timed_out", client=_client(self.client))
        self.transport.close()


def _start_sweeper(protocol: BoundedHttpToolsProtocol) -> None:
    """One sweep a second per server closes the connections whose head is overdue."""
    state = protocol.server_state
    if getattr(state, "_head_sweeper", None) is not None:
        return
    loop = protocol.loop

    def sweep() -> None:
        now = loop.time()
        for connection in list(state.connections):
            if (
                isinstance(connection, BoundedHttpToolsProtocol)
                and not connection.transport.is_closing()
                and connection._overdue(now)
            ):
                connection._time_out_head()
        state._head_sweeper = loop.call_later(SWEEP_EVERY, sweep)  # type: ignore[attr-defined]

    state._head_sweeper = loop.call_later(SWEEP_EVERY, sweep)  # type: ignore[attr-defined]


def bounded_protocol(
    *,
    max_header_bytes: int = MAX_HEADER_BYTES,
    max_headers: int = MAX_HEADERS,
    header_timeout: float = HEADER_TIMEOUT,
) -> type[BoundedHttpToolsProtocol]:
    """The protocol class with other limits (the tests use a short timeout)."""
    return type(
        "BoundedHttpToolsProtocol",
        (BoundedHttpToolsProtocol,),
        {
            "max_header_bytes": max_header_bytes,
            "max_headers": max_headers,
            "header_timeout": header_timeout,
        },
    )


def _client(client: Any) -> str | None:
    return f"{client[0]}:{client[1]}" if client else None


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio then sets TCP_NODELAY on accepted connections, which
    # keeps Nagle's algorithm from adding ~40 ms to every keep-alive request.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


def make_server(app: Any, **options: Any) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan=options.pop("lifespan", "on"),
        timeout_graceful_shutdown=options.pop("timeout_graceful_shutdown", 10),
        http=options.pop("http", BoundedHttpToolsProtocol),
        **options,
    )
    return uvicorn.Server(config)


@contextmanager
def serve_in_thread(
    app: Any, host: str = "127.0.0.1", port: int = 0, **options: Any
) -> Iterator[str]:
    """Serve `app` on a loopback socket in a daemon thread; yields its base URL."""
    sock = bind_socket(host, port)
    server = make_server(app, **options)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("server thread died before starting")
        threading.Event().wait(0.01)
    try:
        yield base_url(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
