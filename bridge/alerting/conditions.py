"""What happened: the alert conditions, read from the store's rows and the process state.

Dead adjustments and failed events are read from the outbox and the inbox (rows changed
since the last one noticed, less a minute of slack for other replicas' clocks); each
becomes one `NewAlert` whose `key` names the row and the moment it changed, so noticing
it again (a restart, another replica) stores nothing new, and an adjustment retried and
dead again is a new alert. The backlog is the oldest pending adjustment (keyed by its
id: one alert per row that grows old). The breaker and the Credyt key are this
process's state: one alert each time the breaker opens, and one when the key is
rejected (again after Credyt accepted it in between).

Details hold what an operator needs (ids, customer, payment, connector, amount,
Credyt's answer cut short) and never a secret or a raw body.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bridge.config.schema import AlertsConfig
from bridge.credyt.key import KeyCheck
from bridge.delivery.breaker import CircuitBreaker
from bridge.storage.store import RunSQL

SLACK = 60.0  # seconds re-read before the last row noticed (clock skew between replicas)
SCAN_LIMIT = 20_000  # rows read per condition per look
ERROR_KEEP = 300  # characters of Credyt's answer or an event's reason in a message


@dataclass(frozen=True)
class NewAlert:
    condition: str
    key: str
    detail: dict[str, Any]
    observed_at: float


_LAST_OBSERVED = "SELECT MAX(observed_at) FROM alerts WHERE condition = ?"
_DEAD_ADJUSTMENTS = (
    "SELECT o.id, o.connector, o.customer_id, o.payment_key, o.asset, o.amount, o.kind,"
    " o.rule, o.transaction_id, o.inbox_id, o.last_status, o.last_error, o.updated_at,"
    " i.event_id, i.event_type FROM outbox o LEFT JOIN inbox i ON i.id = o.inbox_id"
    " WHERE o.status = 'dead' AND o.updated_at >= ? ORDER BY o.updated_at, o.id LIMIT ?"
)
_FAILED_EVENTS = (
    "SELECT id, connector, event_id, event_type, customer_id, payment_key, reason,"
    " updated_at FROM inbox WHERE status = 'failed' AND updated_at >= ?"
    " ORDER BY updated_at, id LIMIT ?"
)
_OLDEST_PENDING = (
    "SELECT id, connector, customer_id, payment_key, asset, amount, queued_at FROM outbox"
    " WHERE status = 'pending' ORDER BY queued_at, id LIMIT 1"
)


def _short(text: Any) -> str | None:
    if text is None:
        return None
    value = str(text)
    return value if len(value) <= ERROR_KEEP else value[: ERROR_KEEP - 3] + "..."


def _since(run: RunSQL, condition: str) -> float:
    rows = run(_LAST_OBSERVED, (condition,))
    last = rows[0][0] if rows else None
    return 0.0 if last is None else float(last) - SLACK


def dead_adjustments(run: RunSQL) -> list[NewAlert]:
    found = []
    for r in run(_DEAD_ADJUSTMENTS, (_since(run, "adjustment_dead"), SCAN_LIMIT)):
        detail = {
            "adjustment_id": int(r[0]),
            "connector": r[1],
            "customer_id": r[2],
            "payment": r[3],
            "asset": r[4],
            "amount": r[5],
            "kind": r[6],
            "rule": r[7],
            "transaction_id": r[8],
            "event_id": None if r[9] is None else int(r[9]),
            "credyt_status": r[10],
            "error": _short(r[11]),
            "psp_event_id": r[13],
            "event_type": r[14],
        }
        key = f"adjustment_dead:{r[0]}:{float(r[12])!r}"
        found.append(NewAlert("adjustment_dead", key, detail, float(r[12])))
    return found


def failed_events(run: RunSQL) -> list[NewAlert]:
    found = []
    for r in run(_FAILED_EVENTS, (_since(run, "event_failed"), SCAN_LIMIT)):
        detail = {
            "event_id": int(r[0]),
            "connector": r[1],
            "psp_event_id": r[2],
            "event_type": r[3],
            "customer_id": r[4],
            "payment": r[5],
            "reason": _short(r[6]),
        }
        key = f"event_failed:{r[0]}:{float(r[7])!r}"
        found.append(NewAlert("event_failed", key, detail, float(r[7])))
    return found


def old_backlog(run: RunSQL, older_than: float, now: float) -> list[NewAlert]:
    rows = run(_OLDEST_PENDING, ())
    if not rows or rows[0][6] is None or now - float(rows[0][6]) <= older_than:
        return []
    r = rows[0]
    detail = {
        "adjustment_id": int(r[0]),
        "connector": r[1],
        "customer_id": r[2],
        "payment": r[3],
        "asset": r[4],
        "amount": r[5],
        "age_seconds": round(now - float(r[6])),
        "threshold_seconds": older_than,
    }
    return [NewAlert("backlog_age", f"backlog_age:{r[0]}", detail, now)]


@dataclass
class ProcessState:
    """The conditions only this process sees: its breaker and its key check."""

    breaker: CircuitBreaker | None = None
    key_check: KeyCheck | None = None
    instance: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    _openings_seen: int = 0
    _rejections_seen: int = 0

    def changes(self, now: float) -> list[NewAlert]:
        found: list[NewAlert] = []
        if self.breaker is not None and self.breaker.opened > self._openings_seen:
            self._openings_seen = self.breaker.opened
            detail = {"times_opened": self.breaker.opened, "replica": self.instance}
            key = f"breaker_opened:{self.instance}:{self.breaker.opened}"
            found.append(NewAlert("breaker_opened", key, detail, now))
        if self.key_check is not None and self.key_check.rejections > self._rejections_seen:
            self._rejections_seen = self.key_check.rejections
            detail = {"problem": _short(self.key_check.problem), "replica": self.instance}
            key = f"credyt_key_rejected:{self.instance}:{self.key_check.rejections}"
            found.append(NewAlert("credyt_key_rejected", key, detail, now))
        return found


def detect(
    run: RunSQL, config: AlertsConfig, state: Sequence[NewAlert], now: float
) -> list[NewAlert]:
    """Every alert the configured conditions raise now; `state`: the process's own."""
    found: list[NewAlert] = [a for a in state if a.condition in config.conditions]
    if "adjustment_dead" in config.conditions:
        found.extend(dead_adjustments(run))
    if "event_failed" in config.conditions:
        found.extend(failed_events(run))
    if "backlog_age" in config.conditions and config.backlog_age is not None:
        found.extend(old_backlog(run, config.backlog_age, now))
    return found
