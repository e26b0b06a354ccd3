"""The bridge's configuration as typed, frozen objects: what `loading` builds from the
YAML file, and every default.

`docs/configuration.md` documents every key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from bridge.errors import ConfigError

REASONS = ("external_topup", "external_refund", "gift", "other")
MODES = ("any", "live", "test")
MATCH = ("first", "all")
UNKNOWN_ORIGINAL = ("hold", "skip", "debit")
UNMAPPED_ACCOUNT = ("fail", "ignore")
# Who chose the wallet: a Credyt customer id named in PSP metadata is trusted as is, or
# verified (its Credyt external_id must be the PSP customer id), or ignored (look-up only).
CUSTOMER_METADATA = ("trust", "verify", "ignore")


@dataclass(frozen=True)
class Expiry:
    """When a credit expires: never, at the end of the billing period, or after a duration."""

    kind: Literal["never", "period_end", "after"] = "never"
    seconds: float = 0.0

    def describe(self) -> str:
        if self.kind == "after":
            return f"after {self.seconds / 86400:g}d"
        return self.kind


@dataclass(frozen=True)
class Conditions:
    """All given conditions must hold; an empty tuple / None means "any"."""

    billing_reason: tuple[str, ...] = ()
    origin: tuple[str, ...] = ()
    currency: tuple[str, ...] = ()
    price_ids: tuple[str, ...] = ()
    product_ids: tuple[str, ...] = ()
    livemode: bool | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    # Stripe Connect: the connected account (`acct_...`) an event came from, and the
    # Connect application (`ca_...`) that created the PaymentIntent or Charge. ANY
    # ("*") matches any value that is present.
    account: tuple[str, ...] = ()
    application: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = [
            f"{name} in {','.join(values)}"
            for name, values in (
                ("billing_reason", self.billing_reason),
                ("origin", self.origin),
                ("currency", self.currency),
                ("price", self.price_ids),
                ("product", self.product_ids),
                ("account", self.account),
                ("application", self.application),
            )
            if values
        ]
        if self.livemode is not None:
            parts.append("live" if self.livemode else "test")
        parts.extend(f"metadata.{k}={v}" for k, v in self.metadata.items())
        return "; ".join(parts) or "-"


ANY = "*"  # a condition value: any value that is present


@dataclass(frozen=True)
class CreditSpec:
    asset: str | None = None  # None: the payment's currency
    amount: Decimal | None = None  # None: the payment's amount on `basis`; else a fixed amount
    basis: str = "paid"  # paid (tax included) | net (excluding tax) | subtotal (list price)
    per_unit: bool = False  # fixed amount times the payment's quantity
    rate: Decimal = Decimal(1)  # multiplies the amount (custom assets)
    account: str = "default"
    reason: str = "external_topup"
    description: str | None = None
    expires: Expiry = Expiry()
    metadata: dict[str, str] = field(default_factory=dict)

    def describe_amount(self) -> str:
        base = self.basis if self.amount is None else str(self.amount)
        if self.per_unit:
            base += " per unit"
        if self.rate != 1:
            base += f" x {self.rate}"
        return base


@dataclass(frozen=True)
class ReverseSpec:
    """A refund or chargeback debits the original credit in proportion."""

    reason: str = "external_refund"
    description: str | None = None
    # When the bridge has no record of the original credit (paid before it was deployed):
    # hold (wait up to hold_for for the credit, then fail), skip (ignore), or debit the
    # refunded amount in the payment currency to the PSP customer's Credyt customer.
    unknown_original: str = "hold"
    hold_for: float = 7 * 86400.0
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    name: str
    on: tuple[str, ...]
    when: Conditions
    credit: CreditSpec | None
    reverse: ReverseSpec | None
    line: int
    # Negative conditions: the rule does not apply when any one of these holds.
    unless: Conditions = Conditions()

    @property
    def action(self) -> str:
        return "credit" if self.credit is not None else "reverse"


@dataclass(frozen=True)
class ConnectorConfig:
    name: str
    type: str
    secrets: tuple[str, ...]
    tolerance: float
    mode: str = "any"
    customer_metadata_key: str = "credyt_customer_id"
    match: str = "first"
    rules: tuple[Rule, ...] = ()
    # The currencies this connector may credit (ISO codes); empty: any. A payment in
    # another currency fails with the reason instead of funding an unpriced asset.
    currencies: tuple[str, ...] = ()
    # Credyt for Platforms: the Credyt account (X-CREDYT-ACCOUNT) this connector's
    # adjustments and look-ups act for; None: the API key's own account.
    credyt_account: str | None = None
    # Stripe Connect: connected account (acct_...) -> Credyt account. An event from a
    # connected account not listed here is failed (or ignored), never credited.
    accounts: dict[str, str] = field(default_factory=dict)
    unmapped_account: str = "fail"
    customer_metadata: str = "trust"
    # For `credyt-bridge backfill`: the PSP's API key and, for tests or a proxy, its base URL.
    api_key: str | None = None
    api_base: str | None = None
    # Paddle only: the `Paddle-Version` header backfill sends, so listed events have the
    # shape of the notification destination's webhooks.
    api_version: str = "1"


@dataclass(frozen=True)
class CredytConfig:
    api_url: str = "https://api.credyt.ai"
    api_key: str = ""
    timeout: float = 10.0
    concurrency: int = 32
    customer_cache: float = 300.0
    # Requests per second this process may send to Credyt (its rate limit is per
    # account: divide it among replicas); None: no limit until a 429 sets one.
    max_rate: float | None = None
    # Decimal places per asset code, ahead of what Credyt's GET /assets/{code} says.
    assets: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class AmountLimit:
    """Credits of one asset above these are held for an operator (`outbox approve`)."""

    max_adjustment: Decimal | None = None  # one credit
    max_per_customer_day: Decimal | None = None  # one customer's credits in 24 hours


@dataclass(frozen=True)
class DeliveryConfig:
    max_attempts: int = 30
    max_age: float = 3 * 86400.0
    backoff_initial: float = 1.0
    backoff_max: float = 600.0
    retry_after_max: float = 3600.0
    breaker_threshold: int = 5  # consecutive Credyt failures that open the circuit breaker
    breaker_cooldown: float = 1.0  # first pause before a probe; doubles up to 30 s


@dataclass(frozen=True)
class ProcessingConfig:
    """How often an event that could not be processed is tried again before it fails."""

    max_attempts: int = 20
    backoff_initial: float = 2.0
    backoff_max: float = 600.0


@dataclass(frozen=True)
class ServerConfig:
    max_body_bytes: int = 256 * 1024
    admin_token: str | None = None


ALERT_TARGET_TYPES = ("webhook", "slack")
# Every condition an alert can be raised on; `backlog_age` takes a duration.
ALERT_CONDITIONS = (
    "adjustment_dead",
    "event_failed",
    "backlog_age",
    "breaker_opened",
    "credyt_key_rejected",
)


@dataclass(frozen=True)
class AlertTarget:
    """Where alerts go: a generic webhook (JSON) or a Slack-compatible incoming webhook.
    `url` is a secret (Slack's carries its token): logs and answers name the target."""

    name: str
    type: str
    url: str


@dataclass(frozen=True)
class AlertsConfig:
    targets: tuple[AlertTarget, ...] = ()
    # The conditions alerted on; `backlog_age` is in `backlog_age`, None when off.
    conditions: frozenset[str] = frozenset(ALERT_CONDITIONS)
    backlog_age: float | None = 1800.0  # the oldest pending adjustment older than this
    window: float = 600.0  # one message per condition per window, then a summary
    base_url: str | None = None  # the console's base, for links in the messages


@dataclass(frozen=True)
class Config:
    path: str
    database: str
    credyt: CredytConfig
    delivery: DeliveryConfig
    server: ServerConfig
    connectors: dict[str, ConnectorConfig]
    log_level: str = "info"
    retention: float = 30 * 86400.0
    processing: ProcessingConfig = ProcessingConfig()
    alerts: AlertsConfig | None = None  # None: no `alerts:` section, nothing is sent
    limits: dict[str, AmountLimit] = field(default_factory=dict)  # asset code -> limit

    def tenant_accounts(self) -> frozenset[str]:
        """Every Credyt account a connector acts for through X-CREDYT-ACCOUNT."""
        found: set[str] = set()
        for connector in self.connectors.values():
            if connector.credyt_account:
                found.add(connector.credyt_account)
            found.update(connector.accounts.values())
        return frozenset(found)

    def credyt_account_named(self, ref: str) -> str:
        """The Credyt account `ref` names: a mapped Stripe account's, or `ref` itself."""
        for connector in self.connectors.values():
            if ref in connector.accounts:
                return connector.accounts[ref]
        return ref

    # Secret keys left unresolved by `load_config(resolve_secrets=False)`, as messages.
    unresolved: tuple[str, ...] = ()


def find_connector(config: Config, ref: str) -> ConnectorConfig:
    """A connector by name, or the only connector of that type."""
    if ref in config.connectors:
        return config.connectors[ref]
    of_type = [c for c in config.connectors.values() if c.type == ref]
    if len(of_type) == 1:
        return of_type[0]
    if of_type:
        names = ", ".join(c.name for c in of_type)
        raise ConfigError(f"several {ref} connectors ({names}): name one")
    raise ConfigError(
        f"no connector {ref!r} in {config.path} (have: {', '.join(config.connectors)})"
    )
