"""The `credyt-bridge` command: a thin click layer over the library.

Each command loads the config, opens what it needs, calls one library function and
prints the result; a BridgeError becomes a one-line message and a non-zero exit.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from bridge.config import Config, load_config
from bridge.errors import BridgeError
from bridge.logs import configure_logging

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
@bridge_errors
def serve(config_path: str | None, host: str, port: int) -> None:
    """Run the receiver, processor and deliverer in one process.

    \b
    Example:
      credyt-bridge serve --config config.yaml --port 8080
    """
    import uvicorn

    from bridge.service import Bridge

    config = require_config(config_path)
    configure_logging(config.log_level)
    bridge = Bridge(config)
    uvicorn.run(
        bridge.app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=15,
    )


@cli.command()
@config_option
@bridge_errors
def check(config_path: str | None) -> None:
    """Validate the config and print its rules.

    \b
    Example:
      credyt-bridge check --config config.yaml
    """
    from bridge.report import rules_table

    config = require_config(config_path)
    click.echo(f"{config.path}: OK, {len(config.connectors)} connector(s)")
    click.echo(rules_table(config))
    for warning in config_warnings(config):
        click.echo(f"warning: {warning}", err=True)


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
) -> None:
    """Run the local Credyt-compatible API used by the demo and the tests.

    Faults can also be switched at run time: POST /_sandbox/faults.

    \b
    Example:
      credyt-bridge sandbox --port 8090 --customer cust_alice=cus_123 --fail-next 2
    """
    from bridge.sandbox import serve_sandbox

    configure_logging("info")
    serve_sandbox(
        host,
        port,
        api_key=api_key,
        customers=customers,
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
    from bridge.demo import run_demo

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
@bridge_errors
def send(
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

    \b
    Example:
      credyt-bridge send stripe invoice.paid --url http://127.0.0.1:8080/webhooks/stripe \\
          --customer cust_473cr1y0ghbyc3m1yfbwvn3nxx --amount 49.99 --currency usd
    """
    from bridge.sending import SendRequest, send_webhook

    env_name = "STRIPE_WEBHOOK_SECRET" if psp == "stripe" else "PADDLE_WEBHOOK_SECRET"
    key = secret or os.environ.get(env_name)
    if not key:
        raise click.ClickException(f"no signing secret: pass --secret or set {env_name}")
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


def main() -> None:
    cli()
