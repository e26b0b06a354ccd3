"""The alert worker: a background task of `serve` when `alerts:` is configured.

Every `poll` seconds the conditions are read (`conditions.detect`, on a read
connection), then one transaction stores what is new, groups what waits into messages
and claims the messages due (`ledger.step`); the claimed messages are sent to their
targets at once, and their outcomes recorded in a second transaction. Alerts and
messages live in the store: a bridge stopped between a failure and its message sends
the message after the next start, and a target that is down gets it once it is back.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from bridge.alerting import ledger
from bridge.alerting.conditions import NewAlert, ProcessState, detect
from bridge.alerting.sender import new_client, send
from bridge.config.schema import AlertsConfig
from bridge.errors import StoreError
from bridge.metrics import Metrics
from bridge.storage.store import AlertTables

log = structlog.get_logger("bridge.alerting")

POLL = 1.0
PRUNE_EVERY = 3600.0  # seconds between two prunes of the alert tables


class AlertWorker:
    def __init__(
        self,
        config: AlertsConfig,
        store: AlertTables,
        metrics: Metrics,
        state: ProcessState,
        *,
        poll: float = POLL,
        retention: float = 30 * 86400.0,
    ) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.state = state
        self.poll = poll
        self.retention = retention
        self._pruned_at = 0.0
        self.targets = {t.name: t for t in config.targets}
        self._stopping = asyncio.Event()
        self._unsaved: list[NewAlert] = []  # process-state alerts a failed write kept

    async def tick(self) -> int:
        """One look and one round of sends; returns how many messages were sent."""
        now = time.time()
        state = [*self._unsaved, *self.state.changes(now)]
        self._unsaved = state  # until the transaction below has stored them
        # The conditions are read on a read connection; noticing a row twice (here, or
        # by another replica meanwhile) stores it once: alerts are unique on their key.
        found = await asyncio.to_thread(detect, self.store.alert_query, self.config, state, now)
        due = await self.store.alert_transaction(
            lambda run: ledger.step(run, self.config, found, now)
        )
        self._unsaved = []
        if now - self._pruned_at >= PRUNE_EVERY:
            self._pruned_at = now
            before = now - self.retention
            await self.store.alert_transaction(lambda run: ledger.prune(run, before))
        if not due:
            return 0
        async with new_client() as client:
            results = await asyncio.gather(*(send(client, self.targets, m) for m in due))
        await self.store.alert_transaction(lambda run: ledger.record(run, results, time.time()))
        sent = 0
        for result in results:
            message = result.message
            labels = (message.target, message.condition)
            context = {
                "target": message.target,
                "condition": message.condition,
                "message_id": message.id,
                "kind": message.payload.get("kind"),
                "covers": message.payload.get("count"),
                "attempt": message.attempts + 1,
            }
            if result.error is None:
                sent += 1
                self.metrics.alerts_sent.labels(*labels).inc()
                log.info("alert_sent", **context)
                continue
            self.metrics.alerts_failed.labels(*labels).inc()
            if result.retry_in is None:
                log.error("alert_given_up", error=result.error, **context)
            else:
                log.warning(
                    "alert_send_failed",
                    error=result.error,
                    retry_in=round(result.retry_in, 3),
                    **context,
                )
        return sent

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.tick()
            except StoreError as exc:
                log.warning("alerts_store_failed", error=str(exc))
            try:
                await asyncio.wait_for(self._stopping.wait(), self.poll)
            except TimeoutError:
                pass

    def stop(self) -> None:
        self._stopping.set()
