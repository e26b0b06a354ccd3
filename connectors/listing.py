"""What the PSPs' event-list clients share: the listed event, the source contract, and
cutting each event out of a list response exactly as the PSP sent it (for backfill)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bridge.errors import BackfillError

DAY = 86400.0


@dataclass(frozen=True)
class ListedEvent:
    """One event as the PSP's API lists it; `body` is what the inbox stores."""

    event_id: str
    event_type: str
    occurred_at: float
    body: bytes


class EventSource(Protocol):
    @property
    def psp(self) -> str: ...

    @property
    def retention(self) -> float: ...  # how far back the PSP keeps events, seconds

    cursor: str | None  # after the last event handed out; `--resume` starts after it

    def events(
        self, since: float, types: Sequence[str], resume: str | None = None
    ) -> Iterator[ListedEvent]: ...

    def event(self, event_id: str) -> ListedEvent: ...  # one event by id (`--event`)

    def close(self) -> None: ...


_WS = re.compile(r"[ \t\n\r]*")


def _skip_ws(text: str, i: int) -> int:
    found = _WS.match(text, i)
    return found.end() if found else i


def raw_list(
    page: str, psp: str, id_key: str = "id", type_key: str | None = "type"
) -> tuple[dict[str, Any], list[tuple[dict[str, Any], str]]]:
    """Each element of a list response's top-level `data` array, parsed and as its text.

    The text is the exact slice of the response that the element was parsed from, so
    what is stored is what the PSP sent. Every element must have `id_key` (and, when
    given, `type_key`); `psp` names the PSP in errors.
    """
    decoder = json.JSONDecoder()
    try:
        parsed = json.loads(page)
        if not isinstance(parsed, dict) or not isinstance(parsed.get("data"), list):
            raise ValueError("no data array")
        i = _skip_ws(page, 0)
        if page[i] != "{":
            raise ValueError("not an object")
        i += 1
        while True:
            i = _skip_ws(page, i)
            name, i = decoder.raw_decode(page, i)
            i = _skip_ws(page, i)
            if page[i] != ":":
                raise ValueError("expected ':'")
            i = _skip_ws(page, i + 1)
            if name == "data" and page[i] == "[":
                break
            _, i = decoder.raw_decode(page, i)
            i = _skip_ws(page, i)
            if page[i] != ",":
                raise ValueError("no data array")
            i += 1
        spans: list[tuple[Any, str]] = []
        i += 1
        while True:
            i = _skip_ws(page, i)
            if page[i] == "]":
                break
            start = i
            element, i = decoder.raw_decode(page, i)
            spans.append((element, page[start:i]))
            i = _skip_ws(page, i)
            if page[i] == ",":
                i += 1
    except (ValueError, IndexError) as exc:
        raise BackfillError(f"{psp}'s event list is not the JSON list it should be") from exc
    items = parsed["data"]
    if [element for element, _ in spans] != items:  # a duplicated "data" key: trust neither
        raise BackfillError(f"{psp}'s event list is not the JSON list it should be")
    out: list[tuple[dict[str, Any], str]] = []
    for item, (_, raw) in zip(items, spans, strict=True):
        if not isinstance(item, dict) or not item.get(id_key):
            raise BackfillError(f"{psp} listed an event without an id")
        if type_key is not None and not item.get(type_key):
            raise BackfillError(f"{psp} listed an event without a type")
        out.append((item, raw))
    return parsed, out


@dataclass(frozen=True)
class ListedObject:
    """One PSP object that moves money (reconcile), wrapped as the event that would have
    carried it: `body` is that event's JSON, holding the object exactly as listed, so the
    connector's readers derive the same payment keys as from the live webhook.
    `event_id` is `reconcile_<object id>` (Stripe: `evt_reconcile_...`): no PSP event
    has it, and `--fix` stores the body under it."""

    object_id: str
    event_id: str
    event_type: str
    created: float
    body: bytes


class ObjectSource(Protocol):
    @property
    def psp(self) -> str: ...

    @property
    def listable_types(self) -> frozenset[str]: ...  # the event types its lists stand for

    def objects(self, since: float, until: float, types: Sequence[str]) -> Iterator[ListedObject]:
        """The objects created in [since, until) that events of `types` carry, lazily,
        page by page."""
        ...

    def close(self) -> None: ...
