"""The PostgreSQL store's alert transactions (the AlertTables protocol).

The alert worker writes little (a few rows a second at most), so it runs on a worker
thread over a connection of the store's sync pool, in one transaction that first
takes an advisory lock: replicas take turns, and two never group or claim the same
alert.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from bridge.errors import StoreError
from bridge.storage.postgres_pools import reason
from bridge.storage.reads import POSTGRES
from bridge.storage.store import RunSQL

T = TypeVar("T")

ALERTS_LOCK = 0x616C65727473  # pg_advisory_xact_lock key: "alerts"


async def alert_transaction(
    pool: ConnectionPool[psycopg.Connection[Any]], fn: Callable[[RunSQL], T]
) -> T:
    def work() -> T:
        with pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (ALERTS_LOCK,))

            def run(sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
                cursor = conn.execute(POSTGRES.sql(sql), tuple(params))
                return cursor.fetchall() if cursor.description is not None else []

            return fn(run)

    try:
        return await asyncio.to_thread(work)
    except psycopg.Error as exc:
        raise StoreError(f"the alerts could not be written: {reason(exc)}") from exc
