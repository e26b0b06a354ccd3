"""The v4 migration's back-fill, the same for both stores: the classes of the ids
already linked, and the adjustments already recorded, as decisions.

A pure function of the rows read before: it returns the inserts (`?` placeholders)
and each store's migration runs them on its connection.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from bridge.storage.queries import Statement
from bridge.storage.rows import DECIDED_COLUMNS_V4, outbox_row

# Every (id, payment key) pair the tables already know: what the v4 migration of either
# store puts into classes.
KNOWN_PAYMENT_IDS = (
    "SELECT id, payment_key FROM payment_links UNION ALL"
    " SELECT payment_key, payment_key FROM outbox UNION ALL"
    " SELECT payment_key, payment_key FROM inbox WHERE payment_key IS NOT NULL"
)


def fill_decisions(
    pairs: Sequence[Sequence[Any]], outbox: Sequence[Sequence[Any]]
) -> list[Statement]:
    """The inserts into `payment_ids` and `decided` that `pairs` (KNOWN_PAYMENT_IDS) and
    the `outbox` rows (OUTBOX_COLUMNS, by id) stand for."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        if a and b:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    inserts: list[Statement] = [
        ("INSERT INTO payment_ids (id, class) VALUES (?, ?)", (x, find(x))) for x in sorted(parent)
    ]
    rows = [outbox_row(r) for r in outbox]
    credits = {r.transaction_id: r for r in rows if r.kind == "payment"}
    for r in rows:
        original = family = None
        reversed_minor = 0
        reference = r.reversal_key
        if reference is not None:
            # recorded as "<refund>[:<cumulative total>]:<rule>": the refund alone
            reference = re.sub(r":\d+$", "", reference.rsplit(":", 1)[0])
        if r.kind != "payment":
            metadata = json.loads(r.body).get("metadata") or {}
            original = metadata.get("original_transaction_id")
            family = "dispute" if "dispute" in metadata else "refund"
            credit = credits.get(original or "")
            if credit is not None and Decimal(credit.amount):
                reversed_minor = int(
                    (
                        abs(Decimal(r.amount))
                        * credit.payment_amount_minor
                        / Decimal(credit.amount)
                    ).to_integral_value()
                )
            else:
                reversed_minor = r.payment_amount_minor
        inserts.append(
            (
                f"INSERT INTO decided ({DECIDED_COLUMNS_V4}, decided_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    r.transaction_id,
                    r.connector,
                    r.rule,
                    r.kind,
                    r.payment_key,
                    reference,
                    original,
                    family,
                    r.customer_id,
                    r.asset,
                    r.account,
                    r.amount,
                    r.payment_amount_minor,
                    reversed_minor,
                    r.created_at,
                ),
            )
        )
    return inserts
