"""Injected failures: the settings a test or demo asks for, and their validation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from bridge.credyt.sandbox.wire import invalid

FAULT_GROUPS = frozenset({"adjustments", "customers", "wallet", "events", "accounts", "assets"})


class FaultSettings(TypedDict, total=False):
    """The keyword arguments of SandboxState.inject() and of POST /_sandbox/faults."""

    fail_next: int
    fail_status: int
    rate_limit_next: int
    retry_after: float | None
    delay: float
    drop_next: int
    only: str | None


@dataclass
class Faults:
    """The injected failures still to fire; counters count down as they do."""

    fail_next: int = 0
    fail_status: int = 500
    rate_limit_next: int = 0
    retry_after: float | None = None
    delay: float = 0.0
    drop_next: int = 0
    only: str | None = None

    def applies_to(self, group: str) -> bool:
        return self.only is None or self.only == group


@dataclass(frozen=True, slots=True)
class FaultAction:
    """What the gate does with one admitted API request."""

    fail_status: int | None = None
    rate_limited: bool = False
    retry_after: float | None = None
    drop: bool = False


def check_faults(faults: Faults) -> None:
    counts = {
        "fail_next": faults.fail_next,
        "rate_limit_next": faults.rate_limit_next,
        "drop_next": faults.drop_next,
    }
    for name, count in counts.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise invalid(name, f"{name} must be a whole number, 0 or more.")
    if not isinstance(faults.fail_status, int) or not 100 <= faults.fail_status <= 599:
        raise invalid("fail_status", "fail_status must be an HTTP status code.")
    if not _is_seconds(faults.delay):
        raise invalid("delay", "delay must be a number of seconds, 0 or more.")
    if faults.retry_after is not None and not _is_seconds(faults.retry_after):
        raise invalid("retry_after", "retry_after must be a number of seconds, 0 or more.")
    if faults.only is not None and faults.only not in FAULT_GROUPS:
        raise invalid("only", f"only must be one of: {', '.join(sorted(FAULT_GROUPS))}.")


def _is_seconds(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def seconds_text(seconds: float) -> str:
    """Retry-After text: whole seconds as an integer, anything finer as a decimal."""
    return str(int(seconds)) if seconds == int(seconds) else str(seconds)
