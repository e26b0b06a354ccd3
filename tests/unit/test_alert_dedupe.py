"""Alert deduplication and rate limiting (`bridge.alerting.dedupe.plan`), the alert
config section, and the words of a message (`bridge.alerting.messages`)."""

from __future__ import annotations

import json

import pytest

from bridge.alerting import messages
from bridge.alerting.dedupe import Plan, plan
from bridge.config.loading import parse_config
from bridge.config.schema import ALERT_CONDITIONS, AlertTarget
from bridge.errors import ConfigError

WINDOW = 600.0


def test_nothing_waiting_sends_nothing() -> None:
    assert plan([], None, 1000.0, WINDOW).empty


def test_the_first_alert_goes_out_alone_at_once() -> None:
    assert plan([7], None, 1000.0, WINDOW) == Plan(single=7)


def test_a_burst_after_a_quiet_spell_sends_its_first_alert_alone() -> None:
    waiting = list(range(1, 501))
    assert plan(waiting, None, 1000.0, WINDOW) == Plan(single=1)
    assert plan(waiting, 1000.0 - 2 * WINDOW, 1000.0, WINDOW) == Plan(single=1)


def test_what_arrives_within_the_window_waits() -> None:
    assert plan(list(range(2, 501)), 1000.0, 1000.0 + WINDOW - 1, WINDOW).empty


def test_when_the_window_has_passed_what_waited_is_one_summary() -> None:
    waiting = list(range(2, 501))
    chosen = plan(waiting, 1000.0, 1000.0 + WINDOW, WINDOW)
    assert chosen.single is None and chosen.summary == tuple(waiting)


def test_a_single_alert_after_the_window_goes_alone_not_as_a_summary() -> None:
    assert plan([9], 1000.0, 1000.0 + WINDOW + 1, WINDOW) == Plan(single=9)


def test_a_storm_costs_one_message_a_window() -> None:
    """500 alerts a minute for an hour: one message per window, never more."""
    sent_at: list[float] = []
    waiting: list[int] = []
    next_id = 0
    for minute in range(60):
        now = minute * 60.0
        waiting.extend(range(next_id, next_id + 500))
        next_id += 500
        chosen = plan(waiting, sent_at[-1] if sent_at else None, now, WINDOW)
        if not chosen.empty:
            sent_at.append(now)
            covered = (chosen.single,) if chosen.single is not None else chosen.summary
            waiting = [i for i in waiting if i not in covered]
    assert len(sent_at) == 6  # 60 minutes / 10-minute window
    assert all(b - a >= WINDOW for a, b in zip(sent_at, sent_at[1:], strict=False))


BASE = """
credyt: {api_key: key_test_123}
connectors:
  stripe: {type: stripe, secrets: ["whsec_test_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]}
"""


def test_alerts_config_is_read_with_defaults() -> None:
    config = parse_config(
        BASE + "alerts:\n  targets:\n    - {type: slack, url: 'https://hooks.example/T/1'}\n"
    )
    assert config.alerts is not None
    assert config.alerts.targets == (AlertTarget("slack", "slack", "https://hooks.example/T/1"),)
    assert config.alerts.conditions == frozenset(ALERT_CONDITIONS)
    assert config.alerts.backlog_age == 1800.0 and config.alerts.window == 600.0


def test_alerts_on_picks_conditions_and_a_backlog_age() -> None:
    config = parse_config(
        BASE
        + "alerts:\n  targets: [{type: webhook, url: 'http://127.0.0.1:9/x', name: pager}]\n"
        + "  on: {adjustment_dead: true, backlog_age: 15m}\n  window: 2m\n"
        + "  base_url: https://bridge.example.com/\n"
    )
    assert config.alerts is not None
    assert config.alerts.conditions == {"adjustment_dead", "backlog_age"}
    assert config.alerts.backlog_age == 900.0 and config.alerts.window == 120.0
    assert config.alerts.base_url == "https://bridge.example.com"


def test_no_alerts_section_means_no_alerts() -> None:
    assert parse_config(BASE).alerts is None


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("alerts:\n  targets: []\n", r"alerts\.targets: name at least one target"),
        (
            "alerts:\n  targets: [{type: pager, url: 'https://x.example'}]\n",
            r"alerts\.targets\[0\]\.type: must be one of webhook, slack",
        ),
        (
            "alerts:\n  targets: [{type: slack, url: 'ftp://secret-token'}]\n",
            r"alerts\.targets\[0\]\.url: must be an http\(s\) URL$",
        ),
        (
            "alerts:\n  targets: [{type: slack, url: 'https://x.example'}]\n  on: {dead: true}\n",
            r"alerts\.on\.dead: unknown key",
        ),
        (
            "alerts:\n  targets: [{type: slack, url: 'https://x.example'}]\n  window: soon\n",
            r"alerts\.window: must be a duration",
        ),
        (
            "alerts:\n  targets:\n    - {type: slack, url: 'https://a.example', name: x}\n"
            "    - {type: slack, url: 'https://b.example', name: x}\n",
            r"alerts\.targets\[1\]\.name: two targets are named 'x'",
        ),
    ],
)
def test_alerts_config_mistakes_name_the_line_and_key(section: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"config\.yaml:\d+: " + message) as caught:
        parse_config(BASE + section)
    assert "secret-token" not in str(caught.value)


DEAD = {
    "adjustment_id": 42,
    "connector": "stripe",
    "customer_id": "cust_<!channel>",
    "payment": "in_1",
    "asset": "USD",
    "amount": "49.99",
    "kind": "credit",
    "event_id": 7,
    "psp_event_id": "evt_1",
    "credyt_status": 422,
    "error": "bad",
}


def test_a_message_names_the_fix_and_links_the_console_when_a_base_url_is_set() -> None:
    payload = messages.single("adjustment_dead", DEAD, "https://bridge.example.com")
    assert "credyt-bridge outbox retry 42" in payload["text"]
    assert "https://bridge.example.com/console/adjustments/42" in payload["text"]
    assert "Console" not in messages.single("adjustment_dead", DEAD, None)["text"]


def test_slack_gets_text_with_its_control_characters_escaped() -> None:
    payload = messages.single("adjustment_dead", DEAD, None)
    slack = json.loads(messages.body_for(AlertTarget("ops", "slack", "https://x"), payload))
    assert set(slack) == {"text"}
    assert "<!channel>" not in slack["text"] and "&lt;!channel&gt;" in slack["text"]
    hook = json.loads(messages.body_for(AlertTarget("h", "webhook", "https://x"), payload))
    assert hook["alerts"] == [DEAD] and hook["condition"] == "adjustment_dead"


def test_a_summary_counts_and_names_a_few() -> None:
    details = [{**DEAD, "adjustment_id": i, "customer_id": f"cust_{i % 9}"} for i in range(499)]
    payload = messages.summary("adjustment_dead", details, None)
    assert payload["text"].startswith("And 499 more adjustments went dead")
    assert payload["count"] == 499 and len(payload["alerts"]) == messages.SUMMARY_EXAMPLES
    assert "and 4 more" in payload["text"]  # 9 customers, 5 named
