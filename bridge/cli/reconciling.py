"""The `reconcile` command: did every PSP payment reach the wallet? Which did not?"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import click

from bridge.cli.options import (
    bridge_errors,
    config_option,
    existing_store,
    json_option,
    moment_option,
    print_json,
    require_config,
)

# Credyt transactions read back per second, by default: a background job should leave
# Credyt's rate limits (undocumented; 429 is treated as "later") to the live path.
DEFAULT_RATE = 20.0


@click.command()
@config_option
@click.argument("connector_ref", metavar="[CONNECTOR]", required=False)
@moment_option("--since", "Check the PSP's payments created since then (required)")
@moment_option("--until", "...and before then (default: now)")
@click.option("--fix", "repair", is_flag=True, help="Repair missing, not delivered and absent.")
@click.option(
    "--rate",
    type=click.FloatRange(min=0),
    default=DEFAULT_RATE,
    show_default=True,
    help="Credyt read-backs per second at most (0: no bound).",
)
@json_option
@bridge_errors
def reconcile(
    config_path: str | None,
    connector_ref: str | None,
    since: str | None,
    until: str | None,
    repair: bool,
    rate: float,
    as_json: bool,
) -> None:
    """Match the PSP's payments against the bridge's adjustments and Credyt's ledger.

    Lists the PSP's objects that moved money in the window (Stripe: paid invoices,
    succeeded PaymentIntents, paid Checkout Sessions, refunds, disputes; Paddle:
    completed transactions, adjustments) with $STRIPE_API_KEY / $PADDLE_API_KEY (else
    the connector's api_key), applies the current rules, compares with the outbox and
    reads each adjustment back from Credyt. Each payment is ok, missing, not delivered,
    absent in Credyt, amount differs, asset differs, or unexpected. Exits 0 when all are
    ok, 1 otherwise. --fix stores the missing events, queues not delivered and absent
    adjustments again (the running bridge processes and delivers them) and leaves the
    rest to a human. Without CONNECTOR, every connector is reconciled.

    \b
    Example:
      STRIPE_API_KEY=rk_live_... credyt-bridge reconcile stripe --since 1d
      credyt-bridge reconcile stripe --since 2026-11-01 --until 2026-12-01 --fix --json
    """
    from bridge.config.schema import find_connector
    from bridge.operating.backfill import API_KEY_VARIABLES, rule_event_types
    from bridge.operating.operations import parse_moment
    from bridge.operating.reconcile import EDGE, open_objects
    from bridge.operating.reconcile import reconcile as run_reconcile
    from bridge.operating.reconcile_report import ReconcileReport

    if since is None:
        raise click.UsageError("--since is required (a duration ago such as 1d, or a date)")
    config = require_config(config_path)
    connectors = (
        [find_connector(config, connector_ref)]
        if connector_ref
        else list(config.connectors.values())
    )
    start = parse_moment(since)
    end = time.time() if until is None else parse_moment(until)
    if end <= start:
        raise click.ClickException("--until must be later than --since")
    reports: list[ReconcileReport] = []
    with existing_store(config) as store:
        for connector in connectors:
            types = rule_event_types(connector)
            report = ReconcileReport(connector.name, start, end)
            source = open_objects(connector, os.environ.get(API_KEY_VARIABLES[connector.type]))
            try:
                with click.progressbar(
                    source.objects(start - EDGE, end, types),
                    label=f"reconciling {connector.name} ({source.psp} objects)",
                    file=sys.stderr,
                    show_pos=True,
                ) as listed:
                    asyncio.run(
                        run_reconcile(
                            store,
                            config,
                            connector,
                            source,
                            listed,
                            report,
                            rate=rate,
                            repair=repair,
                        )
                    )
            finally:
                source.close()
            reports.append(report)
    ok = all(report.all_ok for report in reports)
    if as_json:
        print_json({"ok": ok, "reports": [report.as_dict() for report in reports]})
    else:
        for report in reports:
            for line in report.lines():
                click.echo(line)
            if report.fixed:
                fixed = ", ".join(f"{n} {status}" for status, n in report.fixed.items())
                click.echo(f"fixed: {fixed} (the running bridge processes and delivers them)")
    sys.exit(0 if ok else 1)
