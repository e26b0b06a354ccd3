"""Hostile ids and parameters on the admin API and the CLI: 404 or 400, never a 500.

A real bridge (uvicorn on 127.0.0.1, SQLite, the sandbox) with the admin API on. Ids
too large for an SQLite integer, digits that are not ASCII (`²`), booleans that are
strings, and bodies of the wrong type each get a clear 4xx and change nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from bridge.storage.records import AdjustmentStatus
from connectors import stripe
from tests.conftest import RunningBridge, Sandbox, config_text, wait_until
from tests.helpers.operator import run_cli

TOKEN = "admin-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HUGE = "99999999999999999999"
SUPERSCRIPT_TWO = "%C2%B2"  # "²": str.isdigit() says True, int() refuses it


@pytest.fixture
def admin(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> RunningBridge:
    text = config_text(
        str(tmp_path / "bridge.db"), sandbox.url, f"server:\n  admin_token: {TOKEN}\n"
    )
    (tmp_path / "config.yaml").write_text(text, encoding="utf-8")
    return make_bridge(text)


def call(running: RunningBridge, method: str, path: str, **kwargs: object) -> httpx.Response:
    return httpx.request(method, running.url + path, headers=AUTH, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("ref", [HUGE, SUPERSCRIPT_TWO, "-1", "0"])
@pytest.mark.parametrize(
    ("method", "template"),
    [
        ("GET", "/admin/events/{}"),
        ("POST", "/admin/events/{}/replay"),
        ("GET", "/admin/adjustments/{}"),
    ],
)
def test_invalid_ids_are_404(admin: RunningBridge, method: str, template: str, ref: str) -> None:
    answer = call(admin, method, template.format(ref))
    assert answer.status_code == 404, answer.text
    assert answer.json()["error"]


@pytest.mark.parametrize("ids", [[HUGE], ["²"], [int(HUGE)]])
def test_invalid_ids_in_bodies_are_404(admin: RunningBridge, ids: list[object]) -> None:
    assert call(admin, "POST", "/admin/replay", json={"ids": ids}).status_code == 404
    answer = call(admin, "POST", "/admin/adjustments/retry", json={"ids": ids})
    assert answer.status_code == 404, answer.text


@pytest.mark.parametrize("limit", [SUPERSCRIPT_TWO, HUGE, "0", "-1", "1e3", "%EF%BC%95"])
def test_invalid_limits_are_400(admin: RunningBridge, limit: str) -> None:
    for path in ("/admin/events", "/admin/adjustments"):
        answer = call(admin, "GET", f"{path}?limit={limit}")
        assert answer.status_code == 400, (path, limit, answer.text)
        assert "limit" in answer.json()["error"]


def dead_adjustment(admin: RunningBridge, sandbox: Sandbox) -> int:
    """An adjustment Credyt refused for good (422): `dead`."""
    sandbox.state.inject(fail_next=1, fail_status=422, only="adjustments")
    event = stripe.sample_event(
        "invoice.paid", event_id="evt_dead", object_id="in_dead", customer="cust_admin"
    )
    assert admin.send_stripe(event).status_code == 200
    wait_until(
        lambda: any(
            a.status is AdjustmentStatus.DEAD for a in admin.bridge.store.list_adjustments()
        ),
        10,
        "the adjustment to go dead",
    )
    [row] = admin.bridge.store.list_adjustments()
    return row.id


@pytest.mark.parametrize("dead", ["false", "true", 1, 0, None, [], {}])
def test_dead_must_be_a_json_boolean(admin: RunningBridge, sandbox: Sandbox, dead: object) -> None:
    row = dead_adjustment(admin, sandbox)
    answer = call(admin, "POST", "/admin/adjustments/retry", json={"dead": dead})
    assert answer.status_code == 400, answer.text
    assert "dead" in answer.json()["error"]
    adjustment = admin.bridge.store.get_adjustment(str(row))
    assert adjustment is not None and adjustment.status is AdjustmentStatus.DEAD


def test_dry_run_is_strict_and_never_replays_for_real_by_mistake(admin: RunningBridge) -> None:
    event = stripe.sample_event(
        "invoice.paid", event_id="evt_dry", object_id="in_dry", customer="cust_admin"
    )
    assert admin.send_stripe(event).status_code == 200
    admin.settle()
    [first] = admin.bridge.store.list_adjustments()
    before = admin.bridge.store.get_event("evt_dry")
    assert before is not None
    value: str | int
    for value in ("on", "ture", "2", "", "TRUE!"):
        answer = call(admin, "POST", f"/admin/events/evt_dry/replay?dry_run={value}")
        assert answer.status_code == 400, (value, answer.text)
        assert "dry_run" in answer.json()["error"]
    for value in ("true", "1", "yes", "TRUE"):
        answer = call(admin, "POST", f"/admin/events/evt_dry/replay?dry_run={value}")
        assert answer.status_code == 200 and answer.json()["dry_run"] is True
    after = admin.bridge.store.get_event("evt_dry")
    assert after is not None and after.attempts == before.attempts  # nothing was recorded
    for value in ("yes", "on", 1, "false"):
        answer = call(admin, "POST", "/admin/replay", json={"ids": ["evt_dry"], "dry_run": value})
        assert answer.status_code == 400, (value, answer.text)
    after = admin.bridge.store.get_event("evt_dry")
    assert after is not None and after.attempts == before.attempts
    assert [a.id for a in admin.bridge.store.list_adjustments()] == [first.id]


@pytest.mark.parametrize(
    "body",
    [
        {"status": ["failed"]},
        {"status": 5},
        {"status": "failed", "connector": ["stripe"]},
        {"status": "failed", "connector": {"a": 1}},
        {"status": "failed", "since": ["2h"]},
        {"status": "failed", "until": True},
        {"ids": "evt_1"},
        {"ids": [True]},
        {"ids": [None]},
        {"ids": [["evt_1"]]},
        {"status": "no-such-status"},
    ],
)
def test_a_wrongly_typed_replay_body_is_400(admin: RunningBridge, body: dict[str, object]) -> None:
    answer = call(admin, "POST", "/admin/replay", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]


@pytest.mark.parametrize("body", [{"ids": "1"}, {"ids": [1.5]}, {"ids": [{"id": 1}]}, [1], "x"])
def test_a_wrongly_typed_retry_body_is_400(admin: RunningBridge, body: object) -> None:
    answer = call(admin, "POST", "/admin/adjustments/retry", json=body)
    assert answer.status_code == 400, answer.text


def test_events_show_of_a_huge_id_is_one_error_line(admin: RunningBridge, tmp_path: Path) -> None:
    for ref in (HUGE, "²"):
        shown = run_cli(tmp_path / "config.yaml", "events", "show", ref, ok=False)
        assert shown.returncode == 1
        assert "Traceback" not in shown.stderr
        lines = shown.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error:"), shown.stderr
        assert "no stored event" in lines[0]
