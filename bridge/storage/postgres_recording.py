"""Recording in PostgreSQL: an event's outcome and its adjustments in one transaction,
under transaction-scoped advisory locks on the payment's id classes, and a delivery's
outcome. The statements are the shared ones (`bridge.storage.queries`)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from bridge.errors import DecisionConflictError
from bridge.storage import queries as statements
from bridge.storage.postgres_feed import ADJUSTMENTS_CHANNEL, EVENTS_CHANNEL, notify
from bridge.storage.postgres_pools import AsyncConn
from bridge.storage.queries import for_psycopg
from bridge.storage.records import DeliveryOutcome, PaymentState, ProcessingResult
from bridge.storage.rows import decided_row

T = TypeVar("T")

LOCK_SPACE = 0x6372  # the first key of the payment advisory (transaction) locks


async def _state_in(conn: AsyncConn, ids: Sequence[str]) -> PaymentState:
    cursor = await conn.execute(*for_psycopg(statements.class_members(ids)))
    members = sorted({*ids, *(r[0] for r in await cursor.fetchall())})
    cursor = await conn.execute(*for_psycopg(statements.decided_for(members)))
    rows = await cursor.fetchall()
    return PaymentState(tuple(members), tuple(decided_row(r) for r in rows))


async def _lock_classes(conn: AsyncConn, ids: Sequence[str]) -> None:
    """Transaction-scoped advisory locks on the ids and on every id of their classes,
    until the set is stable: two transactions touching one payment (whichever of its
    ids they name) run one after the other. Released by commit or abort: a lost
    connection can only abort the decision, never leave another replica free to make
    it again. Deadlocks are detected by the server and the transaction re-run."""
    locked: set[str] = set()
    wanted = set(ids)
    while not wanted <= locked:
        new = sorted(wanted - locked)
        await conn.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(k)) FROM unnest(%s::text[]) AS k",
            (LOCK_SPACE, new),
        )
        locked.update(new)
        cursor = await conn.execute(*for_psycopg(statements.class_members(sorted(locked))))
        classes = await conn.execute(*for_psycopg(statements.classes_of(sorted(locked))))
        wanted = (
            locked
            | {r[0] for r in await cursor.fetchall()}
            | {r[0] for r in await classes.fetchall()}
        )


async def _join_ids(conn: AsyncConn, ids: Sequence[str]) -> None:
    cursor = await conn.execute(*for_psycopg(statements.classes_of(ids)))
    classes = [r[0] for r in await cursor.fetchall()]
    target = min(classes) if classes else min(ids)
    others = [c for c in classes if c != target]
    if others:
        await conn.execute(*for_psycopg(statements.merge_classes(target, others)))
    for statement in statements.add_ids(ids, target):
        await conn.execute(*for_psycopg(statement))


async def record_processing(conn: AsyncConn, result: ProcessingResult, now: float) -> int:
    ids = statements.payment_ids_of(
        result.payment_key, [*result.payment_ids, *(a.payment_key for a in result.adjustments)]
    )
    if ids:
        await _lock_classes(conn, ids)
    if result.basis is not None:
        if (await _state_in(conn, ids)).basis != result.basis:
            raise DecisionConflictError(
                f"payment {result.payment_key} was decided elsewhere meanwhile"
            )
    new = 0
    for adj in result.adjustments:
        if adj.deliver:  # one recorded only for its units goes to `decided` alone
            insert = statements.insert_adjustment(adj, result, now)
            new += max((await conn.execute(*for_psycopg(insert))).rowcount, 0)
        await conn.execute(*for_psycopg(statements.insert_decided(adj, now)))
    if ids:
        await _join_ids(conn, ids)
    await conn.execute(*for_psycopg(statements.record_event_outcome(result, now)))
    linked = 0
    for link in statements.insert_links(result):
        cursor = await conn.execute(*for_psycopg(link))
        linked += max(cursor.rowcount, 0)
    if (new or linked) and result.payment_key:
        # Reversals (and customer-less payments) held for this payment can go now,
        # whichever of its ids they name.
        keys = list((await _state_in(conn, ids)).ids)
        cursor = await conn.execute(
            "UPDATE inbox SET next_attempt_at = %s WHERE status = 'pending'"
            " AND payment_key = ANY(%s) AND id != %s AND next_attempt_at > %s",
            (now, keys, result.inbox_id, now),
        )
        if cursor.rowcount:
            await notify(conn, EVENTS_CHANNEL)
    if new:
        await notify(conn, ADJUSTMENTS_CHANNEL)
    return new


async def record_delivery(conn: AsyncConn, outcome: DeliveryOutcome) -> None:
    await conn.execute(*for_psycopg(statements.record_delivery(outcome, time.time())))
    await conn.execute(*for_psycopg(statements.insert_attempt(outcome)))


async def decide_held(conn: AsyncConn, outbox_id: int, approve: bool, note: str) -> bool:
    """An operator's decision on a held adjustment, in one transaction with its record;
    an approval wakes the deliverers of every replica."""
    update, record = statements.decide_held(outbox_id, approve, note, time.time())
    cursor = await conn.execute(*for_psycopg(update))
    if cursor.rowcount != 1:
        return False
    await conn.execute(*for_psycopg(record))
    if approve:
        await notify(conn, ADJUSTMENTS_CHANNEL)
    return True


class PostgresReconcileWrites:
    """`reconcile`'s writes: a delivered adjustment sent again, a run's report kept."""

    async def _write(self, fn: Callable[[AsyncConn], Awaitable[T]]) -> T:
        raise NotImplementedError

    async def resend_adjustments(self, ids: Sequence[int]) -> int:
        """Queue delivered adjustments again, due now (Credyt lost them)."""
        now = time.time()
        sql = for_psycopg((statements.RESEND_DELIVERED, ()))[0].replace("id = %s", "id = ANY(%s)")

        async def resend(conn: AsyncConn) -> int:
            cursor = await conn.execute(sql, (now, now, now, [int(i) for i in ids]))
            if cursor.rowcount:
                await notify(conn, ADJUSTMENTS_CHANNEL)
            return max(cursor.rowcount, 0)

        return await self._write(resend)

    async def record_reconcile(self, connector: str, finished_at: float, report: str) -> None:
        async def insert(conn: AsyncConn) -> None:
            await conn.execute(
                *for_psycopg((statements.INSERT_RECONCILE_RUN, (connector, finished_at, report)))
            )

        await self._write(insert)
