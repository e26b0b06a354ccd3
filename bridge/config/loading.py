"""The bridge's configuration: one YAML file, validated at start-up into the frozen
objects of `schema`.

A mistake is reported with the file, the line and the key
(`config.yaml:14: connectors.stripe.rules[0].on: unknown Stripe event type ...`) and
the process does not start. `docs/configuration.md` documents every key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.config import platforms
from bridge.config.alerting import parse_alerts
from bridge.config.rules import ASSET_CODE, parse_rule
from bridge.config.schema import (
    MATCH,
    MODES,
    Config,
    ConnectorConfig,
    CredytConfig,
    DeliveryConfig,
    ProcessingConfig,
    ServerConfig,
)
from bridge.config.yamlsource import Section, load_yaml
from bridge.errors import ConfigError

if TYPE_CHECKING:
    from connectors import ConnectorType

_CONNECTOR_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
MIN_SECRET_LENGTH = 24  # real whsec_ (38+) and pdl_ntfset_ (60+) secrets are longer


def load_config(
    path: str | Path, environ: dict[str, str] | None = None, *, resolve_secrets: bool = True
) -> Config:
    """The config at `path`. `resolve_secrets=False` is for commands that only read the
    database: a secret-bearing key (`SECRET_KEYS`) whose `${VAR}` is unset keeps its text
    and is listed in `Config.unresolved` instead of failing the load."""
    file = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the config file: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{file}:{line}: not UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8"
        ) from None
    return parse_config(text, file, environ, resolve_secrets=resolve_secrets)


def is_secret_key(path: tuple[str | int, ...]) -> bool:
    """The keys that hold a secret: credyt.api_key, server.admin_token and each
    connector's secrets and api_key."""
    match path:
        case ("credyt", "api_key") | ("server", "admin_token"):
            return True
        case ("connectors", str(), "secrets", *_) | ("connectors", str(), "api_key"):
            return True
    return False


def parse_config(
    text: str,
    file: str = "config.yaml",
    environ: dict[str, str] | None = None,
    *,
    resolve_secrets: bool = True,
) -> Config:
    data, source = load_yaml(text, file, environ, None if resolve_secrets else is_secret_key)
    top = Section(data, (), source)
    top.only(
        "database",
        "credyt",
        "delivery",
        "processing",
        "server",
        "connectors",
        "log_level",
        "retention",
        "alerts",
        "limits",
    )
    credyt = _credyt(top.section("credyt"))
    delivery = _delivery(top.section("delivery"))
    processing = _processing(top.section("processing"))
    server = _server(top.section("server"))
    connectors_section = top.section("connectors")
    if not connectors_section.data:
        top.error("connectors", "at least one connector is required")
    connectors = {name: _connector(name, section) for name, section in connectors_section.items()}
    config = Config(
        path=file,
        database=top.text("database", "bridge.db") or "bridge.db",
        credyt=credyt,
        delivery=delivery,
        server=server,
        connectors=connectors,
        log_level=top.choice("log_level", ("debug", "info", "warning", "error"), "info"),
        retention=top.duration("retention", 30 * 86400.0) or 30 * 86400.0,
        processing=processing,
        alerts=parse_alerts(top.section("alerts")),
        limits=platforms.amount_limits(top.section("limits")),
        unresolved=tuple(source.unresolved.values()),
    )
    source.raise_errors()
    return config


def _credyt(section: Section) -> CredytConfig:
    section.only(
        "api_url", "api_key", "timeout", "concurrency", "customer_cache", "assets", "max_rate"
    )
    api_url = section.text("api_url", CredytConfig.api_url) or CredytConfig.api_url
    if not api_url.startswith(("http://", "https://")):
        section.error("api_url", f"must be an http(s) URL, got {api_url!r}")
    return CredytConfig(
        api_url=api_url.rstrip("/"),
        api_key=section.text("api_key", required=True) or "",
        timeout=section.duration("timeout", 10.0) or 10.0,
        concurrency=section.whole("concurrency", 32, minimum=1),
        customer_cache=section.duration("customer_cache", 300.0) or 0.0,
        assets=_asset_precisions(section.section("assets")),
        max_rate=_rate(section, "max_rate"),
    )


MAX_RATE = 1_000_000.0  # requests/s; more is a typo, not a limit


def _rate(section: Section, key: str) -> float | None:
    """A rate in requests per second above 0 (`credyt.max_rate`), or None when unset."""
    value = section.data.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int | float):
        section.error(key, f"must be a number of requests per second, got {value!r}")
        return None
    if not 0 < value <= MAX_RATE:
        section.error(key, f"must be above 0 and at most {MAX_RATE:,.0f} per second, got {value}")
        return None
    return float(value)


MAX_PRECISION = 18


def _asset_precisions(section: Section) -> dict[str, int]:
    """`credyt.assets`: asset code -> decimal places, e.g. `{TOK: 0, CREDITS: 4}`."""
    found: dict[str, int] = {}
    for code in section.data:
        if not isinstance(code, str) or not ASSET_CODE.match(code):
            section.error(str(code), "must be an asset code (2-32 letters, digits or _)")
            continue
        places = section.whole(code, 0)
        if places > MAX_PRECISION:
            section.error(code, f"must be at most {MAX_PRECISION} decimal places, got {places}")
            continue
        found[code.upper()] = places
    return found


def _delivery(section: Section) -> DeliveryConfig:
    section.only(
        "max_attempts",
        "max_age",
        "backoff_initial",
        "backoff_max",
        "retry_after_max",
        "breaker_threshold",
        "breaker_cooldown",
    )
    d = DeliveryConfig()
    return DeliveryConfig(
        max_attempts=section.whole("max_attempts", d.max_attempts, minimum=1),
        max_age=section.duration("max_age", d.max_age) or d.max_age,
        backoff_initial=section.duration("backoff_initial", d.backoff_initial) or d.backoff_initial,
        backoff_max=section.duration("backoff_max", d.backoff_max) or d.backoff_max,
        retry_after_max=section.duration("retry_after_max", d.retry_after_max) or d.retry_after_max,
        breaker_threshold=section.whole("breaker_threshold", d.breaker_threshold, minimum=1),
        breaker_cooldown=section.duration("breaker_cooldown", d.breaker_cooldown)
        or d.breaker_cooldown,
    )


def _processing(section: Section) -> ProcessingConfig:
    section.only("max_attempts", "backoff_initial", "backoff_max")
    d = ProcessingConfig()
    return ProcessingConfig(
        max_attempts=section.whole("max_attempts", d.max_attempts, minimum=1),
        backoff_initial=section.duration("backoff_initial", d.backoff_initial) or d.backoff_initial,
        backoff_max=section.duration("backoff_max", d.backoff_max) or d.backoff_max,
    )


def _server(section: Section) -> ServerConfig:
    section.only("max_body_bytes", "admin_token")
    token = section.text("admin_token")
    if token is None and section.has("admin_token"):
        section.error("admin_token", "is empty (remove the key to turn the admin API off)")
    if token is not None and len(token) < 16:
        section.error("admin_token", "must be at least 16 characters")
    return ServerConfig(
        max_body_bytes=section.whole("max_body_bytes", ServerConfig.max_body_bytes, minimum=1024),
        admin_token=token,
    )


def _connector(name: str, section: Section) -> ConnectorConfig:
    from connectors import connector_types, known_event_types

    section.only(
        "type",
        "secrets",
        "tolerance",
        "mode",
        "customer_metadata_key",
        "match",
        "rules",
        "api_key",
        "api_base",
        "api_version",
        "currencies",
        *platforms.PLATFORM_KEYS,
    )
    if not _CONNECTOR_NAME.match(name):
        section.error(
            None, "connector names are lower-case letters, digits, - and _ (used in URLs)"
        )
    kind = section.text("type", required=True) or ""
    types = connector_types()
    if kind and kind not in types:
        section.error(
            "type", f"unknown connector type {kind!r} (expected one of: {', '.join(types)})"
        )
    secrets = section.texts("secrets")
    if not secrets:
        section.error("secrets", "at least one webhook signing secret is required")
    for index, secret in enumerate(secrets):
        _check_secret(section, ("secrets", index), secret)
    events = known_event_types(kind) if kind in types else frozenset()
    rules = tuple(parse_rule(rule, kind, events) for rule in section.sections("rules"))
    names = [rule.name for rule in rules]
    for index, rule_name in enumerate(names):
        if names.index(rule_name) != index:
            section.source.error(
                (*section.path, "rules", index, "name"),
                f"two rules are named {rule_name!r}; rule names key the adjustments",
            )
    default_tolerance = types[kind].default_tolerance if kind in types else 300.0
    tolerance = section.duration("tolerance", default_tolerance)
    return ConnectorConfig(
        name=name,
        type=kind,
        secrets=secrets,
        tolerance=tolerance or 0.0,
        mode=section.choice("mode", MODES, "any"),
        customer_metadata_key=section.text("customer_metadata_key", "credyt_customer_id")
        or "credyt_customer_id",
        match=section.choice("match", MATCH, "first"),
        rules=rules,
        currencies=_currencies(section),
        api_key=section.text("api_key") or None,
        api_base=_api_base(section),
        api_version=_api_version(section, types.get(kind)),
        credyt_account=platforms.credyt_account(section),
        accounts=platforms.account_map(section, kind),
        unmapped_account=platforms.unmapped_account(section),
        customer_metadata=platforms.customer_metadata(section),
    )


def _currencies(section: Section) -> tuple[str, ...]:
    """`currencies:` the ISO codes the connector may credit (empty: any)."""
    codes = section.texts("currencies")
    for index, code in enumerate(codes):
        if not (len(code) == 3 and code.isascii() and code.isalpha()):
            section.source.error(
                (*section.path, "currencies", index),
                f"not an ISO 4217 currency code: {code!r}",
            )
    return tuple(dict.fromkeys(code.upper() for code in codes))


def _api_version(section: Section, kind: ConnectorType | None) -> str:
    value = section.text("api_version")
    if value is None:
        return "1"
    error = kind.api_version_error(value) if kind is not None else None
    if error is not None:
        section.error("api_version", error)
    return value


def _api_base(section: Section) -> str | None:
    value = section.text("api_base") or None
    if value is not None and not value.startswith(("http://", "https://")):
        section.error("api_base", f"must be an http(s) URL, got {value!r}")
    return value.rstrip("/") if value else None


def _check_secret(section: Section, key: tuple[str, int], secret: str) -> None:
    """An empty or short webhook secret would let anyone sign: refuse it (never print it)."""
    path = (*section.path, *key)
    if not secret.strip():
        section.source.error(path, "is empty (an unset variable with an empty ${VAR:-} default?)")
    elif len(secret) < MIN_SECRET_LENGTH:
        section.source.error(
            path,
            f"is {len(secret)} characters; a webhook signing secret has at least "
            f"{MIN_SECRET_LENGTH} characters (copy the whole whsec_... or pdl_ntfset_... value)",
        )
