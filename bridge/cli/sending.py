"""The `send` command: sign and send a test webhook to a running bridge."""

from __future__ import annotations

import os
import sys

import click

from bridge.cli.options import (
    bridge_errors,
    config_option,
)
from bridge.config.loading import load_config
from connectors import connector_names, connector_type


@click.command()
@click.argument("psp", type=click.Choice(connector_names()))
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
@click.option(
    "--tax",
    default="0",
    show_default=True,
    help="Tax included in --amount, major units (tax-exclusive pricing: the rest is net).",
)
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
    tax: str,
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
      credyt-bridge send paddle transaction.completed --url http://127.0.0.1:8080/webhooks/paddle \
          --customer cust_473cr1y0ghbyc3m1yfbwvn3nxx --amount 12.00 --tax 2.00 --currency EUR
    """
    from bridge.operating.sending import SendRequest, send_webhook

    env_name = connector_type(psp).webhook_secret_variable
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
            tax=tax,
        )
    )
    click.echo(f"{status} {answer}")
    if status >= 300:
        sys.exit(1)
