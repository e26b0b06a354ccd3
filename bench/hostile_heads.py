"""Signed webhooks' latency while hostile request heads are in flight (prints figures).

    python bench/hostile_heads.py                  # bounded (what serve runs) and plain
    python bench/hostile_heads.py --protocol bounded --slow 3000 --huge-mib 128

For each protocol the bridge runs in a subprocess on a free 127.0.0.1 port (with the
Credyt sandbox in a thread of that process). The load generator first sends signed
`invoice.paid` webhooks at a fixed rate on a quiet server, then again while
  - one connection sends a request head with a `--huge-mib` MiB header as fast as it can,
  - `--slow` connections each send a partial head and then one header line per second.
(from a second process, so their sockets do not slow the sender). It prints
p50/p99/max of the webhooks and how each hostile connection ended. Every
phase is bounded in time (`--seconds`); the server is stopped at the end. Not a test:
it asserts nothing, it reports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SECRET = "whsec_bench_" + "h" * 32
API_KEY = "key_bench_hostile"
CONFIG = """
database: {database}
log_level: warning
credyt:
  api_url: {api_url}
  api_key: {api_key}
connectors:
  stripe:
    type: stripe
    secrets: ["{secret}"]
    rules:
      - name: subscription-payment
        on: invoice.paid
        credit:
          amount: paid
"""


HEADER_TIMEOUT = 10.0  # bridge.servers.HEADER_TIMEOUT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the server process ----------------------------------------------------------------


def serve(protocol: str, port: int, folder: str) -> None:
    """Run in the subprocess: the sandbox in a thread, the bridge on `port`."""
    from bridge.config.loading import parse_config
    from bridge.credyt.sandbox import SandboxState, create_sandbox_app
    from bridge.logs import configure_logging
    from bridge.receiving.servers import (
        BoundedHttpToolsProtocol,
        bind_socket,
        make_server,
        serve_in_thread,
    )
    from bridge.service import Bridge

    configure_logging("warning")
    state = SandboxState()
    state.add_customer(customer_id="cust_bench")
    with serve_in_thread(create_sandbox_app(state, api_key=API_KEY)) as sandbox_url:
        text = CONFIG.format(
            database=os.path.join(folder, "bridge.db"),
            api_url=sandbox_url,
            api_key=API_KEY,
            secret=SECRET,
        )
        bridge = Bridge(parse_config(text, os.path.join(folder, "config.yaml")))
        http = BoundedHttpToolsProtocol if protocol == "bounded" else "httptools"
        server = make_server(bridge.app, http=http, backlog=4096)
        sock = bind_socket("127.0.0.1", port)
        asyncio.run(server.serve(sockets=[sock]))


# -- the load generator ----------------------------------------------------------------


async def one_webhook(port: int, index: int, tag: str) -> float:
    from connectors import stripe

    event = stripe.sample_event(
        "invoice.paid",
        event_id=f"evt_{tag}_{index}",
        object_id=f"in_{tag}_{index}",
        customer="cust_bench",
    )
    body = json.dumps(event).encode()
    headers = stripe.sign(body, SECRET)
    head = (
        f"POST /webhooks/stripe HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        + "\r\n"
    ).encode()
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + body)
    await writer.drain()
    status = await reader.readline()
    writer.close()
    elapsed = time.perf_counter() - started
    if b" 200 " not in status:
        raise RuntimeError(f"webhook answered {status!r}")
    return elapsed


async def webhooks_at_rate(port: int, rate: float, seconds: float, tag: str) -> list[float]:
    """Open loop: one webhook every 1/rate s; latency from its due time."""
    tasks = []
    start = time.perf_counter()
    count = int(rate * seconds)
    for i in range(count):
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))

        async def timed(i: int = i, due: float = due) -> float:
            await one_webhook(port, i, tag)
            return time.perf_counter() - due

        tasks.append(asyncio.create_task(timed()))
    return list(await asyncio.gather(*tasks))


async def huge_head(port: int, mib: int, seconds: float) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Huge: ")
    chunk = b"h" * (1024 * 1024)
    sent = 0
    deadline = time.monotonic() + seconds
    try:
        while sent < mib and time.monotonic() < deadline:
            writer.write(chunk)
            await writer.drain()
            sent += 1
        if sent == mib:
            writer.write(b"\r\n\r\n")
            await writer.drain()
        answer = await asyncio.wait_for(reader.readline(), max(0.1, deadline - time.monotonic()))
        result = f"sent {sent} MiB, answer {answer.decode(errors='replace').strip() or 'none'}"
    except (ConnectionError, TimeoutError) as exc:
        result = f"sent {sent} MiB, then {type(exc).__name__}"
    writer.close()
    return result


async def slow_head(port: int, seconds: float, ended: dict[str, int]) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        ended["could not connect"] = ended.get("could not connect", 0) + 1
        return
    outcome = "still open at the end"
    deadline = time.monotonic() + seconds
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        while time.monotonic() < deadline:
            try:
                if await asyncio.wait_for(reader.read(1), 1.0) == b"":
                    outcome = "closed by the server"
                    break
                outcome = "answered"
                break
            except TimeoutError:
                pass
            writer.write(b"X-Slow: 1\r\n")  # one header line a second
            await writer.drain()
    except ConnectionError:
        outcome = "closed by the server"
    writer.close()
    ended[outcome] = ended.get(outcome, 0) + 1


def summary(latencies: list[float]) -> str:
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"n={len(ms)} p50={statistics.median(ms):.1f} ms p99={p99:.1f} ms max={ms[-1]:.1f} ms"


async def hostile(port: int, args: argparse.Namespace) -> None:
    """Run in its own process (so its 3,000 sockets do not slow the webhook sender)."""
    ended: dict[str, int] = {}
    # the slow heads outlive the server's header timeout (10 s), to see it cut them off
    seconds = max(args.seconds + 4, HEADER_TIMEOUT + 4)
    slow = [asyncio.create_task(slow_head(port, seconds, ended)) for _ in range(args.slow)]
    await asyncio.sleep(1.0)  # let the slow connections open
    print(f"huge head: {await huge_head(port, args.huge_mib, seconds)}", flush=True)
    await asyncio.gather(*slow)
    print(f"slow heads: {ended}", flush=True)


async def measure(port: int, args: argparse.Namespace, protocol: str) -> None:
    await webhooks_at_rate(port, args.rate, 1.0, f"{protocol}_warmup")
    quiet = await webhooks_at_rate(port, args.rate, args.seconds, f"{protocol}_quiet")
    print(f"{protocol:8} quiet:   {summary(quiet)}", flush=True)
    attacker = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--hostile",
        "--port",
        str(port),
        "--slow",
        str(args.slow),
        "--huge-mib",
        str(args.huge_mib),
        "--seconds",
        str(args.seconds),
        stdout=asyncio.subprocess.PIPE,
    )
    await asyncio.sleep(1.5)  # the slow connections are open, the huge head is on its way
    busy = await webhooks_at_rate(port, args.rate, args.seconds, f"{protocol}_hostile")
    print(f"{protocol:8} hostile: {summary(busy)}", flush=True)
    out, _ = await attacker.communicate()
    for line in out.decode().splitlines():
        print(f"{protocol:8} {line}", flush=True)


def run(protocol: str, args: argparse.Namespace) -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", protocol, "--port", str(port), "--dir", folder],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("the bridge did not start") from None
                    time.sleep(0.1)
            asyncio.run(asyncio.wait_for(measure(port, args, protocol), args.seconds * 3 + 30))
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=["bounded", "plain", "both"], default="both")
    parser.add_argument("--slow", type=int, default=3000, help="slow connections")
    parser.add_argument("--huge-mib", type=int, default=128, help="size of the huge header")
    parser.add_argument("--rate", type=float, default=100.0, help="signed webhooks per second")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each phase")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--hostile", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.serve:
        serve(args.serve, args.port, args.dir)
        return
    if args.hostile:
        asyncio.run(hostile(args.port, args))
        return
    for protocol in ("bounded", "plain") if args.protocol == "both" else (args.protocol,):
        run(protocol, args)


if __name__ == "__main__":
    main()
