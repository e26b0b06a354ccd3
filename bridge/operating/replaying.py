"""Replay from the command line: the current rules on stored events, with Credyt for
customer look-ups and asset precisions, against the serving bridge's store."""

from __future__ import annotations

from collections.abc import Sequence

from bridge.config.schema import Config
from bridge.credyt.client import CredytClient
from bridge.operating.operations import ReplayOutcome, replay_events
from bridge.service import build_processor
from bridge.storage.records import InboxRow
from bridge.storage.store import Store


async def replay_stored(
    config: Config, store: Store, rows: Sequence[InboxRow], dry_run: bool
) -> list[ReplayOutcome]:
    """Replay `rows` through a Processor built from `config`; see `replay_events`."""
    client = CredytClient(
        config.credyt.api_url, config.credyt.api_key, timeout=config.credyt.timeout
    )
    try:
        processor = build_processor(config, store, client, customer_cache=0)
        return await replay_events(processor, rows, dry_run=dry_run)
    finally:
        await client.aclose()
