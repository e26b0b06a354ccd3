"""The PostgreSQL store's operator writes: retries, held decisions, replays and prune.

A mixin of `PostgresStore`, which provides `_write` (one write transaction on the
store's pool, retried across a reconnect).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from bridge.storage import pruning
from bridge.storage import queries as statements
from bridge.storage.postgres_feed import ADJUSTMENTS_CHANNEL, EVENTS_CHANNEL, notify
from bridge.storage.postgres_pools import AsyncConn
from bridge.storage.postgres_recording import decide_held
from bridge.storage.queries import for_psycopg
from bridge.storage.reads import POSTGRES

T = TypeVar("T")


class PostgresOperatorWrites:
    """What `outbox retry`, `outbox approve|reject`, `replay` and `prune` write."""

    async def _write(self, fn: Callable[[AsyncConn], Awaitable[T]]) -> T:
        raise NotImplementedError

    async def retry_adjustments(self, ids: Sequence[int] = (), *, dead: bool = False) -> int:
        """Put adjustments back to pending, due now, with a fresh attempt budget."""
        now = time.time()
        sql = POSTGRES.sql(statements.REQUEUE_ADJUSTMENTS)

        async def retry(conn: AsyncConn) -> int:
            if dead:
                cursor = await conn.execute(sql + " WHERE status = 'dead'", (now, now, now))
            else:
                cursor = await conn.execute(
                    sql + " WHERE id = ANY(%s) AND status IN ('pending', 'dead')",
                    (now, now, now, [int(i) for i in ids]),
                )
            if cursor.rowcount:
                await notify(conn, ADJUSTMENTS_CHANNEL)
            return max(cursor.rowcount, 0)

        return await self._write(retry)

    async def decide_held(self, outbox_id: int, approve: bool, note: str) -> bool:
        """Approve (queue for delivery) or reject a held adjustment; False: not held."""
        return await self._write(lambda conn: decide_held(conn, outbox_id, approve, note))

    async def reset_events(self, ids: Sequence[int]) -> int:
        """Mark events pending, due now, so the processor runs them again."""
        now = time.time()

        async def reset(conn: AsyncConn) -> int:
            cursor = await conn.execute(
                "UPDATE inbox SET status = 'pending', next_attempt_at = %s, updated_at = %s"
                " WHERE id = ANY(%s)",
                (now, now, [int(i) for i in ids]),
            )
            if cursor.rowcount:
                await notify(conn, EVENTS_CHANNEL)
            return max(cursor.rowcount, 0)

        return await self._write(reset)

    async def prune_finished(
        self, before: float, progress: pruning.Progress | None = None
    ) -> dict[str, int]:
        """Delete finished rows last touched before `before`, in small transactions
        (what goes and what stays: `bridge.storage.pruning`, the same as SQLite's)."""

        async def adjustments(conn: AsyncConn) -> tuple[int, int]:
            selected = for_psycopg(pruning.prunable_adjustments(before, pruning.PRUNE_BATCH))
            cursor = await conn.execute(*selected)
            ids = [int(r[0]) for r in await cursor.fetchall()]
            if not ids:
                return 0, 0
            gone = await conn.execute("DELETE FROM attempts WHERE outbox_id = ANY(%s)", (ids,))
            outbox = await conn.execute("DELETE FROM outbox WHERE id = ANY(%s)", (ids,))
            return max(outbox.rowcount, 0), max(gone.rowcount, 0)

        async def events(conn: AsyncConn) -> int:
            cursor = await conn.execute(
                *for_psycopg(pruning.prune_events(before, pruning.PRUNE_BATCH))
            )
            return max(cursor.rowcount, 0)

        return await pruning.prune_in_batches(
            lambda: self._write(adjustments), lambda: self._write(events), progress
        )
