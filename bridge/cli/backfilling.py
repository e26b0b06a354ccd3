"""The `backfill` command: store the PSP's recent events the bridge never received."""

from __future__ import annotations

import asyncio
import os
import time

import click

from bridge.cli.options import (
    bridge_errors,
    config_option,
    existing_store,
    json_option,
    print_json,
    progress,
    require_config,
)
from bridge.config.schema import Config, ConnectorConfig


@click.command()
@config_option
@click.argument("connector_ref", metavar="stripe|paddle|CONNECTOR")
@click.option(
    "--since",
    "since_text",
    metavar="DURATION",
    help="How far back to list, e.g. 3d (Stripe keeps 30 days, Paddle 90).",
)
@click.option(
    "--event",
    "event_ids",
    multiple=True,
    metavar="EVENT_ID",
    help="Instead of --since: fetch this one event by id (repeatable; Stripe only).",
)
@click.option(
    "--resume",
    "resume",
    metavar="CURSOR",
    default=None,
    help="Continue a run that stopped, after the cursor its error printed.",
)
@click.option(
    "--account",
    "account",
    metavar="ACCT",
    default=None,
    help="Stripe Connect: list this connected account's events (Stripe-Account header); "
    "it must be in the connector's accounts:.",
)
@json_option
@bridge_errors
def backfill(
    config_path: str | None,
    connector_ref: str,
    since_text: str | None,
    event_ids: tuple[str, ...],
    resume: str | None,
    account: str | None,
    as_json: bool,
) -> None:
    """Store the PSP's recent events that the bridge never received.

    Lists the event types the connector's rules use through the PSP's API (key:
    $STRIPE_API_KEY / $PADDLE_API_KEY, else the connector's api_key in the config),
    every page, and stores each event the inbox lacks as a received webhook; the
    running bridge then processes it. Running it again changes nothing. A run that
    stops (the PSP still failing after its retries) prints a cursor: the same
    command with `--resume CURSOR` goes on from there.

    With --event, fetches just those events (like `stripe events resend`), whatever
    their type. A progress bar shows on a terminal; piped, only the summary prints.

    \b
    Example:
      STRIPE_API_KEY=rk_live_... credyt-bridge backfill stripe --since 3d
      STRIPE_API_KEY=rk_live_... credyt-bridge backfill stripe --since 3d --account acct_1ABC
      credyt-bridge backfill stripe --event evt_1QfXzA2eZvKYlo2C
    """
    from bridge.config.schema import find_connector
    from bridge.errors import BackfillError
    from bridge.operating.backfill import (
        API_KEY_VARIABLES,
        BackfillSummary,
        open_source,
        rule_event_types,
    )
    from bridge.operating.backfill import backfill as run_backfill
    from bridge.operating.operations import parse_age
    from bridge.service import make_connector

    if bool(since_text) == bool(event_ids):
        raise click.UsageError("give --since DURATION or --event EVENT_ID (one of them)")
    config = require_config(config_path)
    connector = find_connector(config, connector_ref)
    if event_ids:
        _backfill_events(config, connector, event_ids, as_json)
        return
    assert since_text is not None
    types = rule_event_types(connector)
    if not types:
        raise click.ClickException(f"connector {connector.name} has no rules: nothing to backfill")
    wanted = parse_age(since_text)
    with existing_store(config) as store:
        env_key = os.environ.get(API_KEY_VARIABLES.get(connector.type, ""))
        source = open_source(connector, env_key, account=account)
        try:
            if wanted > source.retention:
                click.echo(
                    f"note: {source.psp} keeps events {source.retention / 86400:g} days;"
                    " listing those",
                    err=True,
                )
            since = time.time() - min(wanted, source.retention)
            summary = BackfillSummary(connector.name, since, types)
            with progress(
                source.events(since, types, resume),
                label=f"listing {source.psp} events ({', '.join(types)})",
            ) as listed:
                try:
                    reader = make_connector(connector)
                    asyncio.run(run_backfill(store, connector, reader, iter(listed), summary))
                except BackfillError as exc:
                    cursor = source.cursor or resume
                    if not cursor:
                        raise
                    raise BackfillError(
                        f"{exc}; {len(summary.stored)} missing event(s) were stored before it "
                        f"stopped; to go on from there: credyt-bridge backfill {connector_ref} "
                        f"--since {since_text} --resume {cursor}"
                        + (f" --account {account}" if account else "")
                    ) from exc
        finally:
            source.close()
    if as_json:
        print_json(summary.as_dict())
        return
    click.echo(
        f"{connector.name}: {summary.listed} event(s) listed since "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(since))}; "
        f"{len(summary.stored)} were missing and are stored for processing; "
        f"{summary.already} already stored"
        + (f"; {len(summary.skipped)} unreadable" if summary.skipped else "")
    )
    for event_id in summary.stored:
        click.echo(f"  stored {event_id}")
    for line in summary.skipped:
        click.echo(f"  skipped {line}", err=True)


def _backfill_events(
    config: Config, connector: ConnectorConfig, event_ids: tuple[str, ...], as_json: bool
) -> None:
    """`backfill --event`: fetch each event by id and store it unless the inbox has it."""
    from bridge.operating.backfill import API_KEY_VARIABLES, BackfillSummary, open_source
    from bridge.operating.backfill import backfill as run_backfill
    from bridge.service import make_connector

    with existing_store(config) as store:
        env_key = os.environ.get(API_KEY_VARIABLES.get(connector.type, ""))
        source = open_source(connector, env_key)
        try:
            listed = [source.event(event_id) for event_id in event_ids]
        finally:
            source.close()
        summary = BackfillSummary(connector.name, 0.0, sorted({e.event_type for e in listed}))
        asyncio.run(
            run_backfill(store, connector, make_connector(connector), iter(listed), summary)
        )
    if as_json:
        print_json(summary.as_dict())
        return
    click.echo(
        f"{connector.name}: {len(listed)} event(s) fetched; {len(summary.stored)} were missing "
        f"and are stored for processing; {summary.already} already stored"
    )
    for event_id in summary.stored:
        click.echo(f"  stored {event_id}")
    for line in summary.skipped:
        click.echo(f"  skipped {line}", err=True)
