"""The PostgreSQL store's connections: pools that reconnect quickly after an outage,
the options every connection gets, durable commits for the writes, and running a
transaction or a read again after a lost connection."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import psycopg
import structlog
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolClosed, PoolTimeout
from psycopg_pool.base import AttemptWithBackoff

from bridge.errors import DiskFullError, StoreError

T = TypeVar("T")
AsyncConn = psycopg.AsyncConnection[Any]
log = structlog.get_logger("bridge.storage.postgres")

CONNECT_TIMEOUT = 10.0  # seconds to reach the server at start-up
POOL_TIMEOUT = 5.0  # seconds a request waits for a free connection before a StoreError
POOL_MAX = 10  # connections for writes and claims
READ_POOL_MAX = 4  # connections for the synchronous reads
RETRIES = 3  # a transaction that deadlocked or hit a serialization failure is re-run
# Longest pause between two attempts of a pool to replace a lost connection. The pools'
# own backoff doubles without a cap (1, 2, 4, 8, 16 s...), so a 40 s outage kept every
# request failing for 16-21 s after the server was back; one attempt a second per pool
# is nothing for a server and puts the bridge back within about a second.
RECONNECT_DELAY_MAX = 1.0


class QuickReconnect(AttemptWithBackoff):
    """psycopg_pool's reconnect backoff, never longer than RECONNECT_DELAY_MAX."""

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, RECONNECT_DELAY_MAX)


class WritePool(AsyncConnectionPool[AsyncConn]):
    async def _add_connection(
        self, attempt: AttemptWithBackoff | None, growing: bool = False
    ) -> None:
        attempt = attempt or QuickReconnect(timeout=self.reconnect_timeout)
        await super()._add_connection(attempt, growing)


class ReadPool(ConnectionPool[psycopg.Connection[Any]]):
    def _add_connection(self, attempt: AttemptWithBackoff | None, growing: bool = False) -> None:
        attempt = attempt or QuickReconnect(timeout=self.reconnect_timeout)
        super()._add_connection(attempt, growing)


def connect_options(url: str) -> dict[str, Any]:
    """Timeouts for every connection, unless the URL sets its own: give up connecting
    after CONNECT_TIMEOUT, and notice a server that vanished (a failover) within about a
    minute even on an idle connection such as the listener's."""
    given = conninfo_to_dict(url)
    defaults = {
        "connect_timeout": int(CONNECT_TIMEOUT),
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }
    return {key: value for key, value in defaults.items() if key not in given}


async def durable_commits(conn: AsyncConn) -> None:
    """A 200 means the webhook is on disk: a server or role set to
    `synchronous_commit = off` is overridden for the bridge's writes ('local' and the
    replica-waiting levels are durable already and stay as they are)."""
    cursor = await conn.execute("SELECT current_setting('synchronous_commit')")
    row = await cursor.fetchone()
    if row is not None and row[0] == "off":
        await conn.execute("SET synchronous_commit = on")


def reason(exc: BaseException) -> str:
    """The first line of a driver's error, for messages and logs."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


async def in_transaction(
    pool: AsyncConnectionPool[AsyncConn], fn: Callable[[AsyncConn], Awaitable[T]], shown: str
) -> T:
    """Run `fn` in one transaction on a connection of `pool`, again after a deadlock, a
    serialization failure or a lost connection (RETRIES in all)."""
    for attempt in range(1, RETRIES + 1):
        try:
            async with pool.connection() as conn, conn.transaction():
                return await fn(conn)
        except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure) as exc:
            if attempt == RETRIES:
                raise StoreError(f"the database refused a write: {reason(exc)}") from exc
            log.warning("store_transaction_retried", attempt=attempt, error=reason(exc))
        except pg_errors.DiskFull as exc:  # not a lost connection: no reconnect, no retry
            log.error("store_disk_full", database=shown, error=reason(exc))
            raise DiskFullError(f"the database's disk is full: {reason(exc)}") from exc
        except psycopg.OperationalError as exc:
            # A connection lost (server restart, failover, idle timeout): drop the
            # pool's dead connections and run the transaction again. Every write here
            # may run twice if its commit went through unseen: inserts do nothing the
            # second time, a claim's first rows wait for their lease, and a delivery
            # outcome at worst counts one attempt twice.
            if isinstance(exc, PoolTimeout | PoolClosed) or attempt == RETRIES:
                raise StoreError(f"the database could not commit: {reason(exc)}") from exc
            log.warning("store_reconnecting", attempt=attempt, error=reason(exc))
            with contextlib.suppress(psycopg.Error):
                await pool.check()
        except psycopg.Error as exc:
            raise StoreError(f"the database could not commit: {reason(exc)}") from exc
    raise AssertionError("unreachable")


def read(
    pool: ConnectionPool[psycopg.Connection[Any]], sql: str, params: Sequence[Any] = ()
) -> list[tuple[Any, ...]]:
    """The rows of one query on a connection of `pool`, again after a lost connection."""
    for attempt in range(1, RETRIES + 1):
        try:
            with pool.connection() as conn:
                return conn.execute(sql, params).fetchall()
        except psycopg.OperationalError as exc:  # a lost connection: as in in_transaction
            if isinstance(exc, PoolTimeout | PoolClosed) or attempt == RETRIES:
                raise StoreError(f"the database could not be read: {reason(exc)}") from exc
            log.warning("store_reconnecting", attempt=attempt, error=reason(exc))
            with contextlib.suppress(psycopg.Error):
                pool.check()
        except psycopg.Error as exc:
            raise StoreError(f"the database could not be read: {reason(exc)}") from exc
    raise AssertionError("unreachable")
