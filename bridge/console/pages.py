"""What the console's pages show, read through the operations the CLI and admin API use.

Each function returns plain values for a template; none writes. The filters are
checked as strictly as the admin API checks them: a bad value is an OperationError
(a 400 page), never a query.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.errors import OperationError
from bridge.operating.operations import event_summary, parse_moment, plain
from bridge.storage.records import AdjustmentStatus, EventFilter, EventStatus, row_dict
from bridge.storage.store import Store

PAGE_SIZE = 50  # events on one page of the list
MAX_PAGE = 500
LATEST_FAILURES = 5
CHART_BUCKETS = 12  # the chart: the last hour in 12 bars of 5 minutes
CHART_BUCKET_SECONDS = 300
FILTER_TEXT_MAX = 200  # longest connector, type or customer a filter takes


def command(*words: str) -> str:
    """A shell command line, each word quoted as the shell needs it."""
    return " ".join(shlex.quote(w) for w in words)


def when(moment: Any) -> str:
    if not isinstance(moment, int | float):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(moment))


def age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172_800:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86_400} d"


# -- overview ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    height: float
    title: str
    series: str  # "webhooks" or "deliveries": the CSS class that colours it


def chart(activity: Mapping[str, Sequence[int]], since: float) -> dict[str, Any]:
    """Geometry of the overview's inline SVG: two bars per 5-minute window."""
    width, height, pad = 600, 120, 16
    slot = (width - 2 * pad) / CHART_BUCKETS
    peak = max([1, *activity["webhooks"], *activity["deliveries"]])
    bars: list[Bar] = []
    labels: list[dict[str, Any]] = []
    for index in range(CHART_BUCKETS):
        start = since + index * CHART_BUCKET_SECONDS
        for offset, series in enumerate(("webhooks", "deliveries")):
            number = activity[series][index]
            tall = (height - 2 * pad) * number / peak
            bars.append(
                Bar(
                    x=round(pad + index * slot + 3 + offset * (slot - 6) / 2, 1),
                    y=round(height - pad - tall, 1),
                    height=round(tall, 1),
                    title=f"{time.strftime('%H:%M', time.gmtime(start))} UTC: {number} {series}",
                    series=series,
                )
            )
        if index % 3 == 0:
            labels.append(
                {
                    "x": round(pad + index * slot, 1),
                    "text": time.strftime("%H:%M", time.gmtime(start)),
                }
            )
    return {
        "width": width,
        "height": height,
        "bar_width": round((slot - 6) / 2, 1),
        "baseline": height - pad,
        "bars": bars,
        "labels": labels,
        "peak": peak,
        "totals": {s: sum(activity[s]) for s in ("webhooks", "deliveries")},
    }


def overview(store: Store, breaker: str, now: float | None = None) -> dict[str, Any]:
    moment = time.time() if now is None else now
    counts = store.counts()
    oldest = store.oldest_pending_adjustment()
    since = moment - CHART_BUCKETS * CHART_BUCKET_SECONDS
    return {
        "events": {s.value: counts["events"].get(s.value, 0) for s in EventStatus},
        "adjustments": {s.value: counts["adjustments"].get(s.value, 0) for s in AdjustmentStatus},
        "oldest_pending": None if oldest is None else age(moment - oldest),
        "breaker": breaker,
        "chart": chart(store.activity(since, CHART_BUCKET_SECONDS, CHART_BUCKETS), since),
        "failed_events": [
            event_summary(r)
            for r in store.list_events(EventFilter(status="failed", limit=LATEST_FAILURES))
        ],
        "dead_adjustments": [
            plain(row_dict(r)) for r in store.list_adjustments("dead", LATEST_FAILURES)
        ],
    }


# -- events -----------------------------------------------------------------------------


@dataclass(frozen=True)
class EventQuery:
    """The events list's filters, as typed in the form and as the store takes them."""

    form: dict[str, str]  # what the form shows again (and the pagination links carry)
    flt: EventFilter
    cli: str


def event_query(params: Mapping[str, str], now: float | None = None) -> EventQuery:
    form = {
        k: params.get(k, "").strip()
        for k in ("status", "connector", "type", "customer", "since", "until")
    }
    for key in ("connector", "type", "customer", "since", "until"):
        if len(form[key]) > FILTER_TEXT_MAX:
            raise OperationError(f"{key} is longer than {FILTER_TEXT_MAX} characters")
    if form["status"] and form["status"] not in set(EventStatus):
        raise OperationError(f"status must be one of: {', '.join(EventStatus)}")
    before = params.get("before", "")
    if before and not (before.isascii() and before.isdigit() and len(before) <= 19):
        raise OperationError("before must be an event row id")
    flt = EventFilter(
        status=form["status"] or None,
        connector=form["connector"] or None,
        event_type=form["type"] or None,
        customer=form["customer"] or None,
        since=parse_moment(form["since"], now) if form["since"] else None,
        until=parse_moment(form["until"], now) if form["until"] else None,
        limit=PAGE_SIZE + 1,  # one more than shown: is there a next page?
        before_id=int(before) if before else None,
    )
    words = ["credyt-bridge", "events", "list"]
    for key, flag in (
        ("status", "--status"),
        ("connector", "--connector"),
        ("type", "--type"),
        ("customer", "--customer"),
        ("since", "--since"),
        ("until", "--until"),
    ):
        if form[key]:
            words += [flag, form[key]]
    return EventQuery(form, flt, command(*words))


def events_page(store: Store, query: EventQuery) -> dict[str, Any]:
    rows = store.list_events(query.flt)
    shown = rows[:PAGE_SIZE]
    more = len(rows) > PAGE_SIZE
    return {
        "events": [event_summary(r) for r in shown],
        "next_before": shown[-1].id if more and shown else None,
        "filters": query.form,
        "statuses": [s.value for s in EventStatus],
        "cli": query.cli,
        # Replay by filter takes what `replay --status` takes: with a type or customer
        # filter as well it would replay more than the list shows, so it is not offered.
        "replay_by_filter": bool(query.form["status"])
        and not (query.form["type"] or query.form["customer"]),
        "replay_cli": replay_filter_cli(query.form, dry_run=True) if query.form["status"] else "",
    }


def replay_filter_cli(form: Mapping[str, str], *, dry_run: bool) -> str:
    words = ["credyt-bridge", "replay", "--status", form["status"]]
    for key in ("connector", "since", "until"):
        if form.get(key):
            words += [f"--{key}", form[key]]
    return command(*words, *(["--dry-run"] if dry_run else []))


# -- adjustments ------------------------------------------------------------------------


def adjustments_page(store: Store, status: str, limit_text: str) -> dict[str, Any]:
    if status and status not in set(AdjustmentStatus):
        raise OperationError(f"status must be one of: {', '.join(AdjustmentStatus)}")
    limit = 100
    if limit_text:
        if not (limit_text.isascii() and limit_text.isdigit() and len(limit_text) <= 4):
            raise OperationError(f"limit must be a whole number from 1 to {MAX_PAGE}")
        limit = int(limit_text)
        if not 1 <= limit <= MAX_PAGE:
            raise OperationError(f"limit must be a whole number from 1 to {MAX_PAGE}")
    rows = store.list_adjustments(status or None, limit)
    words = ["credyt-bridge", "outbox", "list"] + (["--status", status] if status else [])
    return {
        "adjustments": [plain(row_dict(r)) for r in rows],
        "status": status,
        "limit": limit,
        "statuses": [s.value for s in AdjustmentStatus],
        "cli": command(*words, "--limit", str(limit)),
    }
