"""Warnings about a config that loads but probably does not do what was meant."""

from __future__ import annotations

from bridge.config.schema import Config
from connectors import connector_type


def config_warnings(config: Config) -> list[str]:
    warnings = []
    for connector in config.connectors.values():
        kind = connector_type(connector.type)
        for rule in connector.rules:
            warning = kind.rule_warning(rule.on, rule.when.metadata)
            if warning is not None:
                warnings.append(f"{config.path}:{rule.line}: rule {rule.name} {warning}")
    return warnings
