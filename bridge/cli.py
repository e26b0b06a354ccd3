"""The `credyt-bridge` command: a thin click layer over the library.

Each command loads the config, opens what it needs, calls one library function and
prints the result; a BridgeError becomes a one-line message and a non-zero exit.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import click

from bridge.config.schema import Config, ConnectorConfig, load_config
from bridge.errors import BridgeError, CredytUnavailableError
from bridge.logs import configure_logging

if TYPE_CHECKING:
    from bridge.credyt.client import AccountContext
    from bridge.operating.operations import ReplayOutcome
    from bridge.storage.records import InboxRow
    from bridge.storage.store import Store

F = TypeVar("F", bound=Callable[..., Any])

CONFIG_HELP = "Config file (default: $BRIDGE_CONFIG)."


def config_option(fn: F) -> F:
    return click.option(
        "--config",
        "config_path",
        envvar="BRIDGE_CONFIG",
        metavar="FILE",
        help=CONFIG_HELP,
    )(fn)


def require_config(config_path: str | None) -> Config:
    if not config_path:
        raise click.ClickException("no config file: pass --config FILE or set BRIDGE_CONFIG")
    return load_config(config_path)


def bridge_errors(fn: F) -> F:
    """Turn a BridgeError into a one-line message and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BridgeError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="credyt-bridge")
def cli() -> None:
    """Stripe and Paddle payments to exactly-once Credyt wallet adjustments.

    \b
    Example:
      credyt-bridge demo
      credyt-bridge serve --config config.yaml
    """


@cli.command()
@config_option
@click.option("--host", default="0.0.0.0", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--forwarded-allow-ips",
    envvar="FORWARDED_ALLOW_IPS",
    default="127.0.0.1",
    show_default=True,
    metavar="IPS",
    help="Reverse proxies (comma-separated IPs or networks, or *) whose X-Forwarded-For "
    "and X-Forwarded-Proto headers are trusted. Env: FORWARDED_ALLOW_IPS.",
)
@bridge_errors
def serve(config_path: str | None, host: str, port: int, forwarded_allow_ips: str) -> None:
    """Run the receiver, processor and deliverer in one process.

    SIGTERM or SIGINT stops it gracefully: no new connections, requests in progress
    finish, in-flight deliveries get a grace period, everything else stays in the
    outbox for the next start; then it exits 0.

    \b
    Example:
      credyt-bridge serve --config config.yaml --port 8080
    """
    import signal

    import uvicorn

    from bridge.receiving.servers import BoundedHttpToolsProtocol
    from bridge.service import HTTP_DRAIN, Bridge

    config = require_config(config_path)
    configure_logging(config.log_level)
    bridge = Bridge(config)
    server = uvicorn.Server(
        uvicorn.Config(
            bridge.app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            proxy_headers=True,
            forwarded_allow_ips=forwarded_allow_ips,
            timeout_graceful_shutdown=HTTP_DRAIN,
            http=BoundedHttpToolsProtocol,  # 431 for huge heads, trickled heads time out
        )
    )
    # uvicorn handles SIGTERM/SIGINT while it runs and re-raises the signal once it has
    # shut down; with these handlers restored, that re-raise is a no-op and a graceful
    # stop exits 0 (not 143, not a KeyboardInterrupt traceback).
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda _signum, _frame: None)
    server.run()
    if not server.started:
        raise click.ClickException(f"the server did not start on {host}:{port} (see the log)")


@cli.command()
@config_option
@click.option(
    "--online",
    is_flag=True,
    help="Also ask Credyt (GET /accounts/self) whether it accepts the API key, and "
    "check that every connector's mode fits the key's environment.",
)
@bridge_errors
def check(config_path: str | None, online: bool) -> None:
    """Validate the config and print its rules.

    With --online, also check the Credyt API key: a rejected key, an unreachable
    Credyt, or a `mode: live` connector on a test key (or the reverse) is one line
    and exit status 1.

    \b
    Example:
      credyt-bridge check --config config.yaml --online
    """
    from bridge.operating.tables import rules_table

    config = require_config(config_path)
    click.echo(f"{config.path}: OK, {len(config.connectors)} connector(s)")
    click.echo(rules_table(config))
    for warning in config_warnings(config):
        click.echo(f"warning: {warning}", err=True)
    if online:
        account = asyncio.run(_check_key_online(config))
        click.echo(
            f"Credyt: API key accepted, account {account.account_id}, "
            f"{account.environment} environment"
        )


async def _check_key_online(config: Config) -> AccountContext:
    from bridge.credyt.client import CredytClient
    from bridge.credyt.key import check_key

    client = CredytClient(
        config.credyt.api_url, config.credyt.api_key, timeout=config.credyt.timeout
    )
    try:
        return await check_key(client, config.connectors)
    except CredytUnavailableError as exc:
        raise CredytUnavailableError(
            f"Credyt could not check the API key at {config.credyt.api_url}: {exc}"
        ) from exc
    finally:
        await client.aclose()


def config_warnings(config: Config) -> list[str]:
    warnings = []
    for connector in config.connectors.values():
        for rule in connector.rules:
            if "payment_intent.succeeded" in rule.on and rule.when.metadata == {}:
                warnings.append(
                    f"{config.path}:{rule.line}: rule {rule.name} credits payment_intent.succeeded "
                    "without a metadata condition: subscription renewals fire it too, so "
                    "invoices would be credited twice (add when: metadata: {credyt_topup: 'true'})"
                )
    return warnings


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, type=int)
@click.option(
    "--api-key", default="key_sandbox", show_default=True, help="Expected X-CREDYT-API-KEY."
)
@click.option(
    "--customer",
    "customers",
    multiple=True,
    metavar="ID[=EXTERNAL_ID]",
    help="Create a customer at start, e.g. cust_alice=cus_123 (repeatable).",
)
@click.option(
    "--fail-next", default=0, type=int, help="Answer the next N API calls with --fail-status."
)
@click.option("--fail-status", default=500, type=int, show_default=True)
@click.option("--rate-limit-next", default=0, type=int, help="Answer the next N calls 429.")
@click.option("--retry-after", default=None, type=float, help="Retry-After seconds on those 429s.")
@click.option("--delay", default=0.0, type=float, help="Seconds to wait before every answer.")
@click.option(
    "--environment",
    type=click.Choice(["test", "live"]),
    default="test",
    show_default=True,
    help="What GET /accounts/self says the key is for.",
)
def sandbox(
    host: str,
    port: int,
    api_key: str,
    customers: tuple[str, ...],
    fail_next: int,
    fail_status: int,
    rate_limit_next: int,
    retry_after: float | None,
    delay: float,
    environment: str,
) -> None:
    """Run the local Credyt-compatible API used by the demo and the tests.

    Faults can also be switched at run time: POST /_sandbox/faults.

    \b
    Example:
      credyt-bridge sandbox --port 8090 --customer cust_alice=cus_123 --fail-next 2
    """
    from bridge.credyt.sandbox import serve_sandbox

    configure_logging("info")
    serve_sandbox(
        host,
        port,
        api_key=api_key,
        customers=customers,
        environment=environment,
        fail_next=fail_next,
        fail_status=fail_status,
        rate_limit_next=rate_limit_next,
        retry_after=retry_after,
        delay=delay,
    )


@cli.command()
@click.option("--keep", is_flag=True, help="Keep the demo's database and config folder.")
def demo(keep: bool) -> None:
    """Run the whole flow locally: sandbox, bridge, signed webhooks, balances.

    Needs no account and no network: everything listens on 127.0.0.1.

    \b
    Example:
      credyt-bridge demo
    """
    from bridge.operating.demo import run_demo

    configure_logging("warning")
    ok = asyncio.run(run_demo(keep=keep))
    sys.exit(0 if ok else 1)


@cli.command()
@click.argument("psp", type=click.Choice(["stripe", "paddle"]))
@click.argument("event_type")
@click.option(
    "--url",
    required=True,
    help="The bridge's webhook URL, e.g. http://127.0.0.1:8080/webhooks/stripe",
)
@click.option(
    "--secret",
    envvar=None,
    help="Signing secret (default: $STRIPE_WEBHOOK_SECRET or $PADDLE_WEBHOOK_SECRET).",
)
@click.option("--customer", help="Credyt customer id to put in the payment's metadata.")
@click.option("--psp-customer", help="The PSP customer id (cus_... / ctm_...).")
@click.option("--amount", default="20.00", show_default=True, help="Amount in major units.")
@click.option("--currency", default="USD", show_default=True)
@click.option("--event-id", help="Event id (default: a new random one).")
@click.option("--object-id", help="Invoice / PaymentIntent / transaction id (default: random).")
@click.option("--payment", help="For refunds: the payment (invoice, PaymentIntent, txn) refunded.")
@config_option
@bridge_errors
def send(
    config_path: str | None,
    psp: str,
    event_type: str,
    url: str,
    secret: str | None,
    customer: str | None,
    psp_customer: str | None,
    amount: str,
    currency: str,
    event_id: str | None,
    object_id: str | None,
    payment: str | None,
) -> None:
    """Sign and send a realistic test webhook to a running bridge.

    The secret is --secret, else $STRIPE_WEBHOOK_SECRET / $PADDLE_WEBHOOK_SECRET, else
    the first secret of the config's connector of that type.

    \b
    Example:
      credyt-bridge send stripe invoice.paid --url http://127.0.0.1:8080/webhooks/stripe \\
          --customer cust_473cr1y0ghbyc3m1yfbwvn3nxx --amount 49.99 --currency usd
    """
    from bridge.operating.sending import SendRequest, send_webhook

    env_name = "STRIPE_WEBHOOK_SECRET" if psp == "stripe" else "PADDLE_WEBHOOK_SECRET"
    key = secret or os.environ.get(env_name)
    if not key and config_path:
        # The first secret of the config's connector of that type signs like the PSP.
        found = [c for c in load_config(config_path).connectors.values() if c.type == psp]
        key = found[0].secrets[0] if found and found[0].secrets else None
    if not key:
        raise click.ClickException(
            f"no signing secret: pass --secret, set {env_name} or pass --config"
        )
    status, answer = send_webhook(
        SendRequest(
            psp=psp,
            event_type=event_type,
            url=url,
            secret=key,
            customer=customer,
            psp_customer=psp_customer,
            amount=amount,
            currency=currency,
            event_id=event_id,
            object_id=object_id,
            payment=payment,
        )
    )
    click.echo(f"{status} {answer}")
    if status >= 300:
        sys.exit(1)


# -- operating: events, replay, outbox, prune, backfill ------------------------------------

EVENT_STATUSES = ("pending", "processed", "ignored", "failed")
ADJUSTMENT_STATUSES = ("pending", "delivered", "dead")


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(
        fn
    )


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


@contextmanager
def existing_store(config: Config) -> Iterator[Store]:
    """The serving bridge's store; a missing SQLite file is an error, not a new database."""
    from bridge.storage.store import open_store

    configure_logging("warning")  # stderr; stdout is the command's answer
    database = config.database
    if "://" not in database or database.startswith("sqlite:///"):
        path = database.removeprefix("sqlite:///")
        if not os.path.exists(path):
            raise click.ClickException(
                f"no database at {path}: run the command with the serving bridge's config "
                "(and from its directory when the path is relative)"
            )
    store = open_store(database)
    try:
        yield store
    finally:
        store.close()


def moment_option(name: str, what: str) -> Callable[[F], F]:
    return click.option(
        name,
        metavar="WHEN",
        help=f"{what}: a duration ago (30m, 2h, 7d) or an ISO time (2026-11-24T09:00Z).",
    )


def optional_moment(text: str | None) -> float | None:
    from bridge.operating.operations import parse_moment

    return None if text is None else parse_moment(text)


@cli.group()
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
@moment_option("--since", "Received at or after")
@moment_option("--until", "Received before")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@json_option
@bridge_errors
def events_list(
    config_path: str | None,
    status: str | None,
    connector: str | None,
    event_type: str | None,
    customer: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List stored events, newest first.

    \b
    Example:
      credyt-bridge events list --status failed --connector stripe --since 2h --json
    """
    from bridge.operating.operations import event_summary
    from bridge.operating.tables import events_table
    from bridge.storage.records import EventFilter

    config = require_config(config_path)
    flt = EventFilter(
        status=status,
        connector=connector,
        event_type=event_type,
        customer=customer,
        since=optional_moment(since),
        until=optional_moment(until),
        limit=limit,
    )
    with existing_store(config) as store:
        rows = store.list_events(flt)
    if as_json:
        print_json([event_summary(r) for r in rows])
    elif rows:
        click.echo(events_table(rows))
    else:
        click.echo("no events match")


@events.command("show")
@config_option
@click.argument("ref", metavar="ID")
@json_option
@bridge_errors
def events_show(config_path: str | None, ref: str, as_json: bool) -> None:
    """Show one event: raw body, normalized form, adjustments and delivery attempts.

    ID is the row id from `events list` or the PSP's event id (evt_...).

    \b
    Example:
      credyt-bridge events show evt_1QfXzA2eZvKYlo2C
    """
    from bridge.operating.describe import event_text
    from bridge.operating.operations import event_detail
    from bridge.service import connector_runtimes

    config = require_config(config_path)
    with existing_store(config) as store:
        detail = event_detail(store, connector_runtimes(config), ref)
    if as_json:
        print_json(detail)
    else:
        click.echo(event_text(detail))


@cli.command()
@config_option
@click.argument("refs", nargs=-1, metavar="[ID]...")
@click.option("--status", type=click.Choice(EVENT_STATUSES), help="Replay every event in it.")
@click.option("--connector", help="With --status: only this connector's events.")
@moment_option("--since", "With --status: received at or after")
@moment_option("--until", "With --status: received before")
@click.option("--dry-run", is_flag=True, help="Print what the rules would produce; change nothing.")
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
    as_json: bool,
) -> None:
    """Re-run the current rules on stored events.

    Runs here, against the serving bridge's database: customers are looked up in
    Credyt again, the outcome is recorded, and new adjustments go to the outbox,
    where the running bridge delivers them within a second. Replay is always safe:
    the same payment gives the same transaction ids, so nothing is credited twice.

    \b
    Example:
      credyt-bridge replay --status failed --since 24h --dry-run
      credyt-bridge replay 42 evt_1QfXzA2eZvKYlo2C
    """
    from bridge.operating.operations import events_to_replay

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
        outcomes = asyncio.run(_replay(config, store, rows, dry_run))
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


async def _replay(
    config: Config, store: Store, rows: Sequence[InboxRow], dry_run: bool
) -> list[ReplayOutcome]:
    from bridge.credyt.client import CredytClient
    from bridge.operating.operations import replay_events
    from bridge.service import build_processor

    client = CredytClient(
        config.credyt.api_url, config.credyt.api_key, timeout=config.credyt.timeout
    )
    try:
        processor = build_processor(config, store, client, customer_cache=0)
        return await replay_events(processor, rows, dry_run=dry_run)
    finally:
        await client.aclose()


@cli.group()
def outbox() -> None:
    """List the adjustments for Credyt and retry the ones that died.

    \b
    Example:
      credyt-bridge outbox list --status dead
      credyt-bridge outbox retry --dead
    """


@outbox.command("list")
@config_option
@click.option("--status", type=click.Choice(ADJUSTMENT_STATUSES), help="Only this state.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@json_option
@bridge_errors
def outbox_list(config_path: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """List adjustments, newest first.

    \b
    Example:
      credyt-bridge outbox list --status dead --json
    """
    from bridge.operating.operations import plain
    from bridge.operating.tables import outbox_table
    from bridge.storage.records import row_dict

    config = require_config(config_path)
    with existing_store(config) as store:
        rows = store.list_adjustments(status, limit)
    if as_json:
        print_json([plain(row_dict(r)) for r in rows])
    elif rows:
        click.echo(outbox_table(rows))
    else:
        click.echo("no adjustments match")


@outbox.command("retry")
@config_option
@click.argument("refs", nargs=-1, metavar="[ID]...")
@click.option("--dead", is_flag=True, help="Retry every dead adjustment.")
@bridge_errors
def outbox_retry(config_path: str | None, refs: tuple[str, ...], dead: bool) -> None:
    """Queue adjustments again, due now, with a fresh attempt budget.

    ID is the row id from `outbox list` or the transaction id. Delivered ones are
    left alone. The running bridge picks them up within a second.

    \b
    Example:
      credyt-bridge outbox retry 17 18
      credyt-bridge outbox retry --dead
    """
    from bridge.operating.operations import retry_adjustments

    config = require_config(config_path)
    with existing_store(config) as store:
        count = asyncio.run(retry_adjustments(store, refs, dead=dead))
    click.echo(f"{count} adjustment(s) queued again; the running bridge delivers them")


@cli.command()
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

    config = require_config(config_path)
    seconds = config.retention if older_than is None else parse_age(older_than)
    with existing_store(config) as store:
        counts = asyncio.run(prune_rows(store, seconds))
    click.echo(f"pruned rows older than {seconds / 86400:g} days: {summary_line(counts)}")


@cli.command()
@config_option
@click.argument("connector_ref", metavar="stripe|paddle|CONNECTOR")
@click.option(
    "--since",
    "since_text",
    required=True,
    metavar="DURATION",
    help="How far back to list, e.g. 3d (Stripe keeps 30 days, Paddle 90).",
)
@click.option(
    "--resume",
    "resume",
    metavar="CURSOR",
    default=None,
    help="Continue a run that stopped, after the cursor its error printed.",
)
@json_option
@bridge_errors
def backfill(
    config_path: str | None,
    connector_ref: str,
    since_text: str,
    resume: str | None,
    as_json: bool,
) -> None:
    """Store the PSP's recent events that the bridge never received.

    Lists the event types the connector's rules use through the PSP's API (key:
    $STRIPE_API_KEY / $PADDLE_API_KEY, else the connector's api_key in the config),
    every page, and stores each event the inbox lacks as a received webhook; the
    running bridge then processes it. Running it again changes nothing. A run that
    stops (the PSP still failing after its retries) prints a cursor: the same
    command with `--resume CURSOR` goes on from there.

    \b
    Example:
      STRIPE_API_KEY=rk_live_... credyt-bridge backfill stripe --since 3d
    """
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

    config = require_config(config_path)
    connector = find_connector(config, connector_ref)
    types = rule_event_types(connector)
    if not types:
        raise click.ClickException(f"connector {connector.name} has no rules: nothing to backfill")
    wanted = parse_age(since_text)
    with existing_store(config) as store:
        env_key = os.environ.get(API_KEY_VARIABLES.get(connector.type, ""))
        source = open_source(connector, env_key)
        try:
            if wanted > source.retention:
                click.echo(
                    f"note: {source.psp} keeps events {source.retention / 86400:g} days;"
                    " listing those",
                    err=True,
                )
            since = time.time() - min(wanted, source.retention)
            summary = BackfillSummary(connector.name, since, types)
            with click.progressbar(
                source.events(since, types, resume),
                label=f"listing {source.psp} events ({', '.join(types)})",
                file=sys.stderr,
                show_pos=True,
            ) as listed:
                try:
                    asyncio.run(
                        run_backfill(store, connector, make_connector(connector), listed, summary)
                    )
                except BackfillError as exc:
                    cursor = source.cursor or resume
                    if not cursor:
                        raise
                    raise BackfillError(
                        f"{exc}; {len(summary.stored)} missing event(s) were stored before it "
                        f"stopped; to go on from there: credyt-bridge backfill {connector_ref} "
                        f"--since {since_text} --resume {cursor}"
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


def find_connector(config: Config, ref: str) -> ConnectorConfig:
    """A connector by name, or the only connector of that type."""
    if ref in config.connectors:
        return config.connectors[ref]
    of_type = [c for c in config.connectors.values() if c.type == ref]
    if len(of_type) == 1:
        return of_type[0]
    if of_type:
        names = ", ".join(c.name for c in of_type)
        raise click.ClickException(f"several {ref} connectors ({names}): name one")
    raise click.ClickException(
        f"no connector {ref!r} in {config.path} (have: {', '.join(config.connectors)})"
    )


def main() -> None:
    cli()
