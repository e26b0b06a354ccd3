"""Replay from the command line: the current rules on stored events, with Credyt for
customer look-ups and asset precisions, against the serving bridge's store."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bridge.config.schema import Config
from bridge.credyt.client import CredytClient
from bridge.operating.operations import ReplayOutcome, replay_event
from bridge.service import build_processor
from bridge.storage.records import InboxRow
from bridge.storage.store import Store


async def replay_stored(
    config: Config,
    store: Store,
    rows: Sequence[InboxRow],
    dry_run: bool,
    on_replayed: Callable[[ReplayOutcome], None] = lambda _outcome: None,
) -> list[ReplayOutcome]:
    """Replay `rows` through a Processor built from `config`, one by one (see
    `replay_event`), telling `on_replayed` after each (the CLI's progress bar)."""
    client = CredytClient(
        config.credyt.api_url, config.credyt.api_key, timeout=config.credyt.timeout
    )
    try:
        processor = build_processor(config, store, client, customer_cache=0)
        outcomes = []
        for row in rows:
            outcomes.append(await replay_event(processor, row, dry_run=dry_run))
            on_replayed(outcomes[-1])
        return outcomes
    finally:
        await client.aclose()
