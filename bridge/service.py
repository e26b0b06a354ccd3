"""One bridge process: receiver, processor and deliverer wired from a Config.

`Bridge(config).app` is an ASGI app whose lifespan starts the two workers and, on
shutdown (SIGTERM/SIGINT through uvicorn), stops claiming work, lets in-flight
deliveries finish for a grace period, and leaves the rest in the outbox.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from starlette.applications import Starlette

from bridge.app import create_app
from bridge.config import Config, ConnectorConfig
from bridge.credyt import CredytClient
from bridge.customers import CustomerResolver
from bridge.delivery import Deliverer, RetryPolicy
from bridge.metrics import Metrics
from bridge.processing import ConnectorRuntime, Processor
from bridge.store import Store, open_store
from connectors import Connector, connector_types

log = structlog.get_logger("bridge.service")

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


class Bridge:
    def __init__(self, config: Config, store: Store | None = None) -> None:
        self.config = config
        self.metrics = Metrics()
        self.store = store or open_store(config.database)
        self.connectors = connector_runtimes(config)
        self.client = CredytClient(
            config.credyt.api_url,
            config.credyt.api_key,
            timeout=config.credyt.timeout,
            max_connections=config.credyt.concurrency,
        )
        self.resolver = CustomerResolver(self.client, config.credyt.customer_cache)
        self.deliverer = Deliverer(
            self.store,
            self.client,
            RetryPolicy.from_config(config.delivery),
            metrics=self.metrics,
            concurrency=config.credyt.concurrency,
            lease=2 * config.credyt.timeout + 5,
        )
        self.processor = Processor(
            self.store, self.connectors, self.resolver, on_adjustments=self.deliverer.wake
        )
        self.app: Starlette = create_app(
            store=self.store,
            connectors={name: rt.connector for name, rt in self.connectors.items()},
            metrics=self.metrics,
            max_body_bytes=config.server.max_body_bytes,
            on_accepted=self.processor.wake,
            on_scrape=self.refresh_gauges,
            lifespan=self.lifespan,
        )

    def refresh_gauges(self) -> None:
        counts = self.store.counts()
        for status, number in counts["events"].items():
            self.metrics.inbox_depth.labels(status).set(number)
        for status, number in counts["adjustments"].items():
            self.metrics.outbox_depth.labels(status).set(number)
        oldest = self.store.oldest_pending_adjustment()
        self.metrics.oldest_pending.set(0 if oldest is None else max(0.0, time.time() - oldest))

    @asynccontextmanager
    async def lifespan(self, _: Starlette) -> AsyncIterator[None]:
        workers = [
            asyncio.create_task(self.processor.run(), name="processor"),
            asyncio.create_task(self.deliverer.run(), name="deliverer"),
        ]
        log.info(
            "bridge_started", connectors=sorted(self.connectors), database=self.config.database
        )
        try:
            yield
        finally:
            await self.processor.stop(SHUTDOWN_GRACE / 2)
            await self.deliverer.stop(SHUTDOWN_GRACE)
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await self.client.aclose()
            self.store.close()
            log.info("bridge_stopped")
