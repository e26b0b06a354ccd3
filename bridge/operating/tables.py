"""Plain-text tables for the CLI and the demo."""

from __future__ import annotations

import time
from collections.abc import Sequence

from tabulate import tabulate

from bridge.config.schema import Config
from bridge.storage.records import InboxRow, OutboxRow


def rules_table(config: Config) -> str:
    rows = []
    for connector in config.connectors.values():
        for rule in connector.rules:
            if rule.credit is not None:
                spec = rule.credit
                what = (
                    f"credit {spec.describe_amount()} {spec.asset or '(currency)'}"
                    f" -> {spec.account}, {spec.reason}, expires {spec.expires.describe()}"
                )
            else:
                assert rule.reverse is not None
                what = (
                    f"debit in proportion, {rule.reverse.reason},"
                    f" unknown original: {rule.reverse.unknown_original}"
                )
            when = rule.when.describe()
            unless = rule.unless.describe()
            if unless != "-":
                when = ("" if when == "-" else f"{when}; ") + f"unless {unless}"
            rows.append([connector.name, rule.name, ", ".join(rule.on), when, what])
    if not rows:
        return "(no rules: every event will be stored and ignored)"
    return tabulate(rows, headers=["connector", "rule", "on", "when", "does"])


def _when(moment: float | None) -> str:
    if moment is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(moment))


def outbox_table(rows: Sequence[OutboxRow]) -> str:
    return tabulate(
        [
            [
                r.id,
                r.status.value,
                r.customer_id,
                r.asset,
                r.amount,
                r.rule,
                r.attempts,
                r.last_status or "-",
                r.transaction_id,
            ]
            for r in rows
        ],
        headers=[
            "id",
            "status",
            "customer",
            "asset",
            "amount",
            "rule",
            "attempts",
            "last",
            "transaction_id",
        ],
    )


def events_table(rows: Sequence[InboxRow]) -> str:
    return tabulate(
        [
            [
                r.id,
                _when(r.received_at),
                r.connector,
                r.event_type,
                r.event_id,
                r.status.value,
                (r.reason or "")[:60],
            ]
            for r in rows
        ],
        headers=["id", "received (UTC)", "connector", "type", "event_id", "status", "reason"],
    )
