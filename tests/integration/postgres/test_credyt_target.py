"""Both stores keep the Credyt environment and account an outbox row is for (schema v3)."""

from __future__ import annotations

import time
from dataclasses import replace

from bridge.storage.store import Store
from tests.helpers.store_rows import accept, adjustment, processed, run


def test_an_outbox_row_keeps_the_credyt_environment_and_account_it_is_for(
    store: Store,
) -> None:
    for_test = replace(
        adjustment("11111111-1111-4111-8111-111111111111"),
        credyt_environment="test",
        credyt_account="acc_1",
    )
    for_any = adjustment("22222222-2222-4222-8222-222222222222", payment="in_2")
    assert processed(store, accept(store, "evt_1"), for_test) == 1
    assert processed(store, accept(store, "evt_2"), for_any) == 1
    listed = {r.transaction_id: r for r in store.list_adjustments()}
    assert (listed[for_test.transaction_id].credyt_environment,) == ("test",)
    assert listed[for_test.transaction_id].credyt_account == "acc_1"
    assert listed[for_any.transaction_id].credyt_environment is None
    claimed = run(store.claim_adjustments(time.time() + 1, 10, 60.0))
    assert {(r.transaction_id, r.credyt_environment, r.credyt_account) for r in claimed} == {
        (for_test.transaction_id, "test", "acc_1"),
        (for_any.transaction_id, None, None),
    }
