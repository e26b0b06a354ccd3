"""The Credyt API key, checked at start: is it accepted, and which environment is it for?

`GET /accounts/self` names the account behind the key and its environment (`live` or
`test`). `credyt-bridge check --online` asks once; `serve` asks before its workers start
and, while Credyt can not be reached or rejects the key, again with a growing delay.
Until Credyt has accepted the key, `/readyz` answers 503 with the reason and
`bridge_credyt_key_accepted` is 0; an adjustment queued for a named environment
(`live`/`test`) waits for it, since it must never go to the other one.

A connector with `mode: live` never runs on a `test` key, nor `mode: test` on a live
one: `check --online` exits non-zero and `serve` refuses to start (`ConfigError`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import structlog

from bridge.config.schema import Config, ConnectorConfig
from bridge.credyt.client import AccountContext, CredytClient
from bridge.errors import ConfigError, CredytError, CredytUnavailableError
from bridge.metrics import Metrics

log = structlog.get_logger("bridge.credyt.key")

RETRY_INITIAL = 1.0  # seconds before the key is checked again
RETRY_MAX = 5.0


def environment_conflicts(
    connectors: Mapping[str, ConnectorConfig], account: AccountContext
) -> list[str]:
    """One line per connector whose `mode` is not the key's environment."""
    return [
        f"connector {name} has mode: {c.mode}, but the Credyt API key is for the "
        f"{account.environment} environment (account {account.account_id}): use a "
        f"{c.mode} key, or mode: {account.environment}"
        for name, c in connectors.items()
        if c.mode in ("live", "test") and c.mode != account.environment
    ]


async def check_key(
    client: CredytClient, connectors: Mapping[str, ConnectorConfig]
) -> AccountContext:
    """The account behind the key, if Credyt accepts it and every connector fits.

    Raises `CredytError` with one line (a rejected key: status 401/403; unreachable:
    `CredytUnavailableError`) or `ConfigError` for a connector of the other mode."""
    try:
        account = await client.account()
    except CredytError as exc:
        if exc.status_code in (401, 403):
            raise CredytError(
                f"Credyt rejected the API key ({exc.status_code}): check credyt.api_key",
                status_code=exc.status_code,
            ) from exc
        raise
    conflicts = environment_conflicts(connectors, account)
    if conflicts:
        raise ConfigError("; ".join(conflicts))
    return account


async def check_key_online(config: Config) -> AccountContext:
    """`check_key` with a client built from `config`; an unreachable Credyt is named with
    its URL."""
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


class KeyCheck:
    """The key's state for a running bridge: `problem` is None once Credyt accepted it."""

    def __init__(
        self,
        client: CredytClient,
        connectors: Mapping[str, ConnectorConfig],
        metrics: Metrics,
        *,
        initial: float = RETRY_INITIAL,
        maximum: float = RETRY_MAX,
    ) -> None:
        self.client = client
        self.connectors = connectors
        self.metrics = metrics
        self.initial = initial
        self.maximum = maximum
        self.account: AccountContext | None = None
        self.problem: str | None = "the Credyt API key has not been checked yet"
        self.attempts = 0
        # Times Credyt started rejecting the key (401/403), for alerts: one per spell,
        # however often the check is repeated during it.
        self.rejections = 0
        self._rejected = False
        metrics.credyt_key_accepted.set(0)

    @property
    def environment(self) -> str | None:
        """`live` or `test` once the key is accepted, else None."""
        return self.account.environment if self.account is not None else None

    async def attempt(self) -> bool:
        """Ask Credyt once. True: accepted. False: try again later. A connector of the
        other mode raises `ConfigError` (nothing will fix that but a config change)."""
        self.attempts += 1
        try:
            account = await check_key(self.client, self.connectors)
        except ConfigError as exc:
            self.problem = str(exc)
            log.error("credyt_environment_mismatch", error=self.problem)
            raise
        except CredytUnavailableError as exc:
            self.problem = f"the Credyt API key could not be checked: {exc}"
            log.warning("credyt_key_check_failed", error=str(exc), attempt=self.attempts)
            return False
        except CredytError as exc:  # a rejected key (401/403), or an unreadable answer
            self.problem = str(exc)
            if not self._rejected:
                self._rejected = True
                self.rejections += 1
            log.error(
                "credyt_key_rejected",
                status_code=exc.status_code,
                error=self.problem,
                attempt=self.attempts,
            )
            return False
        self.account, self.problem, self._rejected = account, None, False
        self.metrics.credyt_key_accepted.set(1)
        log.info(
            "credyt_key_accepted",
            account_id=account.account_id,
            environment=account.environment,
            attempt=self.attempts,
        )
        return True

    async def run(self) -> None:
        """Check again with a growing delay until Credyt accepts the key."""
        delay = self.initial
        while self.problem is not None:
            await asyncio.sleep(delay)
            try:
                if await self.attempt():
                    return
            except ConfigError:
                return  # logged; the key stays unaccepted and nothing is delivered
            delay = min(self.maximum, delay * 2)
