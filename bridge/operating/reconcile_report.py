"""What `credyt-bridge reconcile` found: one row per payment (or reversal) that is not
`ok`, counts and totals per status and currency, as text and as JSON.

Rows are kept only for what is not `ok`, so a run over 100,000 healthy payments holds
counts, not rows.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

# Every status a payment can be reported with, in the order the summary lists them.
OK = "ok"  # the PSP's payment, the bridge's adjustment and Credyt's transaction agree
MISSING = "missing"  # no adjustment was ever decided for it: no event reached the bridge
NOT_DELIVERED = "not delivered"  # its adjustment is pending or dead in the outbox
ABSENT = "absent in Credyt"  # delivered per the bridge; Credyt has no such transaction
AMOUNT_DIFFERS = "amount differs"  # Credyt holds another amount under its transaction id
ASSET_DIFFERS = "asset differs"  # Credyt holds another asset under its transaction id
UNEXPECTED = "unexpected"  # an adjustment the bridge decided; the PSP shows no payment
STATUSES = (OK, MISSING, NOT_DELIVERED, ABSENT, AMOUNT_DIFFERS, ASSET_DIFFERS, UNEXPECTED)
# What `--fix` repairs; the rest needs a human.
FIXABLE = frozenset({MISSING, NOT_DELIVERED, ABSENT})


def money(amount: Decimal) -> str:
    """An amount as the PSP's currency writes it: fixed point, its decimal places kept."""
    return f"{amount:f}"


@dataclass
class Finding:
    """One payment, refund or dispute and what reconcile found for it."""

    status: str
    kind: str  # payment, reversal, reinstatement
    object_id: str  # the PSP object (invoice, refund, txn...), or the payment key
    payment_key: str
    currency: str
    amount: Decimal  # the PSP's amount, major units
    detail: str
    transaction_id: str | None = None
    customer_id: str | None = None
    outbox_id: int | None = None
    # For `missing`: the event that would have carried it, stored by `--fix`.
    event_id: str | None = None
    event_body: bytes | None = field(default=None, repr=False)
    fixed: str | None = None  # what --fix did about it

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "kind": self.kind,
            "object_id": self.object_id,
            "payment_key": self.payment_key,
            "currency": self.currency,
            "amount": money(self.amount),
            "transaction_id": self.transaction_id,
            "customer_id": self.customer_id,
            "outbox_id": self.outbox_id,
            "detail": self.detail,
            "fixed": self.fixed,
        }


@dataclass
class ReconcileReport:
    connector: str
    since: float
    until: float
    listed: int = 0  # PSP objects read
    skipped: int = 0  # objects no rule acts on (an ignored status, no matching rule)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    totals: dict[str, dict[str, Decimal]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(Decimal))
    )
    rows: list[Finding] = field(default_factory=list)
    read_backs: int = 0  # Credyt transactions read
    finished_at: float | None = None
    fixed: dict[str, int] = field(default_factory=dict)

    def add(self, finding: Finding) -> None:
        self.counts[finding.status] += 1
        self.totals[finding.status][finding.currency] += finding.amount
        if finding.status != OK:
            self.rows.append(finding)

    @property
    def all_ok(self) -> bool:
        return not any(n for status, n in self.counts.items() if status != OK)

    def as_dict(self, rows: int | None = None) -> dict[str, Any]:
        """The report for --json; `rows`: at most that many rows (all when None)."""
        return {
            "connector": self.connector,
            "since": self.since,
            "until": self.until,
            "finished_at": self.finished_at,
            "listed": self.listed,
            "skipped": self.skipped,
            "read_backs": self.read_backs,
            "ok": self.all_ok,
            "counts": dict(self.counts),
            "totals": {
                status: {cur: money(v) for cur, v in sorted(by_currency.items())}
                for status, by_currency in self.totals.items()
                if by_currency
            },
            "fixed": dict(self.fixed),
            "rows": [row.as_dict() for row in self.sorted_rows()[:rows]],
            "rows_total": len(self.rows),
        }

    def to_json(self, rows: int | None = None) -> str:
        return json.dumps(self.as_dict(rows), sort_keys=True)

    def sorted_rows(self) -> list[Finding]:
        """The rows by status (in STATUSES' order), then by PSP object."""
        return sorted(self.rows, key=lambda r: (STATUSES.index(r.status), r.object_id))

    def lines(self) -> list[str]:
        """The summary per status with totals per currency, then the rows."""
        out = [
            f"{self.connector}: {self.listed} PSP object(s) listed, {self.skipped} of them no "
            f"rule acts on; {sum(self.counts.values())} payment(s), refund(s) and dispute(s) "
            "checked"
        ]
        for status in STATUSES:
            totals = ", ".join(
                f"{money(v)} {cur}" for cur, v in sorted(self.totals[status].items())
            )
            out.append(
                f"  {status:<17} {self.counts[status]:>7}" + (f"  {totals}" if totals else "")
            )
        for row in self.sorted_rows():
            ids = f" transaction {row.transaction_id}" if row.transaction_id else ""
            fixed = f" -> {row.fixed}" if row.fixed else ""
            out.append(
                f"{row.status}: {row.kind} {row.object_id} {money(row.amount)} "
                f"{row.currency}{ids}: {row.detail}{fixed}"
            )
        return out
