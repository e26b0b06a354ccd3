"""Prometheus metrics, one registry per bridge so tests can run several side by side."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self, accounts: frozenset[str] = frozenset()) -> None:
        """`accounts`: the Credyt accounts the config acts for (Credyt for Platforms).
        With any, the money metrics get an `account` label: one of these, or "" for the
        API key's own account, so its values are bounded by the config."""
        self.registry = CollectorRegistry()
        self.accounts = accounts
        by_account = ["account"] if accounts else []
        r = self.registry
        self.webhooks = Counter(
            "bridge_webhooks",
            "Webhooks received, by connector and outcome "
            "(accepted, duplicate, rejected, too_large, unknown_connector, store_error).",
            ["connector", "outcome"],
            registry=r,
        )
        self.signature_failures = Counter(
            "bridge_signature_failures",
            "Webhooks refused for their signature, by reason "
            "(missing, malformed, mismatch, stale).",
            ["connector", "reason"],
            registry=r,
        )
        self.events_processed = Counter(
            "bridge_events_processed",
            "Stored events processed, by final status.",
            ["connector", "status"],
            registry=r,
        )
        self.deliveries = Counter(
            "bridge_deliveries",
            "Delivery attempts to Credyt, by result (delivered, already_existed, retry, dead).",
            ["result"],
            registry=r,
        )
        self.adjustment_conflicts = Counter(
            "bridge_adjustment_conflicts",
            "Adjustments Credyt answered 409 for while holding a different asset or amount "
            "under their transaction id; each goes dead with both versions in its error.",
            registry=r,
        )
        self.adjusted = Counter(
            "bridge_adjusted_amount",
            "Sum of delivered adjustment amounts in major units, by "
            "asset and direction (credit, debit), and by Credyt account where the config "
            "names any; a monitoring figure, not the ledger.",
            ["asset", "direction", *by_account],
            registry=r,
        )
        self.adjustments_held = Counter(
            "bridge_adjustments_held",
            "Credits held for an operator (outbox approve / reject) because they are over "
            "an amount limit, by asset (and Credyt account where the config names any).",
            ["asset", *by_account],
            registry=r,
        )
        self.outbox_depth = Gauge(
            "bridge_outbox_adjustments",
            "Adjustments in the outbox, by status.",
            ["status"],
            registry=r,
        )
        self.inbox_depth = Gauge(
            "bridge_inbox_events",
            "Events in the inbox, by status.",
            ["status"],
            registry=r,
        )
        self.oldest_pending = Gauge(
            "bridge_oldest_pending_adjustment_seconds",
            "Age of the oldest adjustment not yet delivered (0 when none).",
            registry=r,
        )
        self.credyt_key_accepted = Gauge(
            "bridge_credyt_key_accepted",
            "1 once Credyt accepted the API key (GET /accounts/self) for an environment "
            "every connector's mode fits, else 0.",
            registry=r,
        )
        self.breaker_open = Gauge(
            "bridge_breaker_open",
            "1 while the delivery circuit breaker is open (Credyt failing; probing), else 0.",
            registry=r,
        )
        self.credyt_allowed_rate = Gauge(
            "bridge_credyt_allowed_rate",
            "Credyt requests per second this process may send now (credyt.max_rate, cut "
            "on 429s and grown back); +Inf when unlimited.",
            registry=r,
        )
        self.credyt_rate_limited = Counter(
            "bridge_credyt_rate_limited",
            "429 Too Many Requests answers from Credyt.",
            registry=r,
        )
        self.alerts_sent = Counter(
            "bridge_alerts_sent",
            "Alert messages a target answered 2xx for, by target and condition.",
            ["target", "condition"],
            registry=r,
        )
        self.alerts_failed = Counter(
            "bridge_alerts_failed",
            "Alert sends that failed (tried again later, or given up after a day), "
            "by target and condition.",
            ["target", "condition"],
            registry=r,
        )
        self.reconcile_last_run = Gauge(
            "bridge_reconcile_last_run_timestamp_seconds",
            "When the last `credyt-bridge reconcile` run of each connector finished (Unix time).",
            ["connector"],
            registry=r,
        )
        self.reconcile_payments = Gauge(
            "bridge_reconcile_payments",
            "Payments, refunds and disputes the last reconcile run of each connector found, by "
            "status (ok, missing, not delivered, absent in Credyt, amount differs, asset "
            "differs, unexpected).",
            ["connector", "status"],
            registry=r,
        )
        self.receive_to_stored = Histogram(
            "bridge_receive_to_stored_seconds",
            "From a webhook's arrival to its durable storage.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.receive_to_delivered = Histogram(
            "bridge_receive_to_delivered_seconds",
            "From a webhook's arrival to Credyt's answer for its adjustment.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def account_labels(self, account: str | None) -> tuple[str, ...]:
        """The `account` label value of a row's Credyt account, when the metrics have it."""
        if not self.accounts:
            return ()
        return (account if account in self.accounts else "",)
