"""Plain-text views of one event and its adjustments, for `credyt-bridge events show`."""

from __future__ import annotations

import json
import time
from typing import Any

from bridge.operating.table_layout import Column, cut_lines, render_table

ATTEMPT_COLUMNS = (
    Column("attempt at"),
    Column("http", right=True),
    Column("outcome"),
    Column("took", right=True, drop=1),
    Column("Credyt answered", shrink_to=16),
)
INDENT = "     "


def _when(moment: Any) -> str:
    if not isinstance(moment, int | float):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(moment))


def event_text(detail: dict[str, Any], width: int | None = None) -> str:
    """`operations.event_detail` as sections: event, raw, normalized, adjustments, attempts,
    each line fit to `width` (None: whole lines, as `--wide`)."""
    event = detail["event"]
    lines = [
        f"event {event['id']}: {event['connector']} {event['event_type']} {event['event_id']}",
        f"  status      {event['status']}" + (f": {event['reason']}" if event["reason"] else ""),
        f"  received    {_when(event['received_at'])}",
        f"  processed   {event['attempts']} time(s), last {_when(event['updated_at'])}",
        f"  payment     {event['payment_key'] or '-'}",
        f"  customer    {event['customer_id'] or '-'}",
    ]
    if event["status"] == "pending" and event["next_attempt_at"]:
        lines.append(f"  next try    {_when(event['next_attempt_at'])}")
    raw_title = "raw event (as the PSP sent it" + (
        "):" if width is None else "; long lines cut, --wide or --json for all of it):"
    )
    lines += ["", raw_title, json.dumps(detail["raw"], indent=2)]
    lines += ["", "normalized (what the connector reads from it now):"]
    normalized = detail["normalized"]
    key_width = max((len(k) for k in normalized), default=0)
    for key, value in normalized.items():
        text = value if isinstance(value, str) else json.dumps(value)
        lines.append(f"  {key.ljust(key_width)}  {text}")
    lines += amounts_lines(normalized.get("amounts"), normalized.get("kind"))
    adjustments = detail["adjustments"]
    lines += ["", f"adjustments ({len(adjustments)}):"]
    if not adjustments:
        lines.append("  (none)")
    for adj in adjustments:
        lines.append(
            f"  #{adj['id']} {adj['status']}: {adj['kind']} {adj['amount']} {adj['asset']}"
            f" to {adj['customer_id']} (rule {adj['rule']}, account {adj['account']})"
        )
        if adj.get("credited"):
            lines.append(f"     credited    amount {adj['credited']}")
        lines.append(f"     transaction_id {adj['transaction_id']}")
        if adj["status"] == "pending" and adj["next_attempt_at"]:
            lines.append(f"     next attempt {_when(adj['next_attempt_at'])}")
        attempts = adj["attempts_made"]
        if not attempts:
            lines.append("     no delivery attempt yet")
            continue
        rows = [
            [
                _when(a["started_at"]),
                a["status_code"] if a["status_code"] is not None else "-",
                a["outcome"],
                f"{a['duration_ms']:.0f} ms" if a["duration_ms"] is not None else "-",
                (a["response"] or "").replace("\n", " ")[:160] or "-",
            ]
            for a in attempts
        ]
        inner = None if width is None else width - len(INDENT)
        table = render_table(ATTEMPT_COLUMNS, rows, inner)
        lines.extend(INDENT + line for line in table.splitlines())
    return cut_lines("\n".join(lines), width)


def amounts_lines(amounts: Any, kind: Any = "payment") -> list[str]:
    """What the payment was worth on every basis (`-`: the PSP object does not say);
    for a refund or chargeback, the PSP's own split of it."""
    if not isinstance(amounts, dict):
        return []
    currency = amounts.get("currency", "")
    what = "what the credit rules choose from" if kind == "payment" else "the PSP's own split"
    lines = ["", f"amounts (in {currency}, {what}):"]
    for name, what in (
        ("paid", "gross, tax included"),
        ("tax", ""),
        ("net", "paid excluding tax"),
        ("subtotal", "list price, before discounts and tax"),
        ("discount", ""),
    ):
        value = amounts.get(name)
        shown = f"{value} {currency}" if value is not None else "-"
        lines.append(f"  {name:<9} {shown:<16} {what}".rstrip())
    if amounts.get("presentment_currency"):
        lines.append(
            f"  customer  {amounts.get('presentment_amount')} "
            f"{amounts['presentment_currency']}  what the customer saw (Adaptive Pricing)"
        )
    return lines


def summary_line(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {what}" for what, n in counts.items()) or "nothing"
