"""Where a PSP sends its webhooks, and whether that covers what the rules use.

`Subscription` is one destination as the PSP's API describes it (a Stripe webhook
endpoint, a Paddle notification setting); `missing_types` says which event types the
rules act on that the destinations meant for a connector do not send.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

EVERY_EVENT = "*"  # Stripe's `enabled_events: ["*"]`


@dataclass(frozen=True)
class Subscription:
    id: str
    destination: str  # the URL the PSP posts to
    active: bool
    event_types: frozenset[str]

    def sends(self, event_type: str) -> bool:
        return EVERY_EVENT in self.event_types or event_type in self.event_types


@dataclass(frozen=True)
class Coverage:
    """The subscriptions a connector's check looked at and the types none of them sends."""

    checked: tuple[Subscription, ...]
    by_path: bool  # True: chosen because their URL ends in /webhooks/<connector>
    missing: tuple[str, ...]


def coverage(
    subscriptions: Sequence[Subscription], connector: str, wanted: Sequence[str]
) -> Coverage:
    """The active destinations whose path ends in `/webhooks/<connector>` (else every
    active one), and which of `wanted` none of them sends."""
    active = [s for s in subscriptions if s.active]
    path = f"/webhooks/{connector}"
    ours = [s for s in active if urlsplit(s.destination).path.rstrip("/").endswith(path)]
    checked = ours or active
    missing = tuple(t for t in wanted if not any(s.sends(t) for s in checked))
    return Coverage(tuple(checked), bool(ours), missing)
