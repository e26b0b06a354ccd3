"""The `credyt-bridge` command: a thin click layer over the library.

Each command loads the config, opens what it needs, calls one library function and
prints the result; a BridgeError becomes a one-line message and a non-zero exit.
"""

from __future__ import annotations

import click

from bridge.cli.adjustments import outbox, prune
from bridge.cli.alerting import alerts
from bridge.cli.backfilling import backfill
from bridge.cli.inbox import events, replay
from bridge.cli.reconciling import reconcile
from bridge.cli.running import check, demo, sandbox, serve
from bridge.cli.sending import send


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="credyt-bridge")
def cli() -> None:
    """Stripe and Paddle payments to exactly-once Credyt wallet adjustments.

    \b
    Example:
      credyt-bridge demo
      credyt-bridge serve --config config.yaml
    """


for command in (
    serve,
    check,
    sandbox,
    demo,
    send,
    events,
    replay,
    outbox,
    prune,
    backfill,
    alerts,
    reconcile,
):
    cli.add_command(command)


def main() -> None:
    cli()
