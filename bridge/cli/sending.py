"""The `send` command: sign and send a test webhook to a running bridge."""

from __future__ import annotations

import json
import os
import sys
import textwrap

import click

from bridge.cli.options import (
    bridge_errors,
    config_option,
)
from bridge.config.loading import load_config
from bridge.config.schema import ConnectorConfig
from connectors import connector_names, connector_type, known_event_types


def _event_types_epilog() -> str:
    lines = ["\b", "Event types:"]
    for psp in connector_names():
        text = f"{psp}: {', '.join(sorted(known_event_types(psp)))}"
        lines += textwrap.wrap(text, 76, initial_indent="  ", subsequent_indent="    ")
    return "\n".join(lines)


@click.command(epilog=_event_types_epilog())
@click.argument("psp", type=click.Choice(connector_names()))
@click.argument("event_type")
@click.option(
    "--url",
    help="The bridge's webhook URL (default: http://127.0.0.1:PORT/webhooks/NAME, NAME the "
    "config's connector of that type, else the PSP's name).",
)
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Without --url: the port `serve` listens on.",
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
@click.option(
    "--tax",
    default="0",
    show_default=True,
    help="Tax included in --amount, major units (tax-exclusive pricing: the rest is net).",
)
@click.option("--event-id", help="Event id (default: a new random one).")
@click.option("--object-id", help="Invoice / PaymentIntent / transaction id (default: random).")
@click.option("--payment", help="For refunds: the payment (invoice, PaymentIntent, txn) refunded.")
@click.option(
    "--print",
    "print_only",
    is_flag=True,
    help="Print the event's JSON instead of sending it (needs no secret and no bridge).",
)
@config_option
@bridge_errors
def send(
    config_path: str | None,
    psp: str,
    event_type: str,
    url: str | None,
    port: int,
    secret: str | None,
    customer: str | None,
    psp_customer: str | None,
    amount: str,
    currency: str,
    tax: str,
    event_id: str | None,
    object_id: str | None,
    payment: str | None,
    print_only: bool,
) -> None:
    """Sign and send a realistic test webhook to a running bridge.

    The secret is --secret, else $STRIPE_WEBHOOK_SECRET / $PADDLE_WEBHOOK_SECRET, else
    the first secret of the config's connector of that type. It prints the bridge's
    answer, the event id and the ids inside (invoice, customer...), and the
    `events show` command that finds it.

    \b
    Example:
      credyt-bridge send stripe invoice.paid --url http://127.0.0.1:8080/webhooks/stripe \\
          --customer cust_473cr1y0ghbyc3m1yfbwvn3nxx --amount 49.99 --currency usd
      credyt-bridge send paddle transaction.completed --port 8080 \
          --customer cust_473cr1y0ghbyc3m1yfbwvn3nxx --amount 12.00 --tax 2.00 --currency EUR
      credyt-bridge send stripe refund.created --payment pi_123 --print
    """
    from bridge.operating.sending import (
        SendRequest,
        check_event_type,
        prepare_webhook,
        send_prepared,
    )

    check_event_type(psp, event_type)
    config = load_config(config_path, resolve_secrets=False) if config_path else None
    found = [c for c in config.connectors.values() if c.type == psp] if config else []
    unresolved = config.unresolved if config else ()
    key = "" if print_only else _signing_secret(psp, secret, found, unresolved)
    request = SendRequest(
        psp=psp,
        event_type=event_type,
        url=url or f"http://127.0.0.1:{port}/webhooks/{found[0].name if found else psp}",
        secret=key,
        customer=customer,
        psp_customer=psp_customer,
        amount=amount,
        currency=currency,
        tax=tax,
        event_id=event_id,
        object_id=object_id,
        payment=payment,
    )
    webhook = prepare_webhook(request)
    if print_only:
        click.echo(json.dumps(json.loads(webhook.body), indent=2))
        return
    status, answer, _ = send_prepared(request.url, webhook)
    click.echo(f"{status} {answer}")
    inside = ", ".join(f"{name} {value}" for name, value in webhook.object_ids.items())
    click.echo(f"event {webhook.event_id} ({psp} {event_type})" + (f": {inside}" if inside else ""))
    if status < 300:
        click.echo(f"see it: credyt-bridge events show {webhook.event_id}")
    else:
        sys.exit(1)


def _signing_secret(
    psp: str, secret: str | None, found: list[ConnectorConfig], unresolved: tuple[str, ...]
) -> str:
    env_name = connector_type(psp).webhook_secret_variable
    key = secret or os.environ.get(env_name)
    if key:
        return key
    if found:
        # The first secret of the config's connector of that type signs like the PSP.
        key_path = f"connectors.{found[0].name}.secrets[0]: "
        problem = next((m for m in unresolved if key_path in m), None)
        if problem is not None or not found[0].secrets:
            raise click.ClickException(
                f"no signing secret: {problem or key_path + 'none'}; pass --secret or set "
                f"{env_name}"
            )
        return found[0].secrets[0]
    raise click.ClickException(f"no signing secret: pass --secret, set {env_name} or pass --config")
