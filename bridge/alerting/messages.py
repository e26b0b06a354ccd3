"""The words of an alert: what happened, to which customer and payment, and what fixes it.

A message is built once, when it is grouped, and stored as JSON (`payload`): a
generic webhook receives that JSON; a Slack target receives `{"text": ...}` with
Slack's control characters (`&`, `<`, `>`) escaped, so a customer id or an event's
reason (both from outside) can not mention `@channel` or forge a link. Nothing in a
message is a secret or a raw body: ids, amounts, and Credyt's answer or the event's
reason cut to a few hundred characters.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bridge.config.schema import AlertTarget

SUMMARY_EXAMPLES = 5  # alerts named one by one in a summary

# How a summary counts the alerts of each condition.
PLURALS = {
    "adjustment_dead": "adjustments went dead",
    "event_failed": "events failed",
    "backlog_age": "adjustments waited too long",
    "breaker_opened": "openings of the delivery breaker",
    "credyt_key_rejected": "rejections of the Credyt API key",
}


def _console(base_url: str | None, path: str) -> str:
    return f" Console: {base_url}{path}" if base_url else ""


# What an adjustment's kind (bridge.events.Kind) does to the wallet, in a sentence.
_ACTIONS = {"payment": "credit", "reversal": "debit", "reinstatement": "credit back"}


def _money(detail: dict[str, Any]) -> str:
    action = _ACTIONS.get(str(detail.get("kind")), "adjustment")
    amount = str(detail.get("amount") or "").removeprefix("-")
    return f"{action} of {amount} {detail.get('asset')}"


def describe(condition: str, detail: dict[str, Any], base_url: str | None) -> tuple[str, str]:
    """(a title, the whole sentence with the fixing command) for one alert."""
    if condition == "adjustment_dead":
        adj = detail["adjustment_id"]
        event = detail.get("event_id")
        source = f"{detail.get('connector')} event {event} ({detail.get('psp_event_id')})"
        answer = f"Credyt answered {detail.get('credyt_status')}: {detail.get('error')}"
        title = f"Adjustment {adj} went dead"
        text = (
            f"{title}: {_money(detail)} to customer {detail.get('customer_id')}, payment "
            f"{detail.get('payment')}, from {source}. {answer}. Fix the cause, then run "
            f"`credyt-bridge outbox retry {adj}`."
            + _console(base_url, f"/console/adjustments/{adj}")
        )
        return title, text
    if condition == "event_failed":
        event = detail["event_id"]
        title = f"Event {event} failed"
        text = (
            f"{title}: {detail.get('connector')} {detail.get('event_type')} "
            f"{detail.get('psp_event_id')}, customer {detail.get('customer_id') or 'unknown'}, "
            f"payment {detail.get('payment') or 'unknown'}: {detail.get('reason')}. See "
            f"`credyt-bridge events show {event}`; once fixed, `credyt-bridge replay {event}`."
            + _console(base_url, f"/console/events/{event}")
        )
        return title, text
    if condition == "backlog_age":
        adj = detail["adjustment_id"]
        minutes = detail["age_seconds"] / 60
        title = f"Adjustment {adj} has waited {minutes:.0f} min for Credyt"
        text = (
            f"{title}: the oldest pending adjustment ({_money(detail)} to customer "
            f"{detail.get('customer_id')}, payment {detail.get('payment')}, "
            f"{detail.get('connector')}) is older than {detail['threshold_seconds']:.0f} s. "
            f"See `credyt-bridge outbox list --status pending` and `credyt-bridge events show`"
            f" for its event; the bridge keeps retrying."
            + _console(base_url, f"/console/adjustments/{adj}")
        )
        return title, text
    if condition == "breaker_opened":
        title = "The delivery circuit breaker opened"
        text = (
            f"{title} (replica {detail.get('replica')}, {detail.get('times_opened')} times "
            "since it started): Credyt keeps failing, deliveries wait and are probed. See "
            "`credyt-bridge outbox list --status pending` and bridge_breaker_open."
        )
        return title, text
    title = "Credyt rejected the API key"
    text = (
        f"{title} (replica {detail.get('replica')}): {detail.get('problem')}. Nothing is "
        "delivered until it is fixed: set credyt.api_key and run `credyt-bridge check --online`."
    )
    return title, text


def single(condition: str, detail: dict[str, Any], base_url: str | None) -> dict[str, Any]:
    title, text = describe(condition, detail, base_url)
    return {
        "kind": "alert",
        "condition": condition,
        "title": title,
        "text": text,
        "count": 1,
        "alerts": [detail],
    }


def summary(
    condition: str, details: Sequence[dict[str, Any]], base_url: str | None
) -> dict[str, Any]:
    """One message for many alerts of one condition: a count, the first few, the command."""
    count = len(details)
    title = f"And {count} more {PLURALS.get(condition, 'alerts')}"
    examples = [describe(condition, d, base_url)[0] for d in details[:SUMMARY_EXAMPLES]]
    customers = sorted({str(d["customer_id"]) for d in details if d.get("customer_id")})
    shown = ", ".join(customers[:SUMMARY_EXAMPLES])
    if len(customers) > SUMMARY_EXAMPLES:
        shown += f" and {len(customers) - SUMMARY_EXAMPLES} more"
    command = {
        "adjustment_dead": "`credyt-bridge outbox list --status dead`; once the cause is fixed, "
        "`credyt-bridge outbox retry --dead`",
        "event_failed": "`credyt-bridge events list --status failed`; once fixed, "
        "`credyt-bridge replay --status failed`",
    }.get(condition, "`credyt-bridge outbox list --status pending`")
    text = (
        f"{title} since the last alert"
        + (f" (customers: {shown})" if shown else "")
        + f". First: {'; '.join(examples)}. See {command}."
    )
    return {
        "kind": "summary",
        "condition": condition,
        "title": title,
        "text": text,
        "count": count,
        "alerts": list(details[:SUMMARY_EXAMPLES]),
    }


def test_message() -> dict[str, Any]:
    text = "Test alert from credyt-bridge: this target receives the bridge's alerts."
    return {
        "kind": "test",
        "condition": "test",
        "title": "Test alert",
        "text": text,
        "count": 0,
        "alerts": [],
    }


def slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def body_for(target: AlertTarget, payload: dict[str, Any]) -> bytes:
    """What `target` receives for `payload`: the JSON itself, or Slack's `{"text": ...}`."""
    if target.type == "slack":
        return json.dumps({"text": slack_escape(payload["text"])}).encode()
    return json.dumps({"source": "credyt-bridge", **payload}).encode()
