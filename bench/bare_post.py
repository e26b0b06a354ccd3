"""The floor of a delivery: bare httpx POSTs of adjustments to the Credyt sandbox.

Run as its own process (the harness starts it beside a `credyt-bridge sandbox`):

    python bench/bare_post.py --url http://127.0.0.1:8090 --count 5000 --rate 200

posts `count` adjustments (each its own transaction_id, the body the bridge sends) with
one `httpx.AsyncClient` on uvloop, the way the bridge's deliverer runs: at `rate` per
second on a fixed schedule, or as fast as `concurrency` requests in flight allow
(`--rate 0`). It prints one line, `BARE_POST {json}`: posts, 201s, wall seconds, and
the CPU seconds this process spent posting (user + system, imports and start-up left
out), so the bridge's cost per payment can be compared with what one POST costs at all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

import httpx
import uvloop

RESULT_PREFIX = "BARE_POST "
API_KEY = "key_sandbox"


def adjustment(index: int) -> bytes:
    body = {
        "transaction_id": str(uuid.uuid4()),
        "asset": "USD",
        "amount": 20.00,
        "reason": "external_topup",
        "description": "bench bare POST",
        "metadata": {"event_id": f"evt_bare{index:09d}", "psp": "stripe"},
    }
    # The bridge writes the Decimal amount as a JSON number ("20.00" keeps its places).
    text = json.dumps(body, separators=(",", ":")).replace('"amount":20.0', '"amount":20.00')
    return text.encode()


async def post_all(
    url: str, customer: str, count: int, rate: float, concurrency: int
) -> dict[str, float]:
    path = f"/customers/{customer}/wallet/adjustments"
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"X-CREDYT-API-KEY": API_KEY, "Content-Type": "application/json"}
    created = errors = 0
    gate = asyncio.Semaphore(concurrency)

    async def one(client: httpx.AsyncClient, index: int) -> None:
        nonlocal created, errors
        try:
            response = await client.post(path, content=adjustment(index))
        except httpx.HTTPError:
            errors += 1
        else:
            created += response.status_code == 201
            errors += response.status_code != 201
        finally:
            gate.release()

    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as client:
        await gate.acquire()
        await one(client, -1)  # connect before the clock starts
        created = errors = 0
        cpu_began, began = time.process_time(), time.perf_counter()
        tasks = []
        for index in range(count):
            if rate > 0:
                delay = began + index / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            await gate.acquire()
            tasks.append(asyncio.create_task(one(client, index)))
        await asyncio.gather(*tasks)
        wall, cpu = time.perf_counter() - began, time.process_time() - cpu_began
    return {"posts": count, "created": created, "errors": errors, "wall_s": wall, "cpu_s": cpu}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Bare httpx POSTs to the Credyt sandbox.")
    parser.add_argument("--url", required=True, help="the sandbox, e.g. http://127.0.0.1:8090")
    parser.add_argument("--customer", default="cust_bench", help="the sandbox customer id")
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=0.0, help="posts/s; 0: full speed")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(
            post_all(args.url, args.customer, args.count, args.rate, args.concurrency)
        )
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
