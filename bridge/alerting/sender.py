"""One POST of one message to one target, and what to do when it fails.

A 2xx is sent. Anything else (another status, a timeout, a refused connection) is
tried again with `ALERT_RETRIES`, the deliverer's RetryPolicy with its own limits:
1 s doubling to 5 min, for up to a day. Redirects are not followed. The target's URL
and its answer's body never reach a log or the store (a Slack URL is a secret; the
answer is the receiver's): an error is the status code or the kind of failure.
"""

from __future__ import annotations

import random
import time

import httpx

from bridge.alerting import messages
from bridge.alerting.ledger import DueMessage, SendResult
from bridge.config.schema import AlertTarget
from bridge.delivery.retry import RetryPolicy

SEND_TIMEOUT = 10.0
ALERT_RETRIES = RetryPolicy(initial=1.0, maximum=300.0, max_attempts=100, max_age=86400.0)


async def post(client: httpx.AsyncClient, target: AlertTarget, body: bytes) -> str | None:
    """None when the target answered 2xx, else a short reason fit for logs."""
    try:
        # Streamed and never read: a target's answer body (any size) is not ours to keep.
        async with client.stream(
            "POST",
            target.url,
            content=body,
            headers={"Content-Type": "application/json", "User-Agent": "credyt-bridge"},
        ) as response:
            status = response.status_code
    except httpx.TimeoutException:
        return "timed out"
    except httpx.ConnectError:
        return "could not connect"
    except httpx.HTTPError as exc:  # the connection broke, a malformed answer...
        return f"no answer ({type(exc).__name__})"
    if 200 <= status < 300:
        return None
    return f"answered HTTP {status}"


def new_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=SEND_TIMEOUT, follow_redirects=False)


async def send(
    client: httpx.AsyncClient, targets: dict[str, AlertTarget], message: DueMessage
) -> SendResult:
    target = targets.get(message.target)
    if target is None:
        return SendResult(message, f"no target {message.target!r} in the config any more")
    error = await post(client, target, messages.body_for(target, message.payload))
    if error is None:
        return SendResult(message, None)
    age = time.time() - message.created_at
    return SendResult(
        message, error, ALERT_RETRIES.decide(message.attempts + 1, age, rand=random.random())
    )
