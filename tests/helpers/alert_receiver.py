"""A webhook receiver for alert tests: a tiny Starlette app on a loopback port.

It keeps every JSON body it was sent; `answer` is the status it replies with (set it
to 503 to play a receiver that fails, back to 200 when it recovers).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bridge.receiving.servers import serve_in_thread


@dataclass
class AlertReceiver:
    url: str = ""
    answer: int = 200
    received: list[dict[str, Any]] = field(default_factory=list)  # answered 2xx
    refused: int = 0  # requests answered with another status
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            body = json.loads(await request.body())
            with self._lock:
                if self.answer >= 300:
                    self.refused += 1
                else:
                    self.received.append(body)
            return Response(status_code=self.answer)

        return Starlette(routes=[Route("/hook", hook, methods=["POST"])])

    def of(self, condition: str) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.received if m.get("condition") == condition]


@contextmanager
def alert_receiver(port: int = 0) -> Iterator[AlertReceiver]:
    receiver = AlertReceiver()
    with serve_in_thread(receiver.app(), port=port) as url:
        receiver.url = f"{url}/hook"
        yield receiver
