"""What a stored payment would credit on another basis (`amount: net` instead of the
configured `paid`), worked out by the real rule engine: the event's connector with its
`paid` credit rules switched to the basis, through a `Processor` in dry run. Nothing is
recorded and nothing is sent to Credyt (only the asset precision is read from it).
The demo uses it to show what `net` would credit for its taxed Paddle top-up."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from decimal import Decimal

from bridge.config.schema import Config, Rule
from bridge.credyt.client import CredytClient
from bridge.errors import NotFoundError
from bridge.events import Amounts, PaymentEvent
from bridge.operating.operations import replay_event
from bridge.service import build_processor
from bridge.storage.records import EventStatus
from bridge.storage.store import Store


@dataclass(frozen=True)
class BasisPreview:
    """The credits a payment would get on `basis`, beside what it was worth."""

    basis: str
    amounts: Amounts | None  # the payment's paid, tax, net... (None: it says none)
    credits: tuple[tuple[str, Decimal], ...]  # (asset, amount) of each credit, in order
    reason: str | None  # why there are none (the dry run's reason), else None


def on_basis(config: Config, connector: str, basis: str) -> Config:
    """`config` with each credit rule of `connector` that credits the amount paid
    crediting `basis` instead (fixed amounts and other connectors unchanged)."""

    def switched(rule: Rule) -> Rule:
        spec = rule.credit
        if spec is None or spec.amount is not None or spec.basis != "paid":
            return rule
        return replace(rule, credit=replace(spec, basis=basis))

    found = config.connectors[connector]
    connectors = dict(config.connectors)
    connectors[connector] = replace(found, rules=tuple(switched(r) for r in found.rules))
    return replace(config, connectors=connectors)


async def preview_basis(
    config: Config, store: Store, client: CredytClient, event_ref: str, basis: str
) -> BasisPreview:
    """What the stored event `event_ref` would credit with its connector's `paid` rules
    on `basis`, by a dry run of `config`'s rules so changed (see `on_basis`)."""
    row = store.get_event(event_ref)
    if row is None:
        raise NotFoundError(f"no event {event_ref!r}")
    changed = on_basis(config, row.connector, basis)
    processor = build_processor(changed, store, client, customer_cache=0)
    outcome = await replay_event(processor, row, dry_run=True)
    normalized = processor.connectors[row.connector].connector.normalize(
        json.loads(row.body or b"{}")
    )
    amounts = normalized.amounts if isinstance(normalized, PaymentEvent) else None
    result = outcome.result
    credits = tuple((a.asset, Decimal(a.amount)) for a in result.adjustments)
    reason = None if result.status is EventStatus.PROCESSED and credits else result.reason
    return BasisPreview(basis, amounts, credits, reason)
