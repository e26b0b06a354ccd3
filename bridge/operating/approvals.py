"""An operator's decision on a held adjustment: approve it (queued, delivered once under
its transaction id) or reject it (never sent). Either is kept on record: the row's
`last_error` and a line in its attempt history name the decision, who made it and why.
"""

from __future__ import annotations

import getpass
import time

from bridge.errors import NotFoundError, OperationError
from bridge.storage.records import AdjustmentStatus
from bridge.storage.store import Store


async def decide(store: Store, ref: str, *, approve: bool, note: str | None = None) -> str:
    """Approve or reject held adjustment `ref` (row id or transaction id); the decision
    as recorded. A row that is not held is refused with what it is."""
    row = store.get_adjustment(ref)
    if row is None:
        raise NotFoundError(f"no adjustment {ref!r} (give a row id or the transaction id)")
    if row.status is not AdjustmentStatus.HELD:
        raise OperationError(
            f"adjustment {row.id} is {row.status.value}, not held: only a held adjustment "
            "is approved or rejected"
        )
    verdict = "approved" if approve else "rejected"
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    record = f"{verdict} by {_operator()} at {when}" + (f": {note}" if note else "")
    if approve:
        record += "; queued for delivery"
    if not await store.decide_held(row.id, approve, record[:500]):
        raise OperationError(f"adjustment {row.id} is no longer held (decided meanwhile)")
    return record


def _operator() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user name in a container without a passwd entry
        return "an operator"
