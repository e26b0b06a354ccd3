"""The Credyt client's pools see a server's close of an idle connection, as httpcore's do.

`PolledStream` answers httpcore's "is this idle connection readable?" with a kept
poll object; a wrong answer would send the next request down a closed connection.
"""

from __future__ import annotations

import asyncio

import httpx

from bridge.credyt.streams import PolledBackend, PolledStream, poll_idle_connections

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


async def _wait_readable(stream: PolledStream, want: bool) -> None:
    for _ in range(500):  # the peer's bytes or close cross the loopback
        if stream.is_readable() is want:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"is_readable never became {want}")


def test_polled_stream_sees_data_and_close() -> None:
    async def scenario() -> None:
        peers: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()

        async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await peers.put(writer)

        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        stream = await PolledBackend().connect_tcp("127.0.0.1", port, timeout=5)
        assert isinstance(stream, PolledStream)
        peer = await peers.get()
        assert stream.get_extra_info("is_readable") is False  # nothing sent yet
        peer.write(b"x")
        await peer.drain()
        await _wait_readable(stream, True)
        assert await stream.read(1, timeout=5) == b"x"
        assert stream.is_readable() is False  # read: nothing left
        peer.close()
        await peer.wait_closed()
        await _wait_readable(stream, True)  # the close reads as b""
        assert await stream.read(1, timeout=5) == b""
        await stream.aclose()
        assert stream.is_readable() is True  # no socket any more: as httpcore says
        server.close()
        await server.wait_closed()

    asyncio.run(scenario())


def test_a_pool_does_not_reuse_a_connection_the_server_closed() -> None:
    async def scenario() -> None:
        connections = 0
        closed = asyncio.Event()

        finished = 0  # handlers done: each closes its writer before the loop ends

        async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections, finished
            connections += 1
            try:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(ANSWER)  # HTTP/1.1 without `Connection: close`: kept alive
                await writer.drain()
                await asyncio.sleep(0.05)  # the client has read its answer and pooled it
            finally:
                writer.close()
                await writer.wait_closed()
                finished += 1
            closed.set()

        server = await asyncio.start_server(answer_once, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}")
        assert poll_idle_connections(client)
        first = await client.get("/")
        assert first.text == "ok"
        await closed.wait()
        await asyncio.sleep(0.05)  # the FIN has crossed the loopback
        second = await client.get("/")  # a new connection, not the closed one
        assert second.text == "ok"
        assert connections == 2
        await client.aclose()
        for _ in range(500):  # the second handler's close, before the loop is gone
            if finished == connections:
                break
            await asyncio.sleep(0.01)
        server.close()
        await server.wait_closed()

    asyncio.run(scenario())
