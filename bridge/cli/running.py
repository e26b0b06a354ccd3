"""Commands that run something: the bridge, the config check, the sandbox, the demo."""

from __future__ import annotations

import asyncio
import sys

import click
import structlog

from bridge.cli.options import (
    PORT,
    bridge_errors,
    config_option,
    listening_socket,
    listening_url,
    require_config,
    table_width,
    wide_option,
)
from bridge.config.schema import Config
from bridge.logs import configure_logging


@click.command()
@config_option
@click.option("--host", default="0.0.0.0", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8080, show_default=True, type=PORT, help="Port to listen on.")
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
    sock = listening_socket(host, port)
    bridge = Bridge(config)
    server = uvicorn.Server(
        uvicorn.Config(
            bridge.app,
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
    structlog.get_logger().info("bridge_listening", url=listening_url(sock))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if not server.started:
        raise click.ClickException(f"the server did not start on {host}:{port} (see the log)")


@click.command()
@config_option
@click.option(
    "--online",
    is_flag=True,
    help="Also ask Credyt (GET /accounts/self) whether it accepts the API key, check "
    "that every connector's mode fits the key's environment, and, where a PSP API key is "
    "set, that the PSP sends every event type the rules use.",
)
@wide_option
@bridge_errors
def check(config_path: str | None, online: bool, wide: bool) -> None:
    """Validate the config and print its rules.

    With --online, also check the Credyt API key: a rejected key, an unreachable
    Credyt, or a `mode: live` connector on a test key (or the reverse) is one line
    and exit status 1. Where a connector has a PSP API key ($STRIPE_API_KEY,
    $PADDLE_API_KEY or its api_key), it also reads the Stripe webhook endpoints (or
    Paddle notification settings) and fails naming each rule event type they do not
    send: such a rule would never fire.

    \b
    Example:
      credyt-bridge check --config config.yaml --online
    """
    from bridge.config.warnings import config_warnings
    from bridge.credyt.key import check_key_online
    from bridge.operating.tables import rules_table

    config = require_config(config_path)
    click.echo(f"{config.path}: OK, {len(config.connectors)} connector(s)")
    click.echo(rules_table(config, table_width(wide)))
    for warning in config_warnings(config):
        click.echo(f"warning: {warning}", err=True)
    if online:
        account = asyncio.run(check_key_online(config))
        click.echo(
            f"Credyt: API key accepted, account {account.account_id}, "
            f"{account.environment} environment"
        )
        _check_subscriptions(config, table_width(wide))


def _check_subscriptions(config: Config, width: int | None) -> None:
    from bridge.errors import SubscriptionCheckError
    from bridge.operating.subscriptions import check_subscriptions
    from bridge.operating.table_layout import cut_lines

    checked = check_subscriptions(config)
    for result in checked:
        for line in result.lines():
            click.echo(cut_lines(line, width))
    problems = [p for p in (r.problem() for r in checked) if p]
    if problems:
        raise SubscriptionCheckError("; ".join(problems))


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8090, show_default=True, type=PORT, help="Port to listen on.")
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
    "--rate-limit",
    default=None,
    type=click.FloatRange(min=0, min_open=True),
    metavar="N",
    help="Answer 429 with Retry-After to API calls above N per second (a token bucket).",
)
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
    rate_limit: float | None,
    environment: str,
) -> None:
    """Run the local Credyt-compatible API used by the demo and the tests.

    Faults can also be switched at run time: POST /_sandbox/faults.

    \b
    Example:
      credyt-bridge sandbox --port 8090 --customer cust_alice=cus_123 --fail-next 2
      credyt-bridge sandbox --rate-limit 500
    """
    from bridge.credyt.sandbox import serve_sandbox

    configure_logging("info")
    listening_socket(host, port).close()  # a busy port is one line, not a traceback
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
        rate_limit=rate_limit,
    )


@click.command()
@click.option(
    "--keep",
    is_flag=True,
    help="Keep the demo's folder: its database and a config.yaml that reads it.",
)
def demo(keep: bool) -> None:
    """Run the whole flow locally: sandbox, bridge, signed webhooks, balances.

    Needs no account and no network: everything listens on 127.0.0.1.

    \b
    Example:
      credyt-bridge demo
    """
    from bridge.operating.demo import run_demo

    configure_logging("error")  # the demo's steps say what it expects, retries included
    ok = asyncio.run(run_demo(keep=keep, width=table_width(False) or 100))
    sys.exit(0 if ok else 1)
