"""The `alerts:` section: where alerts go, on what, and how often.

```yaml
alerts:
  targets:
    - {type: slack, url: "${SLACK_WEBHOOK_URL}", name: ops}
    - {type: webhook, url: "https://pager.example.com/hooks/credyt"}
  on: {adjustment_dead: true, event_failed: true, backlog_age: 30m,
       breaker_opened: true, credyt_key_rejected: true}
  window: 10m
  base_url: https://bridge.example.com
```

Without `on:` every condition is on (`backlog_age: 30m`). A mistake names the file,
the line and the key, like the rest of the config.
"""

from __future__ import annotations

import re

from bridge.config.schema import ALERT_CONDITIONS, ALERT_TARGET_TYPES, AlertsConfig, AlertTarget
from bridge.config.yamlsource import Section

_TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DEFAULT_BACKLOG_AGE = 1800.0


def parse_alerts(section: Section) -> AlertsConfig | None:
    """The alerts configuration; None when there is no `alerts:` section."""
    if not section.data:
        if section.source.lines.get(section.path) is not None:
            section.error(None, "needs at least one target under targets:")
        return None
    section.only("targets", "on", "window", "base_url")
    targets = _targets(section)
    conditions, backlog_age = _conditions(section)
    window = section.duration("window", AlertsConfig.window)
    if window is not None and window < 1:
        section.error("window", "must be at least 1s")
        window = AlertsConfig.window
    base_url = section.text("base_url")
    if base_url is not None and not base_url.startswith(("http://", "https://")):
        section.error("base_url", f"must be an http(s) URL, got {base_url!r}")
    return AlertsConfig(
        targets=targets,
        conditions=conditions,
        backlog_age=backlog_age,
        window=window or AlertsConfig.window,
        base_url=base_url.rstrip("/") if base_url else None,
    )


def _targets(section: Section) -> tuple[AlertTarget, ...]:
    items = section.sections("targets")
    if not items:
        section.error("targets", "name at least one target (type: webhook or slack, url: ...)")
    found: list[AlertTarget] = []
    for index, item in enumerate(items):
        item.only("type", "url", "name")
        kind = item.choice("type", ALERT_TARGET_TYPES, "webhook")
        if not item.has("type"):
            item.error("type", f"is required (one of: {', '.join(ALERT_TARGET_TYPES)})")
        url = item.text("url", required=True) or ""
        if url and not url.startswith(("http://", "https://")):
            # The URL may hold a token (Slack's does): say what is wrong, never print it.
            item.error("url", "must be an http(s) URL")
        name = item.text("name") or (kind if index == 0 else f"{kind}-{index + 1}")
        if not _TARGET_NAME.match(name):
            item.error("name", "must be 1-64 letters, digits, '.', '_' or '-'")
        if any(t.name == name for t in found):
            item.error("name", f"two targets are named {name!r}")
        found.append(AlertTarget(name=name, type=kind, url=url))
    return tuple(found)


def _conditions(section: Section) -> tuple[frozenset[str], float | None]:
    if not section.has("on"):
        return frozenset(ALERT_CONDITIONS), DEFAULT_BACKLOG_AGE
    on = section.section("on")
    on.only(*ALERT_CONDITIONS)
    chosen: set[str] = set()
    backlog_age: float | None = None
    for name in on.data:
        if name not in ALERT_CONDITIONS:
            continue
        if name == "backlog_age":
            value = on.data[name]
            if value is False:
                continue
            backlog_age = on.duration(name, None)
            if backlog_age is not None and backlog_age <= 0:
                on.error(name, "must be a duration above 0, such as 15m")
                backlog_age = None
            if backlog_age is not None:
                chosen.add(name)
        elif on.flag(name, None):
            chosen.add(name)
    if not chosen and not on.source.errors:
        section.error("on", "turns every condition off; remove the alerts: section instead")
    return frozenset(chosen), backlog_age
