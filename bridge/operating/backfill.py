"""Backfill: list a PSP's recent events through its API and store the ones the inbox lacks.

Webhooks can be lost before they reach the bridge (an outage longer than the PSP's
retries, a misconfigured endpoint). PSPs keep their events for a while and list them
over their authenticated API; each connector's `events_api` module reads that list
(its paging, retention and retries), and this module is the PSP-neutral rest.

An event the inbox lacks is stored exactly as a received webhook is (`Store.accept`,
status pending): it came over the PSP's authenticated API instead of a signed
webhook, and from there the running bridge processes it on the normal path. An
event already stored is left alone, so a second run changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bridge.config.schema import ConnectorConfig
from bridge.errors import BackfillError, MalformedEventError
from bridge.storage.store import Store
from connectors import Connector, connector_names, connector_type
from connectors.listing import EventSource, ListedEvent

__all__ = [
    "BackfillError",
    "BackfillSummary",
    "EventSource",
    "ListedEvent",
    "API_KEY_VARIABLES",
    "backfill",
    "open_source",
    "rule_event_types",
]


# The environment variable each connector type's API key is read from (`backfill`).
API_KEY_VARIABLES = {name: connector_type(name).api_key_variable for name in connector_names()}


def open_source(
    connector: ConnectorConfig,
    api_key: str | None,
    api_base: str | None = None,
    account: str | None = None,
) -> EventSource:
    """The connector's event list; `account`: a connected account's (Stripe Connect),
    which must be one the connector maps to a Credyt account."""
    kind = connector_type(connector.type)
    key = api_key or connector.api_key
    if not key:
        raise BackfillError(
            f"no API key for connector {connector.name}: set connectors.{connector.name}.api_key "
            f"in the config or {kind.api_key_variable}"
        )
    if account is not None and account not in connector.accounts:
        raise BackfillError(
            f"connector {connector.name} maps no account {account} (accounts: "
            f"{', '.join(connector.accounts) or 'none'}): its events would not be credited"
        )
    return kind.events_api(key, api_base or connector.api_base, connector.api_version, account)


def rule_event_types(connector: ConnectorConfig) -> list[str]:
    """The event types the connector's rules act on, in the config's order, and the
    linking events their reversals need (`linking_event_types` of the connector type)."""
    seen: dict[str, None] = {}
    for rule in connector.rules:
        for event_type in rule.on:
            seen.setdefault(event_type, None)
    if any(rule.reverse is not None for rule in connector.rules):
        for event_type in connector_type(connector.type).linking_event_types:
            seen.setdefault(event_type, None)
    return list(seen)


@dataclass
class BackfillSummary:
    connector: str
    since: float
    types: list[str]
    listed: int = 0
    stored: list[str] = field(default_factory=list)  # event ids the inbox lacked
    already: int = 0
    skipped: list[str] = field(default_factory=list)  # unreadable events, with why

    def as_dict(self) -> dict[str, Any]:
        return {
            "connector": self.connector,
            "since": self.since,
            "types": self.types,
            "listed": self.listed,
            "stored": len(self.stored),
            "stored_event_ids": self.stored,
            "already_stored": self.already,
            "skipped": self.skipped,
        }


async def backfill(
    store: Store,
    connector: ConnectorConfig,
    reader: Connector,
    events: Iterator[ListedEvent],
    summary: BackfillSummary,
    *,
    now: Callable[[], float] = time.time,
) -> BackfillSummary:
    """Store every listed event the inbox lacks, as if its webhook had just arrived."""
    for listed in events:
        summary.listed += 1
        try:
            envelope = reader.envelope(listed.body)
        except MalformedEventError as exc:
            summary.skipped.append(f"{listed.event_id}: {exc}")
            continue
        if await store.accept(connector.name, envelope, listed.body, now()):
            summary.stored.append(envelope.event_id)
        else:
            summary.already += 1
    return summary
