"""Commands over the stored webhooks: `events list`, `events show` and `replay`."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import TYPE_CHECKING

import click

from bridge.cli.options import (
    EVENT_STATUSES,
    bridge_errors,
    config_option,
    existing_store,
    json_option,
    moment_option,
    on_terminal,
    optional_moment,
    print_json,
    progress_counter,
    require_config,
    table_width,
    wide_option,
)

if TYPE_CHECKING:
    from bridge.storage.records import EventFilter
    from bridge.storage.store import Store


FOLLOW_POLL = 0.25  # seconds between two looks at the store with --follow


@click.group()
def events() -> None:
    """List and inspect the webhooks the bridge stored.

    \b
    Example:
      credyt-bridge events list --status failed --since 24h
      credyt-bridge events show evt_1QfXzA2eZvKYlo2C
    """


@events.command("list")
@config_option
@click.option("--status", type=click.Choice(EVENT_STATUSES), help="Only events in this state.")
@click.option("--connector", help="Only this connector's events (stripe, paddle, ...).")
@click.option("--type", "event_type", metavar="TYPE", help="Only this event type.")
@click.option("--customer", help="Only events credited to this Credyt customer id.")
@click.option(
    "--account",
    metavar="ACCOUNT",
    help="Only events credited in this Credyt account (or the one a Stripe acct_... maps to).",
)
@moment_option("--since", "Received at or after")
@moment_option("--until", "Received before")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@click.option(
    "--follow",
    "-f",
    is_flag=True,
    help="Keep running: print each new webhook and its adjustments as they are "
    "processed and delivered (Ctrl-C stops).",
)
@json_option
@wide_option
@bridge_errors
def events_list(
    config_path: str | None,
    status: str | None,
    connector: str | None,
    event_type: str | None,
    customer: str | None,
    account: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    follow: bool,
    as_json: bool,
    wide: bool,
) -> None:
    """List stored events, newest first; with --follow, watch new ones arrive.

    --follow prints one line per webhook that arrives after the command starts (and
    one whenever its state changes), then one per adjustment it queued, delivered or
    lost; the other options filter what it prints, --json prints JSON lines.

    \b
    Example:
      credyt-bridge events list --status failed --connector stripe --since 2h --json
      credyt-bridge events list --account acct_1ABC
      credyt-bridge events list --follow
    """
    from bridge.operating.operations import event_summary
    from bridge.operating.tables import events_table
    from bridge.storage.records import EventFilter

    config = require_config(config_path, secrets=False)
    flt = EventFilter(
        status=status,
        connector=connector,
        event_type=event_type,
        customer=customer,
        credyt_account=config.credyt_account_named(account) if account else None,
        since=optional_moment(since),
        until=optional_moment(until),
        limit=limit,
    )
    with existing_store(config) as store:
        if follow:
            follow_events(store, flt, config.database, as_json, table_width(wide))
            return
        rows = store.list_events(flt)
    if as_json:
        print_json([event_summary(r) for r in rows])
    elif rows:
        click.echo(events_table(rows, table_width(wide)))
    else:
        click.echo("no events match")


def follow_events(
    store: Store, flt: EventFilter, database: str, as_json: bool, width: int | None
) -> None:
    """Print the follower's changes every POLL seconds until Ctrl-C or SIGTERM."""
    import json
    import signal
    import time

    from bridge.operating.following import EventFollower
    from bridge.operating.table_layout import cut
    from bridge.storage.store import redact_database

    stop: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda number, _frame: stop.append(number))
    follower = EventFollower(store, flt, since=flt.since or time.time())
    click.echo(f"following events in {redact_database(database)} (Ctrl-C stops)", err=True)
    while not stop:
        for change in follower.poll():
            if as_json:
                click.echo(json.dumps(change.as_dict()))
            else:
                click.echo(change.text() if width is None else cut(change.text(), width))
        time.sleep(FOLLOW_POLL)


@events.command("show")
@config_option
@click.argument("ref", metavar="ID")
@json_option
@wide_option
@bridge_errors
def events_show(config_path: str | None, ref: str, as_json: bool, wide: bool) -> None:
    """Show one event: raw body, normalized form, adjustments and delivery attempts.

    ID is the row id from `events list` or the PSP's event id (evt_...).

    \b
    Example:
      credyt-bridge events show evt_1QfXzA2eZvKYlo2C
    """
    from bridge.operating.describe import event_text
    from bridge.operating.operations import event_detail
    from bridge.service import connector_runtimes

    config = require_config(config_path, secrets=False)
    with existing_store(config) as store:
        detail = event_detail(store, connector_runtimes(config), ref)
    if as_json:
        print_json(detail)
    else:
        click.echo(event_text(detail, table_width(wide)))


@click.command()
@config_option
@click.argument("refs", nargs=-1, metavar="[ID]...")
@click.option("--status", type=click.Choice(EVENT_STATUSES), help="Replay every event in it.")
@click.option("--connector", help="With --status: only this connector's events.")
@moment_option("--since", "With --status: received at or after")
@moment_option("--until", "With --status: received before")
@click.option("--dry-run", is_flag=True, help="Print what the rules would produce; change nothing.")
@click.option(
    "--yes", "-y", is_flag=True, help="With --status on a terminal: replay without asking first."
)
@json_option
@bridge_errors
def replay(
    config_path: str | None,
    refs: tuple[str, ...],
    status: str | None,
    connector: str | None,
    since: str | None,
    until: str | None,
    dry_run: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Re-run the current rules on stored events.

    Runs here, against the serving bridge's database: customers are looked up in
    Credyt again, the outcome is recorded, and new adjustments go to the outbox,
    where the running bridge delivers them within a second. Replay is always safe:
    the same payment gives the same transaction ids, so nothing is credited twice.
    On a terminal, --status without --dry-run asks before it replays (--yes skips
    that) and draws a progress bar.

    \b
    Example:
      credyt-bridge replay --status failed --since 24h --dry-run
      credyt-bridge replay 42 evt_1QfXzA2eZvKYlo2C
    """
    from bridge.operating.operations import events_to_replay
    from bridge.operating.replaying import replay_stored

    config = require_config(config_path)
    with existing_store(config) as store:
        rows = events_to_replay(
            store,
            refs,
            status=status,
            connector=connector,
            since=optional_moment(since),
            until=optional_moment(until),
        )
        if status is not None and not dry_run and not yes and on_terminal() and rows:
            click.confirm(
                f"replay {len(rows)} {status} event(s) with the current rules? new "
                "adjustments go to Credyt",
                abort=True,
                err=True,
            )
        with progress_counter("replaying", len(rows)) as advance:
            outcomes = asyncio.run(
                replay_stored(config, store, rows, dry_run, lambda _outcome: advance())
            )
    if as_json:
        print_json([o.as_dict() for o in outcomes])
        return
    for outcome in outcomes:
        click.echo(outcome.describe())
    new = sum(len(o.new_transaction_ids) for o in outcomes)
    statuses = Counter(o.result.status.value for o in outcomes)
    verb = "would leave" if dry_run else "left"
    click.echo(
        f"{'dry run: ' if dry_run else ''}{len(outcomes)} event(s) replayed; {verb} "
        + (", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) or "nothing")
        + f"; {new} new adjustment(s)"
        + ("" if dry_run or not new else " queued (the running bridge delivers them)")
    )
