"""`credyt-bridge alerts test`: send a test message to every alert target."""

from __future__ import annotations

import asyncio
import sys

import click

from bridge.cli.options import bridge_errors, config_option, require_config


@click.group()
def alerts() -> None:
    """Check the alert targets of the `alerts:` config section.

    \b
    Example:
      credyt-bridge alerts test --config config.yaml
    """


@alerts.command("test")
@config_option
@bridge_errors
def alerts_test(config_path: str | None) -> None:
    """Send a test message to every alert target and say what each answered.

    Exits 1 if any target failed. Nothing is stored and nothing is retried.

    \b
    Example:
      credyt-bridge alerts test --config config.yaml
    """
    from bridge.alerting import messages
    from bridge.alerting.sender import new_client, post
    from bridge.errors import ConfigError

    config = require_config(config_path)
    if config.alerts is None:
        raise ConfigError(f"{config.path} has no alerts: section")
    targets = config.alerts.targets

    async def send_all() -> list[str | None]:
        payload = messages.test_message()
        async with new_client() as client:
            return await asyncio.gather(
                *(post(client, t, messages.body_for(t, payload)) for t in targets)
            )

    results = asyncio.run(send_all())
    for target, error in zip(targets, results, strict=True):
        outcome = "sent" if error is None else f"FAILED: {error}"
        click.echo(f"{target.name} ({target.type}): {outcome}")
    if any(error is not None for error in results):
        sys.exit(1)
