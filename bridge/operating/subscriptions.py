"""`check --online`'s look at the PSPs: does each connector's webhook destination send
every event type its rules act on? A refund rule whose event is not subscribed
silently never fires, so a missing type is an error with the rule it starves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from bridge.config.schema import Config, ConnectorConfig
from bridge.errors import SubscriptionCheckError
from bridge.operating.backfill import rule_event_types
from connectors import connector_type
from connectors.subscriptions import Coverage, coverage


@dataclass(frozen=True)
class ConnectorSubscriptions:
    connector: ConnectorConfig
    coverage: Coverage | None  # None: no API key to ask with
    wanted: tuple[str, ...]

    def lines(self) -> list[str]:
        """What `check --online` prints for the connector (problems are in `problem`)."""
        c = self.connector
        kind = connector_type(c.type)
        what = "webhook endpoint" if c.type == "stripe" else "notification setting"
        if self.coverage is None:
            return [
                f"{c.name}: subscriptions not checked: no API key "
                f"(set {kind.api_key_variable} or connectors.{c.name}.api_key)"
            ]
        if not self.coverage.checked:
            return []
        names = ", ".join(f"{s.id} {s.destination}" for s in self.coverage.checked)
        chosen = "" if self.coverage.by_path else f" (none ends in /webhooks/{c.name})"
        missing, total = len(self.coverage.missing), len(self.wanted)
        verdict = f"all {total}" if not missing else f"{total - missing} of the {total}"
        return [f"{c.name}: {what}s send {verdict} rule event types: {names}{chosen}"]

    def problem(self) -> str | None:
        c = self.connector
        if self.coverage is None:
            return None
        if not self.coverage.checked:
            return f"{c.name}: {c.type} has no active webhook destination; no event reaches it"
        if not self.coverage.missing:
            return None
        starved = [
            f"{t} (rule {', '.join(r.name for r in c.rules if t in r.on) or 'linking'})"
            for t in self.coverage.missing
        ]
        return (
            f"{c.name}: {c.type} does not send {', '.join(starved)}; add them to the "
            "subscription or those rules never fire"
        )


def check_subscriptions(config: Config) -> list[ConnectorSubscriptions]:
    """Each connector's subscriptions, asked with its API key ($STRIPE_API_KEY /
    $PADDLE_API_KEY, else `api_key` in the config); one without a key is not asked."""
    found = []
    for connector in config.connectors.values():
        kind = connector_type(connector.type)
        wanted = tuple(rule_event_types(connector))
        key = os.environ.get(kind.api_key_variable) or connector.api_key
        if not key or not wanted:
            found.append(ConnectorSubscriptions(connector, None, wanted))
            continue
        try:
            listed = kind.subscriptions(key, connector.api_base, connector.api_version)
        except SubscriptionCheckError as exc:
            raise SubscriptionCheckError(f"{connector.name}: {exc}") from exc
        found.append(
            ConnectorSubscriptions(connector, coverage(listed, connector.name, wanted), wanted)
        )
    return found
