"""The alert tables' SQL, run inside one `AlertTables.alert_transaction`.

One step (`step`) notices new alerts (`alerts`, unique on key), groups what waits into
messages for every target (`dedupe.plan`), and claims the messages due now (a lease:
`next_attempt_at` pushed out, so a crash mid-send leaves them due again afterwards).
`record` writes what each send answered. Everything a restart needs is in these rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bridge.alerting import messages
from bridge.alerting.conditions import SLACK, NewAlert
from bridge.alerting.dedupe import plan
from bridge.config.schema import ALERT_CONDITIONS, AlertsConfig
from bridge.storage.store import RunSQL

CLAIM_LIMIT = 50
LEASE = 60.0  # seconds a claimed message stays hidden (a send takes at most ~10 s)

_INSERT_ALERT = (
    "INSERT INTO alerts (condition, key, detail, observed_at, detected_at)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING"
)
_WAITING = "SELECT id, detail FROM alerts WHERE condition = ? AND grouped_at IS NULL ORDER BY id"
_LAST_MESSAGE = "SELECT MAX(created_at) FROM alert_messages WHERE condition = ?"
_GROUP = "UPDATE alerts SET grouped_at = ? WHERE id = ?"
_INSERT_MESSAGE = (
    "INSERT INTO alert_messages (condition, kind, target, payload, covers, created_at,"
    " status, attempts, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?)"
)
_DUE = (
    "SELECT id, condition, target, payload, attempts, created_at FROM alert_messages"
    " WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY id LIMIT ?"
)
_LEASE = "UPDATE alert_messages SET next_attempt_at = ? WHERE id = ?"
_SENT = (
    "UPDATE alert_messages SET status = 'sent', attempts = attempts + 1, sent_at = ?,"
    " last_error = NULL WHERE id = ?"
)
_RETRY = (
    "UPDATE alert_messages SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?"
    " WHERE id = ?"
)
_GIVE_UP = (
    "UPDATE alert_messages SET status = 'failed', attempts = attempts + 1, last_error = ?"
    " WHERE id = ?"
)


# Old rows go once they are done with, but never the last noticed of each condition
# (nor anything within two re-read slacks of it): its `observed_at` is where the next
# look starts, and a key deleted inside that range would be noticed again.
_PRUNE_ALERTS = (
    "DELETE FROM alerts WHERE grouped_at IS NOT NULL AND grouped_at < ? AND observed_at <"
    " (SELECT MAX(newer.observed_at) FROM alerts newer WHERE newer.condition = alerts.condition)"
    " - ?"
)
_PRUNE_MESSAGES = "DELETE FROM alert_messages WHERE status != 'pending' AND created_at < ?"


@dataclass(frozen=True)
class DueMessage:
    id: int
    condition: str
    target: str
    payload: dict[str, Any]
    attempts: int  # tries before this one
    created_at: float


@dataclass(frozen=True)
class SendResult:
    message: DueMessage
    error: str | None  # None: the target answered 2xx
    retry_in: float | None = None  # None with an error: give up


def _group(run: RunSQL, config: AlertsConfig, now: float) -> int:
    """Messages made now for what waits, per condition; returns how many."""
    made = 0
    for condition in ALERT_CONDITIONS:
        waiting = run(_WAITING, (condition,))
        if not waiting:
            continue
        last = run(_LAST_MESSAGE, (condition,))
        last_sent = None if not last or last[0][0] is None else float(last[0][0])
        chosen = plan([int(r[0]) for r in waiting], last_sent, now, config.window)
        if chosen.empty:
            continue
        details = {int(r[0]): json.loads(r[1]) for r in waiting}
        if chosen.single is not None:
            covered: Sequence[int] = (chosen.single,)
            payload = messages.single(condition, details[chosen.single], config.base_url)
        else:
            covered = chosen.summary
            payload = messages.summary(condition, [details[i] for i in covered], config.base_url)
        for alert_id in covered:
            run(_GROUP, (now, alert_id))
        text = json.dumps(payload)
        for target in config.targets:
            run(
                _INSERT_MESSAGE,
                (condition, payload["kind"], target.name, text, len(covered), now, now),
            )
            made += 1
    return made


def step(
    run: RunSQL, config: AlertsConfig, found: Sequence[NewAlert], now: float
) -> list[DueMessage]:
    """Store `found` (each key once), group what waits, and claim the messages due."""
    for alert in found:
        run(
            _INSERT_ALERT,
            (alert.condition, alert.key, json.dumps(alert.detail), alert.observed_at, now),
        )
    _group(run, config, now)
    due = [
        DueMessage(int(r[0]), r[1], r[2], json.loads(r[3]), int(r[4]), float(r[5]))
        for r in run(_DUE, (now, CLAIM_LIMIT))
    ]
    for message in due:
        run(_LEASE, (now + LEASE, message.id))
    return due


def record(run: RunSQL, results: Sequence[SendResult], now: float) -> None:
    for result in results:
        if result.error is None:
            run(_SENT, (now, result.message.id))
        elif result.retry_in is None:
            run(_GIVE_UP, (result.error, result.message.id))
        else:
            run(_RETRY, (now + result.retry_in, result.error, result.message.id))


def prune(run: RunSQL, before: float) -> None:
    """Forget alerts and finished messages older than `before` (`retention`)."""
    run(_PRUNE_ALERTS, (before, 2 * SLACK))
    run(_PRUNE_MESSAGES, (before,))
