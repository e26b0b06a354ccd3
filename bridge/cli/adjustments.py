"""Commands over the adjustments: `outbox list`, `outbox retry`, `outbox approve`,
`outbox reject` and `prune`."""

from __future__ import annotations

import asyncio
import sys

import click

from bridge.cli.options import (
    ADJUSTMENT_STATUSES,
    bridge_errors,
    config_option,
    existing_store,
    json_option,
    print_json,
    require_config,
    table_width,
    wide_option,
)


@click.group()
def outbox() -> None:
    """List the adjustments for Credyt, retry the ones that died, decide held ones.

    \b
    Example:
      credyt-bridge outbox list --status dead
      credyt-bridge outbox retry --dead
      credyt-bridge outbox approve 42
    """


@outbox.command("list")
@config_option
@click.option("--status", type=click.Choice(ADJUSTMENT_STATUSES), help="Only this state.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@json_option
@wide_option
@bridge_errors
def outbox_list(
    config_path: str | None, status: str | None, limit: int, as_json: bool, wide: bool
) -> None:
    """List adjustments, newest first.

    \b
    Example:
      credyt-bridge outbox list --status dead --json
    """
    from bridge.operating.operations import plain
    from bridge.operating.tables import outbox_table
    from bridge.storage.records import row_dict

    config = require_config(config_path, secrets=False)
    with existing_store(config) as store:
        rows = store.list_adjustments(status, limit)
    if as_json:
        print_json([plain(row_dict(r)) for r in rows])
    elif rows:
        click.echo(outbox_table(rows, table_width(wide)))
    else:
        click.echo("no adjustments match")


@outbox.command("retry")
@config_option
@click.argument("refs", nargs=-1, metavar="[ID]...")
@click.option("--dead", is_flag=True, help="Retry every dead adjustment.")
@bridge_errors
def outbox_retry(config_path: str | None, refs: tuple[str, ...], dead: bool) -> None:
    """Queue adjustments again, due now, with a fresh attempt budget.

    ID is the row id from `outbox list` or the transaction id. Delivered, held and
    rejected ones are left alone (a held one needs `outbox approve`). The running
    bridge picks them up within a second.

    \b
    Example:
      credyt-bridge outbox retry 17 18
      credyt-bridge outbox retry --dead
    """
    from bridge.operating.operations import retry_adjustments

    config = require_config(config_path, secrets=False)
    with existing_store(config) as store:
        count = asyncio.run(retry_adjustments(store, refs, dead=dead))
    click.echo(f"{count} adjustment(s) queued again; the running bridge delivers them")


@outbox.command("approve")
@config_option
@click.argument("ref", metavar="ID")
@click.option("--note", help="Why: kept with the decision.")
@bridge_errors
def outbox_approve(config_path: str | None, ref: str, note: str | None) -> None:
    """Send a held adjustment (one over an amount limit): it is queued, due now.

    ID is the row id from `outbox list --status held` or the transaction id. The
    decision is kept on the row and in its attempt history.

    \b
    Example:
      credyt-bridge outbox approve 42 --note "checked with the customer"
    """
    _decide(config_path, ref, approve=True, note=note)


@outbox.command("reject")
@config_option
@click.argument("ref", metavar="ID")
@click.option("--note", help="Why: kept with the decision.")
@bridge_errors
def outbox_reject(config_path: str | None, ref: str, note: str | None) -> None:
    """Never send a held adjustment: it ends `rejected`, the wallet untouched.

    ID is the row id from `outbox list --status held` or the transaction id. The
    decision is kept on the row and in its attempt history; the payment is not
    credited again by a replay.

    \b
    Example:
      credyt-bridge outbox reject 42 --note "card testing"
    """
    _decide(config_path, ref, approve=False, note=note)


def _decide(config_path: str | None, ref: str, *, approve: bool, note: str | None) -> None:
    from bridge.operating.approvals import decide

    config = require_config(config_path)
    with existing_store(config) as store:
        record = asyncio.run(decide(store, ref, approve=approve, note=note))
    click.echo(f"adjustment {ref}: {record}")


@click.command()
@config_option
@click.option(
    "--older-than",
    metavar="DURATION",
    help="Age of the rows to delete, e.g. 90d (default: the config's retention, 30d).",
)
@bridge_errors
def prune(config_path: str | None, older_than: str | None) -> None:
    """Delete finished rows older than DURATION.

    Deletes delivered adjustments with their delivery attempts (whole payments
    only: a payment's credit stays while any of its refunds is recent or
    unfinished), and processed or ignored events no kept adjustment refers to.
    Failed and pending events and dead adjustments are always kept. A refund of a
    pruned payment meets its reversal rule's unknown_original (hold, skip or
    debit), so keep rows longer than refunds and disputes can come (Stripe
    disputes: up to 120 days).

    \b
    Example:
      credyt-bridge prune --older-than 180d
    """
    from bridge.operating.describe import summary_line
    from bridge.operating.operations import parse_age
    from bridge.operating.operations import prune as prune_rows

    config = require_config(config_path, secrets=False)
    seconds = config.retention if older_than is None else parse_age(older_than)
    shown = sys.stderr.isatty()  # progress on a terminal; piped output stays one line

    def progress(counts: dict[str, int]) -> None:
        click.echo(f"\rpruning: {summary_line(counts)} so far", nl=False, err=True)

    with existing_store(config) as store:
        counts = asyncio.run(prune_rows(store, seconds, progress=progress if shown else None))
    if shown:
        click.echo(err=True)
    click.echo(f"pruned rows older than {seconds / 86400:g} days: {summary_line(counts)}")
