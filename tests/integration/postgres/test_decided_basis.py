"""The net a credit's reversals are measured against (`decided.basis_minor`, schema 7),
on both backends: kept through prune, and NULL (the gross) for every decision a schema-6
database already held."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import replace

import psycopg
import pytest

from bridge.storage import postgres_schema, sqlite_schema
from bridge.storage.records import AdjustmentStatus, DeliveryOutcome
from bridge.storage.store import Store, open_store
from tests.helpers.store_rows import accept, adjustment, processed, run


def test_the_net_recorded_with_a_credit_is_kept_after_prune(store: Store) -> None:
    now = time.time()
    inbox = accept(store, "evt_taxed", now - 100)
    net = replace(adjustment("tx-net", payment="txn_taxed"), basis_minor=2000)
    paid = adjustment("tx-paid", payment="txn_taxed")
    processed(store, inbox, net, paid)
    for row in run(store.claim_adjustments(now + 1, 10, 30)):
        run(
            store.record_delivery(
                DeliveryOutcome(row.id, AdjustmentStatus.DELIVERED, now - 50, 1.0, status_code=201)
            )
        )
    assert run(store.prune_finished(now))["adjustments"] == 2
    assert store.get_adjustment("tx-net") is None
    decided = {d.transaction_id: d.basis_minor for d in store.payment_state(["txn_taxed"]).decided}
    assert decided == {"tx-net": 2000, "tx-paid": None}


# A decision as schema 4 to 6 wrote it (the back-fill's columns): no basis_minor.
OLD_DECISION = (
    "INSERT INTO decided (transaction_id, connector, rule, kind, payment_key, customer_id,"
    " asset, account, amount, payment_amount_minor, reversed_minor, decided_at)"
    " VALUES ('tx-old', 'paddle', 'net', 'payment', 'txn_old', 'cust_1', 'EUR', 'net',"
    " '10.00', 1200, 0, 1.0)"
)


def test_a_schema_6_database_keeps_its_decisions_measured_by_the_gross(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    postgres = database.startswith("postgresql")
    with monkeypatch.context() as older:
        older.setattr(postgres_schema if postgres else sqlite_schema, "SCHEMA_VERSION", 6)
        open_store(database).close()
    if postgres:
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(OLD_DECISION)
    else:
        with sqlite3.connect(database) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == 6
            conn.execute(OLD_DECISION)
    upgraded = open_store(database)  # migrates to 7
    try:
        (old,) = upgraded.payment_state(["txn_old"]).decided
        assert (old.transaction_id, old.payment_amount_minor, old.basis_minor) == (
            "tx-old",
            1200,
            None,
        )
    finally:
        upgraded.close()


def test_a_decision_recorded_for_its_units_is_decided_but_never_queued(store: Store) -> None:
    """`deliver=False` (a dispute of a refunded charge): a decided row of amount 0 with
    its PSP units, no outbox row, nothing to claim or prune, and a repeat adds nothing."""
    now = time.time()
    inbox = accept(store, "evt_dispute", now - 100)
    debit = replace(
        adjustment("tx-refund", payment="pi_refunded", amount="-15.32"),
        kind="reversal",
        reversal_key="re_1",
        original="tx-credit",
        reversed_minor=1532,
        family="refund",
    )
    counted = replace(
        debit,
        transaction_id="tx-dispute",
        reversal_key="dp_1",
        amount="0",
        family="dispute",
        deliver=False,
    )
    assert processed(store, inbox, debit, counted) == 1
    assert processed(store, inbox, counted) == 0
    assert store.get_adjustment("tx-dispute") is None
    assert [a.transaction_id for a in store.list_adjustments()] == ["tx-refund"]
    claimed = run(store.claim_adjustments(now + 1, 10, 30))
    assert [row.transaction_id for row in claimed] == ["tx-refund"]
    decided = {
        d.transaction_id: (d.amount, d.reversed_minor, d.delivers)
        for d in store.payment_state(["pi_refunded"]).decided
    }
    assert decided == {"tx-refund": ("-15.32", 1532, True), "tx-dispute": ("0", 1532, False)}
