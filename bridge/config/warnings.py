"""Warnings about a config that loads but probably does not do what was meant."""

from __future__ import annotations

from bridge.config.schema import Config


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
