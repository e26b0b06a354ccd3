"""Reconcile: match what the PSP collected against what the bridge decided and what
Credyt holds, payment by payment.

Backfill replays missing *events*; reconcile checks the *money*. For each object that
moved money at the PSP in the window (listed by the connector's `objects_api`, wrapped
as the event that would have carried it), the connector's readers and the current
rules give the adjustments that should exist and their transaction ids, the same ids
the live path derives. Each is looked up in what the bridge decided and in its outbox,
and a delivered one is read back from Credyt (`get_transaction`), at most `rate` reads
a second. Then every adjustment the bridge decided in the window that no PSP object
accounts for is `unexpected`.

Memory stays flat: pages are read lazily, only findings that are not `ok` are kept, and
the transaction ids seen are kept in a temporary SQLite file, not in memory.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from decimal import Decimal

import structlog

from bridge.config.schema import Config, ConnectorConfig, Rule
from bridge.credyt.assets import AssetPrecisions, quantize
from bridge.credyt.client import CredytClient
from bridge.errors import (
    BridgeError,
    CredytError,
    CredytUnavailableError,
    EventError,
    ReconcileError,
)
from bridge.events import Kind, PaymentEvent
from bridge.operating.reconcile_report import (
    ABSENT,
    AMOUNT_DIFFERS,
    ASSET_DIFFERS,
    MISSING,
    NOT_DELIVERED,
    OK,
    UNEXPECTED,
    Finding,
    ReconcileReport,
)
from bridge.processing.rules import credit_amount, credit_asset, matching_rules, transaction_id
from bridge.storage.records import AdjustmentStatus, Decided
from bridge.storage.store import Store
from connectors import Connector, connector_type
from connectors.listing import ListedObject, ObjectSource

log = structlog.get_logger("bridge.reconcile")

# PSP objects created this long before `since` are read too, and only marked seen: their
# webhook may have reached the bridge after `since`, so their adjustment is no
# `unexpected` one. Not reported themselves (they belong to the previous window).
EDGE = 3600.0
DECIDED_PAGE = 500
# A read-back Credyt answers 429 or 5xx (or not at all) is tried again this many times,
# after its Retry-After or 1, 2, 4 s (at most READ_BACK_MAX_WAIT); then the run stops.
READ_BACK_RETRIES = 3
READ_BACK_MAX_WAIT = 60.0
DETAIL_KEEP = 160  # characters of Credyt's answer a row quotes (events show has it all)
STORED_ROWS = 200  # rows kept with a run's record (the admin API); counts cover every row


class SeenIds:
    """Transaction ids accounted for by a PSP object, in a temporary SQLite file."""

    def __init__(self) -> None:
        handle, self._path = tempfile.mkstemp(prefix="credyt-bridge-reconcile-", suffix=".db")
        os.close(handle)
        self._db = sqlite3.connect(self._path)
        self._db.execute("PRAGMA journal_mode = OFF")
        self._db.execute("PRAGMA synchronous = OFF")
        self._db.execute("CREATE TABLE seen (id TEXT PRIMARY KEY) WITHOUT ROWID")
        self._pending: list[tuple[str]] = []

    def add(self, transaction_id: str) -> None:
        self._pending.append((transaction_id,))
        if len(self._pending) >= 1000:
            self._flush()

    def __contains__(self, transaction_id: str) -> bool:
        self._flush()
        found = self._db.execute("SELECT 1 FROM seen WHERE id = ?", (transaction_id,))
        return found.fetchone() is not None

    def _flush(self) -> None:
        if self._pending:
            self._db.executemany("INSERT OR IGNORE INTO seen VALUES (?)", self._pending)
            self._pending.clear()

    def close(self) -> None:
        self._db.close()
        os.unlink(self._path)


class ReadBacks:
    """Credyt's transactions read back, at most `rate` a second (0: no bound)."""

    def __init__(
        self,
        client: CredytClient,
        rate: float,
        report: ReconcileReport,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._client, self._report = client, report
        self._gap = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._clock, self._sleep = clock, sleep

    async def get(self, customer_id: str, tx: str) -> tuple[Decimal, str] | None:
        if self._gap:
            wait = self._next - self._clock()
            if wait > 0:
                await self._sleep(wait)
            self._next = max(self._next, self._clock()) + self._gap
        self._report.read_backs += 1
        for attempt in range(READ_BACK_RETRIES + 1):
            try:
                found = await self._client.get_transaction(customer_id, tx)
                return None if found is None else (found.amount, found.asset)
            except CredytUnavailableError as exc:  # 429, 5xx, network: a few times more
                if attempt == READ_BACK_RETRIES:
                    raise ReconcileError(
                        f"reading transaction {tx} back from Credyt failed "
                        f"{READ_BACK_RETRIES + 1} times: {exc}"
                    ) from exc
                wait = exc.retry_after if exc.retry_after is not None else 2.0**attempt
                await self._sleep(min(max(wait, 0.0), READ_BACK_MAX_WAIT))
            except CredytError as exc:
                raise ReconcileError(
                    f"reading transaction {tx} back from Credyt failed: {exc}"
                ) from exc
        raise AssertionError("unreachable")


class Reconciler:
    """One run over one connector's window; `run` fills `report`."""

    def __init__(
        self,
        store: Store,
        connector: ConnectorConfig,
        reader: Connector,
        client: CredytClient,
        precisions: AssetPrecisions,
        report: ReconcileReport,
        *,
        rate: float,
        listable: Iterable[str],
    ) -> None:
        self.store, self.connector, self.reader = store, connector, reader
        self.precisions, self.report = precisions, report
        self.read_backs = ReadBacks(client, rate, report)
        self.listable = frozenset(listable)  # the event types the PSP's lists stand for
        self.seen = SeenIds()

    async def run(self, objects: Iterator[ListedObject]) -> ReconcileReport:
        try:
            for listed in objects:
                self.report.listed += 1
                await self.check(listed, report=listed.created >= self.report.since)
            await self.unexpected()
        finally:
            self.seen.close()
        self.report.finished_at = time.time()
        return self.report

    async def check(self, listed: ListedObject, *, report: bool) -> None:
        try:
            normalized = self.reader.normalize(json.loads(listed.body))
        except (EventError, ValueError) as exc:
            log.warning("reconcile_object_unreadable", object_id=listed.object_id, error=str(exc))
            self.report.skipped += 1
            return
        if not isinstance(normalized, PaymentEvent):
            self.report.skipped += 1
            return
        rules = matching_rules(normalized, self.connector)
        if not rules:
            self.report.skipped += 1
            return
        state = self.store.payment_state([normalized.payment_key, *normalized.payment_ids])
        if normalized.kind is Kind.PAYMENT:
            pairs = self._credits(normalized, rules, state.decided)
        else:
            pairs = self._reversals(normalized, state.decided)
        for decided, expected in pairs:
            if decided is not None:
                self.seen.add(decided.transaction_id)
            if report:
                self.report.add(await self._finding(listed, normalized, rules, decided, expected))

    def _credits(
        self, event: PaymentEvent, rules: list[Rule], decided: Iterable[Decided]
    ) -> list[tuple[Decided | None, Rule | None]]:
        credits = [d for d in decided if d.kind == Kind.PAYMENT.value]
        pairs: list[tuple[Decided | None, Rule | None]] = []
        for rule in rules:
            tx = transaction_id(event.psp, event.payment_key, rule.name)
            mine = next((d for d in credits if d.transaction_id == tx), None)
            if mine is None:  # credited under another id of the payment (an earlier event)
                mine = next((d for d in credits if d.rule == rule.name), None)
            if mine is None and self.connector.match == "first" and credits:
                mine = credits[0]
            pairs.append((mine, rule))
        return pairs

    def _reversals(
        self, event: PaymentEvent, decided: Iterable[Decided]
    ) -> list[tuple[Decided | None, Rule | None]]:
        ref = event.reversal_key or event.event_id
        mine = [d for d in decided if d.reversal_key == ref and d.kind == event.kind.value]
        return [(d, None) for d in mine] or [(None, None)]

    async def _finding(
        self,
        listed: ListedObject,
        event: PaymentEvent,
        rules: list[Rule],
        decided: Decided | None,
        rule: Rule | None,
    ) -> Finding:
        finding = Finding(
            OK,
            event.kind.value,
            listed.object_id,
            event.payment_key,
            event.currency,
            event.amount,
            "",
        )
        if decided is None:
            finding.status = MISSING
            finding.detail = (
                "no adjustment was ever decided for it: no event of it reached the bridge"
            )
            finding.event_id, finding.event_body = listed.event_id, listed.body
            if rule is not None:
                finding.transaction_id = transaction_id(event.psp, event.payment_key, rule.name)
            return finding
        finding.transaction_id, finding.customer_id = decided.transaction_id, decided.customer_id
        if not decided.delivers:  # recorded for its PSP units alone: Credyt never had it
            finding.detail = "nothing left to reverse or give back: no adjustment was sent"
            return finding
        expected_asset, expected_amount = decided.asset, Decimal(decided.amount)
        if rule is not None:
            expected_asset = credit_asset(rule, event)
            expected_amount = credit_amount(rule, event)
            try:
                expected_amount = quantize(
                    expected_amount, await self.precisions.precision(expected_asset)
                )
            except BridgeError as exc:
                raise ReconcileError(f"the precision of asset {expected_asset}: {exc}") from exc
        return await self._compare(finding, decided, expected_asset, expected_amount)

    async def _compare(
        self, finding: Finding, decided: Decided, asset: str, amount: Decimal
    ) -> Finding:
        outbox = self.store.get_adjustment(decided.transaction_id)
        if outbox is not None:
            finding.outbox_id = outbox.id
            if outbox.status is not AdjustmentStatus.DELIVERED:
                finding.status = NOT_DELIVERED
                why = (outbox.last_error or "not tried yet")[:DETAIL_KEEP]
                finding.detail = (
                    f"{outbox.status.value} in the outbox after {outbox.attempts} attempt(s): {why}"
                )
                return finding
        held = await self.read_backs.get(decided.customer_id, decided.transaction_id)
        if held is None:
            finding.status = ABSENT
            finding.detail = (
                "delivered per the bridge; Credyt has no such transaction for customer "
                f"{decided.customer_id}"
            )
        elif held[1] != asset:
            finding.status = ASSET_DIFFERS
            finding.detail = (
                f"Credyt holds {held[0]} {held[1]}; the PSP's payment makes {amount} {asset}"
            )
        elif held[0] != amount:
            finding.status = AMOUNT_DIFFERS
            finding.detail = (
                f"Credyt holds {held[0]} {held[1]}; the PSP's payment makes {amount} {asset}"
            )
        return finding

    async def unexpected(self) -> None:
        """Adjustments decided in the window that no listed PSP object accounts for."""
        rules = {rule.name: rule for rule in self.connector.rules}
        after = 0
        while True:
            page = self.store.decided_page(
                self.connector.name, self.report.since, self.report.until, after, DECIDED_PAGE
            )
            for row_id, decided in page:
                after = row_id
                rule = rules.get(decided.rule)
                if rule is not None and not set(rule.on) & self.listable:
                    continue  # no PSP list stands for its events (e.g. charge.refunded)
                if decided.transaction_id in self.seen or not decided.delivers:
                    continue  # accounted for, or no adjustment (recorded for its units)
                outbox = self.store.get_adjustment(decided.transaction_id)
                what = "payment" if decided.kind == Kind.PAYMENT.value else "reversal"
                self.report.add(
                    Finding(
                        UNEXPECTED,
                        decided.kind,
                        decided.reversal_key or decided.payment_key,
                        decided.payment_key,
                        decided.asset,
                        Decimal(decided.amount),
                        f"the bridge decided {decided.amount} {decided.asset} (rule "
                        f"{decided.rule}) but the PSP lists no such {what} in the window",
                        transaction_id=decided.transaction_id,
                        customer_id=decided.customer_id,
                        outbox_id=None if outbox is None else outbox.id,
                    )
                )
            if len(page) < DECIDED_PAGE:
                return


def open_objects(connector: ConnectorConfig, api_key: str | None) -> ObjectSource:
    """The connector's PSP object lists, with the key given, else the config's."""
    kind = connector_type(connector.type)
    key = api_key or connector.api_key
    if not key:
        raise ReconcileError(
            f"no API key for connector {connector.name}: set connectors.{connector.name}.api_key "
            f"in the config or {kind.api_key_variable}"
        )
    return kind.objects_api(key, connector.api_base, connector.api_version)


async def reconcile(
    store: Store,
    config: Config,
    connector: ConnectorConfig,
    source: ObjectSource,
    objects: Iterator[ListedObject],
    report: ReconcileReport,
    *,
    rate: float,
    repair: bool = False,
) -> ReconcileReport:
    """Check every listed object (`objects`, from `source`) and what the bridge decided in
    the report's window; with `repair`, fix what can be fixed; record the run."""
    from bridge.operating.reconcile_fix import fix
    from bridge.service import make_connector

    reader = make_connector(connector)
    client = CredytClient(
        config.credyt.api_url, config.credyt.api_key, timeout=config.credyt.timeout
    )
    try:
        precisions = AssetPrecisions(client, config.credyt.assets)
        checker = Reconciler(
            store,
            connector,
            reader,
            client,
            precisions,
            report,
            rate=rate,
            listable=source.listable_types,
        )
        await checker.run(objects)
    finally:
        await client.aclose()
    if repair:
        await fix(store, connector, reader, report)
    await store.record_reconcile(
        connector.name, report.finished_at or time.time(), report.to_json(STORED_ROWS)
    )
    log.info(
        "reconcile_finished",
        connector=connector.name,
        listed=report.listed,
        read_backs=report.read_backs,
        fixed=sum(report.fixed.values()),
        **{status.replace(" ", "_"): n for status, n in report.counts.items()},
    )
    return report
