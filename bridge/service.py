"""One bridge process: receiver, processor and deliverer wired from a Config.

`Bridge(config).app` is an ASGI app whose lifespan starts the two workers and, on
shutdown (SIGTERM/SIGINT through uvicorn), stops claiming work, lets in-flight
deliveries finish for a grace period, and leaves the rest in the outbox.

`build_processor` is the one place a Processor is wired from a Config: the bridge's
own, and the one `credyt-bridge replay` runs beside it (same connectors, rules, asset
precisions and retries, so a replay decides as the running bridge would).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

import structlog
from starlette.applications import Starlette
from starlette.routing import Route

from bridge.alerting.worker import AlertWorker
from bridge.config.schema import Config, ConnectorConfig
from bridge.credyt.assets import AssetPrecisions
from bridge.credyt.client import CredytClient
from bridge.credyt.key import KeyCheck
from bridge.delivery.breaker import CircuitBreaker
from bridge.delivery.deliverer import Deliverer
from bridge.delivery.limiter import CredytRateLimiter
from bridge.delivery.retry import RetryPolicy
from bridge.errors import ConfigError
from bridge.metrics import Metrics
from bridge.pressure import IngestPressure
from bridge.processing.customers import CustomerResolver
from bridge.processing.limits import AmountLimits
from bridge.processing.processor import ConnectorRuntime, Processor
from bridge.receiving.app import WebhookFastPath, create_app
from bridge.storage.records import AdjustmentStatus, EventStatus
from bridge.storage.store import AlertTables, ChangeFeed, Store, open_store, redact_database
from connectors import Connector, connector_types

log = structlog.get_logger("bridge.service")

# Stopping (SIGTERM / SIGINT): the HTTP server first stops accepting and gives requests in
# progress up to HTTP_DRAIN seconds, then the workers get SHUTDOWN_GRACE seconds between
# them. A stop takes at most about 15 s; anything cut short stays in the inbox or outbox.
HTTP_DRAIN = 5
SHUTDOWN_GRACE = 10.0


def make_connector(config: ConnectorConfig) -> Connector:
    factory = connector_types()[config.type]
    return factory(
        secrets=config.secrets,
        tolerance=config.tolerance,
        customer_metadata_key=config.customer_metadata_key,
        mode=config.mode,
    )


def connector_runtimes(config: Config) -> dict[str, ConnectorRuntime]:
    return {name: ConnectorRuntime(c, make_connector(c)) for name, c in config.connectors.items()}


def worker_lease(config: Config) -> float:
    """Seconds a claimed event or adjustment stays hidden from other replicas: two
    Credyt timeouts and some slack, so a live worker never loses its row."""
    return 2 * config.credyt.timeout + 5


def build_processor(
    config: Config,
    store: Store,
    client: CredytClient,
    *,
    connectors: Mapping[str, ConnectorRuntime] | None = None,
    customer_cache: float | None = None,
    on_adjustments: Callable[[], None] = lambda: None,
    metrics: Metrics | None = None,
    pressure: IngestPressure | None = None,
) -> Processor:
    """The processor `config` describes, over `store` and `client`. `connectors`: the
    runtimes to share (default: made from the config); `customer_cache`: seconds a
    customer look-up is kept (default: `credyt.customer_cache`; 0 looks up afresh)."""
    cache = config.credyt.customer_cache if customer_cache is None else customer_cache
    return Processor(
        store,
        connector_runtimes(config) if connectors is None else connectors,
        CustomerResolver(client, cache),
        on_adjustments=on_adjustments,
        metrics=metrics,
        lease=worker_lease(config),
        pressure=pressure,
        assets=AssetPrecisions(client, config.credyt.assets),
        retries=config.processing,
        limits=AmountLimits(config.limits, store, metrics) if config.limits else None,
    )


class Bridge:
    def __init__(self, config: Config, store: Store | None = None) -> None:
        self.config = config
        self.metrics = Metrics(config.tenant_accounts())
        self.store = store or open_store(config.database)
        self.connectors = connector_runtimes(config)
        # One limiter for every Credyt request of this process (credyt.max_rate).
        self.limiter = CredytRateLimiter(
            config.credyt.max_rate, on_rate_limited=self.metrics.credyt_rate_limited.inc
        )
        self.metrics.credyt_allowed_rate.set_function(self.limiter.allowed_rate)
        self.client = CredytClient(
            config.credyt.api_url,
            config.credyt.api_key,
            timeout=config.credyt.timeout,
            max_connections=config.credyt.concurrency,
            limiter=self.limiter,
        )
        self.key_check = KeyCheck(self.client, config.connectors, self.metrics)
        self.pressure = IngestPressure()
        self.deliverer = Deliverer(
            self.store,
            self.client,
            RetryPolicy.from_config(config.delivery),
            metrics=self.metrics,
            concurrency=config.credyt.concurrency,
            breaker=CircuitBreaker(
                threshold=config.delivery.breaker_threshold,
                cooldown=config.delivery.breaker_cooldown,
            ),
            lease=worker_lease(config),
            pressure=self.pressure,
            environment=lambda: self.key_check.account,
            tenants=config.tenant_accounts(),
            limiter=self.limiter,
        )
        self.processor = build_processor(
            config,
            self.store,
            self.client,
            connectors=self.connectors,
            on_adjustments=self.deliverer.wake,
            metrics=self.metrics,
            pressure=self.pressure,
        )
        self.resolver = self.processor.resolver
        self.processor.credyt_target = self._credyt_target
        self.alerts = self._alert_worker()
        self.app: WebhookFastPath = create_app(
            store=self.store,
            connectors={name: rt.connector for name, rt in self.connectors.items()},
            metrics=self.metrics,
            max_body_bytes=config.server.max_body_bytes,
            on_accepted=self._accepted,
            on_scrape=self.refresh_gauges,
            lifespan=self.lifespan,
            extra_routes=self._admin_routes(),
            not_ready=lambda: self.key_check.problem,
        )

    def _credyt_target(self) -> tuple[str | None, str | None]:
        account = self.key_check.account
        return (None, None) if account is None else (account.environment, account.account_id)

    def _accepted(self) -> None:
        self.pressure.note()
        self.processor.wake()

    def _alert_worker(self) -> AlertWorker | None:
        """The alert worker, only when `alerts:` is configured."""
        if self.config.alerts is None:
            return None
        if not isinstance(self.store, AlertTables):
            raise ConfigError("alerts: this database has no alert tables")
        from bridge.alerting.conditions import ProcessState

        state = ProcessState(breaker=self.deliverer.breaker, key_check=self.key_check)
        return AlertWorker(
            self.config.alerts,
            self.store,
            self.metrics,
            state,
            retention=self.config.retention,
        )

    def _admin_routes(self) -> list[Route]:
        """The admin API and the console, only when `server.admin_token` is set."""
        token = self.config.server.admin_token
        if not token:
            return []
        from bridge.console.routes import console_routes
        from bridge.operating.admin import admin_routes

        return admin_routes(
            token=token,
            store=self.store,
            connectors=self.connectors,
            processor=self.processor,
            on_retry=self.deliverer.wake,
        ) + console_routes(
            token=token,
            store=self.store,
            connectors=self.connectors,
            processor=self.processor,
            breaker_state=lambda: self.deliverer.breaker.state.value,
            on_retry=self.deliverer.wake,
        )

    def refresh_gauges(self) -> None:
        counts = self.store.counts()
        # Every status, so one that emptied reads 0 instead of its last value.
        for event_status in EventStatus:
            number = counts["events"].get(event_status.value, 0)
            self.metrics.inbox_depth.labels(event_status.value).set(number)
        for adjustment_status in AdjustmentStatus:
            number = counts["adjustments"].get(adjustment_status.value, 0)
            self.metrics.outbox_depth.labels(adjustment_status.value).set(number)
        oldest = self.store.oldest_pending_adjustment()
        self.metrics.oldest_pending.set(0 if oldest is None else max(0.0, time.time() - oldest))
        for run in self.store.last_reconciles():
            self.metrics.reconcile_last_run.labels(run.connector).set(run.finished_at)
            found: dict[str, int] = json.loads(run.report).get("counts") or {}
            for status, number in found.items():
                self.metrics.reconcile_payments.labels(run.connector, status).set(number)

    @asynccontextmanager
    async def lifespan(self, _: Starlette) -> AsyncIterator[None]:
        # A key for the other environment stops the start (ConfigError); a rejected key
        # or an unreachable Credyt does not: it is checked again, and nothing is
        # delivered (and /readyz fails) until Credyt accepts it.
        accepted = await self.key_check.attempt()
        workers = [
            asyncio.create_task(self.processor.run(), name="processor"),
            asyncio.create_task(self.deliverer.run(), name="deliverer"),
            # How late the event loop runs: the workers yield to the receiver when late.
            asyncio.create_task(self.pressure.watch(), name="ingest-pressure"),
        ]
        if not accepted:
            workers.append(asyncio.create_task(self.key_check.run(), name="credyt-key-check"))
        if self.alerts is not None:
            workers.append(asyncio.create_task(self.alerts.run(), name="alerts"))
        # Several replicas on one database: another one's new work wakes these workers.
        unsubscribe = (
            self.store.subscribe(events=self.processor.wake, adjustments=self.deliverer.wake)
            if isinstance(self.store, ChangeFeed)
            else None
        )
        log.info(
            "bridge_started",
            connectors=sorted(self.connectors),
            database=redact_database(self.config.database),
        )
        try:
            yield
        finally:
            if unsubscribe is not None:
                unsubscribe()
            if self.alerts is not None:
                self.alerts.stop()
            # Both at once, so the whole stop fits in SHUTDOWN_GRACE.
            await asyncio.gather(
                self.processor.stop(SHUTDOWN_GRACE / 2), self.deliverer.stop(SHUTDOWN_GRACE)
            )
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await self.client.aclose()
            self.store.close()
            log.info("bridge_stopped")
