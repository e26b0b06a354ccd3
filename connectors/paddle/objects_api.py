"""Paddle's objects that move money, for reconcile: completed transactions and
adjustments (refunds, chargebacks).

`GET /transactions?status=completed&created_at[GTE]=..&created_at[LT]=..` and
`GET /adjustments` (which has no time filter: read newest first, stopping before the
window), paginated with `after` through `meta.pagination.next`, with the events client's
retries on 429 and 5xx. Each object is wrapped as the event that would have carried it
(`transaction.completed`, `adjustment.updated`), so the readers give it the payment key
the live webhook gets.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from bridge.errors import BackfillError, ReconcileError
from connectors.listing import ListedObject, raw_list
from connectors.paddle.events_api import PADDLE_PER_PAGE, PaddleEvents

PADDLE_OBJECTS_PERMISSION = "transaction.read and adjustment.read"


class PaddleObjects(PaddleEvents):
    """Paddle's completed transactions and adjustments created in a window, lazily."""

    listable_types = frozenset(
        {"transaction.completed", "adjustment.created", "adjustment.updated"}
    )

    def objects(self, since: float, until: float, types: Sequence[str]) -> Iterator[ListedObject]:
        if "transaction.completed" in types:
            params = {
                "status": "completed",
                "created_at[GTE]": _iso(since),
                "created_at[LT]": _iso(until),
                "order_by": "created_at[ASC]",
                "per_page": PADDLE_PER_PAGE,
            }
            for obj, raw in self._pages("/transactions", params):
                yield _wrap(obj, raw, "transaction.completed")
        wrapper = next((t for t in ("adjustment.updated", "adjustment.created") if t in types), "")
        if wrapper:
            params = {"order_by": "id[DESC]", "per_page": PADDLE_PER_PAGE}
            for obj, raw in self._pages("/adjustments", params):
                created = _moment(obj)
                if created < since:
                    return  # newest first: the rest is older still
                if created < until:
                    yield _wrap(obj, raw, wrapper)

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str]]:
        url: str | None = f"{self._base}{path}"
        query: dict[str, Any] | None = params
        while url:
            try:
                text = self._get(url, query)
            except BackfillError as exc:
                message = (
                    str(exc)
                    .replace("listing events", f"listing {path.strip('/')}")
                    .replace("notification.read", PADDLE_OBJECTS_PERMISSION)
                )
                raise ReconcileError(message) from exc
            page, items = raw_list(text, "Paddle", "id", None)
            yield from items
            pagination = (page.get("meta") or {}).get("pagination") or {}
            if not items or not pagination.get("has_more") or not pagination.get("next"):
                return
            url, query = self._same_origin(str(pagination["next"])), None


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


def _moment(obj: dict[str, Any]) -> float:
    try:
        return datetime.fromisoformat(str(obj.get("created_at")).replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise ReconcileError(f"Paddle listed {obj.get('id')} without a valid created_at") from exc


def _wrap(obj: dict[str, Any], raw: str, event_type: str) -> ListedObject:
    """The notification `event_type` carrying `obj` (its listed text, unchanged)."""
    object_id = str(obj["id"])
    event_id = f"evt_reconcile_{object_id}"
    created = _moment(obj)
    head = {"event_id": event_id, "event_type": event_type, "occurred_at": _iso(created)}
    body = json.dumps(head)[:-1] + ', "data": ' + raw + "}"
    return ListedObject(object_id, event_id, event_type, created, body.encode())
