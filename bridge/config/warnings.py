"""Warnings about a config that loads but probably does not do what was meant."""

from __future__ import annotations

from bridge.config.schema import Conditions, Config, Rule
from connectors import connector_type

RAILS = (
    "credits {types} with neither a marker (when: metadata: {{credyt_topup: 'true'}}) nor "
    "an exclusion (unless: ...): if this account is connected to Credyt for its own "
    "top-ups, Credyt credits those and this rule would credit them again"
)


def config_warnings(config: Config) -> list[str]:
    warnings = []
    for connector in config.connectors.values():
        kind = connector_type(connector.type)
        for rule in connector.rules:
            warning = kind.rule_warning(rule.on, rule.when.metadata)
            if warning is None:
                warning = _rails_warning(rule, kind.topup_event_types)
            if warning is not None:
                warnings.append(f"{config.path}:{rule.line}: rule {rule.name} {warning}")
    return warnings


def _rails_warning(rule: Rule, topup_event_types: tuple[str, ...]) -> str | None:
    """A top-up rule that would also credit the payments Credyt's own rails make."""
    types = [t for t in rule.on if t in topup_event_types]
    if rule.credit is None or not types or rule.when.metadata or rule.unless != Conditions():
        return None
    return RAILS.format(types=", ".join(types))
