"""Waking the workers of every replica: `NOTIFY bridge_events` / `bridge_adjustments`
when work is added, and the one listening connection per store that passes them on."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import psycopg
import structlog

from bridge.storage.postgres_pools import AsyncConn, reason

log = structlog.get_logger("bridge.storage.postgres")

EVENTS_CHANNEL = "bridge_events"
ADJUSTMENTS_CHANNEL = "bridge_adjustments"


async def notify(conn: AsyncConn, channel: str) -> None:
    """Delivered to every listening replica when the transaction commits."""
    await conn.execute("SELECT pg_notify(%s, '')", (channel,))


class ChangeListener:
    """LISTENs on both channels from the store's event loop (reconnecting when the
    server goes away) and calls each subscriber on its own loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        url: str,
        options: dict[str, Any],
        shown: str,
    ) -> None:
        self._loop = loop
        self._url = url
        self._options = options
        self._shown = shown
        self.closed = False
        self._task: asyncio.Task[None] | None = None
        self._subscribers: list[
            tuple[asyncio.AbstractEventLoop, Callable[[], None], Callable[[], None]]
        ] = []
        self._subscribers_lock = threading.Lock()

    def subscribe(
        self, *, events: Callable[[], None], adjustments: Callable[[], None]
    ) -> Callable[[], None]:
        entry = (asyncio.get_running_loop(), events, adjustments)
        with self._subscribers_lock:
            self._subscribers.append(entry)
        self._loop.call_soon_threadsafe(self._ensure_listening)

        def unsubscribe() -> None:
            with self._subscribers_lock:
                if entry in self._subscribers:
                    self._subscribers.remove(entry)

        return unsubscribe

    async def stop(self) -> None:
        """On the store's loop: no more listening."""
        self.closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _ensure_listening(self) -> None:
        if self._task is None and not self.closed:
            self._task = self._loop.create_task(self._listen(), name="postgres-listen")

    async def _listen(self) -> None:
        backoff = 0.2
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, **self._options
                )
                async with conn:
                    await conn.execute(f"LISTEN {EVENTS_CHANNEL}")
                    await conn.execute(f"LISTEN {ADJUSTMENTS_CHANNEL}")
                    log.debug("store_listening", database=self._shown)
                    backoff = 0.2
                    # anything added while this connection was not listening
                    self._dispatch(EVENTS_CHANNEL)
                    self._dispatch(ADJUSTMENTS_CHANNEL)
                    async for notice in conn.notifies():
                        self._dispatch(notice.channel)
            except psycopg.Error as exc:
                log.warning("store_listen_reconnecting", error=reason(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _dispatch(self, channel: str) -> None:
        with self._subscribers_lock:
            subscribers = list(self._subscribers)
        for loop, events, adjustments in subscribers:
            callback = events if channel == EVENTS_CHANNEL else adjustments
            try:
                loop.call_soon_threadsafe(callback)
            except RuntimeError:  # that loop has closed
                pass
