"""`reconcile --fix`: repair what the bridge can repair by itself, on the normal path.

- `missing`: the event that would have carried the payment is stored in the inbox, as
  backfill stores a listed event; the running bridge processes it with the current
  rules, under the transaction ids the live path derives. A webhook of the payment
  arriving later is then decided against that credit and credits nothing again.
- `not delivered`: the adjustment is queued again, due now, with a fresh attempt budget.
- `absent in Credyt`: the delivered adjustment is queued to be sent again under its own
  transaction id (Credyt's idempotency turns a second arrival into a 409, not a credit).
- `amount differs`, `asset differs`, `unexpected`: never touched; a human decides.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import structlog

from bridge.config.schema import ConnectorConfig
from bridge.errors import MalformedEventError
from bridge.operating.reconcile_report import ABSENT, MISSING, NOT_DELIVERED, ReconcileReport
from bridge.storage.store import Store
from connectors import Connector

log = structlog.get_logger("bridge.reconcile")


async def fix(
    store: Store,
    connector: ConnectorConfig,
    reader: Connector,
    report: ReconcileReport,
    *,
    now: Callable[[], float] = time.time,
) -> dict[str, int]:
    """Repair the report's fixable rows; each row's `fixed` says what was done."""
    done: Counter[str] = Counter()
    for row in report.rows:
        if row.status == MISSING and row.event_body is not None:
            try:
                envelope = reader.envelope(row.event_body)
            except MalformedEventError as exc:  # our own wrapping: never expected
                row.fixed = f"not stored: {exc}"
                continue
            if await store.accept(connector.name, envelope, row.event_body, now()):
                row.fixed = f"stored as event {envelope.event_id} for processing"
                done[MISSING] += 1
            else:
                row.fixed = (
                    f"event {envelope.event_id} was stored by an earlier --fix: see "
                    f"credyt-bridge events show {envelope.event_id}"
                )
        elif row.status == NOT_DELIVERED and row.outbox_id is not None:
            if await store.retry_adjustments([row.outbox_id]):
                row.fixed = "queued for delivery again"
                done[NOT_DELIVERED] += 1
        elif row.status == ABSENT:
            if row.outbox_id is None:
                row.fixed = "not sent again: its outbox row was pruned (replay its event)"
            elif await store.resend_adjustments([row.outbox_id]):
                row.fixed = "queued to be sent again under its transaction id"
                done[ABSENT] += 1
        if row.fixed:
            log.info(
                "reconcile_fixed",
                connector=connector.name,
                status=row.status,
                transaction_id=row.transaction_id,
                object_id=row.object_id,
                fixed=row.fixed,
            )
    report.fixed = dict(done)
    return report.fixed
