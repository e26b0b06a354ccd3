"""Which Credyt account an event is credited in (Credyt for Platforms, Stripe Connect).

A connector's `credyt: {account: ...}` names the Credyt account its events go to (sent
as `X-CREDYT-ACCOUNT`). A Stripe Connect platform's endpoint also receives the events of
its connected accounts, each with `account: acct_...`: `accounts:` maps each to its
Credyt account. An event of a connected account that is not mapped is never credited to
the platform's own wallets: it fails (or is ignored, `unmapped_account: ignore`).

In a Credyt account the payment's key becomes `<credyt account>:<payment>`, so its
transaction ids are UUIDv5 of `psp:account:payment:rule` and the same payment id in two
tenants never collides; without an account every key and id is what it always was.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from bridge.config.schema import ConnectorConfig
from bridge.events import PaymentEvent
from bridge.storage.records import ProcessingResult


@dataclass(frozen=True)
class Unmapped:
    """An event of a connected account the connector has no Credyt account for."""

    reason: str
    ignore: bool


def credyt_account_for(event: PaymentEvent, config: ConnectorConfig) -> str | None | Unmapped:
    """The Credyt account `event` belongs in: None for the key's own account."""
    if event.account is None:
        return config.credyt_account
    mapped = config.accounts.get(event.account)
    if mapped is not None:
        return mapped
    return Unmapped(
        f"connected account {event.account} has no Credyt account in connector "
        f"{config.name}'s accounts: map it (accounts: {{{event.account}: <credyt account>}}) "
        "and replay the event; it is not credited to the platform's own wallets",
        ignore=config.unmapped_account == "ignore",
    )


def in_account(event: PaymentEvent, account: str | None) -> PaymentEvent:
    """`event` as it is credited in Credyt account `account`: its payment ids carry the
    account, so decisions and transaction ids of one tenant never meet another's."""
    if account is None:
        return event
    object_ids = dict(event.object_ids)
    if event.account is not None:
        object_ids["account"] = event.account
    return replace(
        event,
        credyt_account=account,
        payment_key=scoped(account, event.payment_key),
        payment_ids=tuple(scoped(account, key) for key in event.payment_ids),
        reversal_key=None if event.reversal_key is None else scoped(account, event.reversal_key),
        object_ids=object_ids,
    )


def scoped(account: str, key: str) -> str:
    return f"{account}:{key}"


def for_credyt_target(
    result: ProcessingResult, mode: str, environment: str | None, account: str | None
) -> ProcessingResult:
    """Mark each adjustment of `result` with the Credyt environment and account it is
    for: the connector's `mode` when it is `live` or `test`, else the key's environment
    (None while unknown: any); the Credyt account the event is credited in (Credyt for
    Platforms, set by the processor), else the key's `account` when known."""
    if mode in ("live", "test"):
        environment = mode
    return replace(
        result,
        adjustments=tuple(
            replace(a, credyt_environment=environment, credyt_account=a.credyt_account or account)
            for a in result.adjustments
        ),
    )
