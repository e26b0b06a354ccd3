"""The CLI's and the demo's tables: what each shows, laid out by `table_layout`.

Each takes `width`, the characters to fit (`terminal_width()`; None shows everything,
as `--wide` does). `--json` never goes through here: it is always complete.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from bridge.config.schema import Config, Rule
from bridge.operating.table_layout import Column, render_table
from bridge.storage.records import InboxRow, OutboxRow

RULE_COLUMNS = (  # a cell holds one event type, condition or part of the effect a line
    Column("rule"),  # never cut: rule names key the adjustments
    Column("on", shrink_to=30),
    Column("when", shrink_to=10),
    Column("does", shrink_to=20),
)


def rules_table(config: Config, width: int | None = None) -> str:
    """One table of rules per connector, under a line naming it."""
    blocks = []
    for connector in config.connectors.values():
        title = f"{connector.name} ({connector.type}, mode {connector.mode}):"
        if not connector.rules:
            blocks.append(f"{title} no rules: every event is stored and ignored")
            continue
        rows = [
            [rule.name, "\n".join(rule.on), _conditions(rule), _does(rule)]
            for rule in connector.rules
        ]
        blocks.append(title + "\n" + render_table(RULE_COLUMNS, rows, width))
    return "\n\n".join(blocks)


def _conditions(rule: Rule) -> str:
    """The rule's conditions, one per line, then its `unless:` ones."""
    when = rule.when.describe()
    unless = rule.unless.describe()
    if unless != "-":
        when = ("" if when == "-" else f"{when}; ") + f"unless {unless}"
    return when.replace("; ", "\n")


def _does(rule: Rule) -> str:
    if rule.credit is not None:
        spec = rule.credit
        return (
            f"credit {spec.describe_amount()} {spec.asset or '(currency)'}\n"
            f"to {spec.account}, {spec.reason}\nexpires {spec.expires.describe()}"
        )
    assert rule.reverse is not None
    return (
        f"debit in proportion\n{rule.reverse.reason}\n"
        f"unknown original: {rule.reverse.unknown_original}"
    )


def _when(moment: float | None) -> str:
    if moment is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(moment))


OUTBOX_COLUMNS = (
    Column("id", right=True),
    Column("status"),
    Column("customer", shrink_to=14),
    Column("asset"),
    Column("amount", decimal=True),
    Column("rule", shrink_to=10),
    Column("attempts", right=True, drop=1),
    Column("last", drop=2),
    Column("transaction_id", drop=3),  # `outbox retry` and `events show` need only the id
)


def outbox_table(
    rows: Sequence[OutboxRow], width: int | None = None, steps: Sequence[int | None] = ()
) -> str:
    """The adjustments; `steps` (the demo's) puts a step number before each row."""
    table = [
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
    ]
    if not steps:
        return render_table(OUTBOX_COLUMNS, table, width)
    numbered = [["-" if n is None else n, *row] for n, row in zip(steps, table, strict=True)]
    return render_table((Column("step", right=True), *OUTBOX_COLUMNS), numbered, width)


EVENT_COLUMNS = (
    Column("id", right=True),
    Column("received (UTC)"),
    Column("connector", drop=1),
    Column("type", shrink_to=14),
    Column("event_id"),  # never cut: it is what `events show` takes
    Column("status"),
    Column("reason", shrink_to=12),
)


def events_table(rows: Sequence[InboxRow], width: int | None = None) -> str:
    return render_table(
        EVENT_COLUMNS,
        [
            [
                r.id,
                _when(r.received_at),
                r.connector,
                r.event_type,
                r.event_id,
                r.status.value,
                r.reason or "",
            ]
            for r in rows
        ],
        width,
    )
