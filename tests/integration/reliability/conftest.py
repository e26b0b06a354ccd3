"""Shared pieces of the reliability suite: counts for the closing summary,
signed unique webhooks and the exactly-once check against the sandbox.

The suite runs alone with `pytest tests/integration/reliability`; the fixtures of
`tests/conftest.py` (a real sandbox and a real bridge on loopback uvicorn) apply here
too. At the end it prints what it ran (webhooks sent, kills, faults injected, inputs
tried) so the numbers can be quoted.
"""

from __future__ import annotations

import re
import uuid
import warnings
from collections import Counter
from typing import Any

from bridge.credyt.sandbox import SandboxState
from bridge.processing.rules import transaction_id
from connectors import paddle, stripe
from tests.conftest import config_text

# Hypothesis imports libcst to report a failing example, and libcst warns on import
# (mypy_extensions.TypedDict); with filterwarnings=error that turns a clear failure into
# an INTERNALERROR. Importing it here, quietly, once, keeps failures readable.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import libcst.metadata.type_inference_provider  # noqa: F401
    except ImportError:
        pass

# What the suite did, summed over its tests and printed after the run.
COUNTS: Counter[str] = Counter()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not COUNTS:
        return
    terminalreporter.write_sep("=", "reliability: what was run")
    for key in sorted(COUNTS):
        terminalreporter.write_line(f"{key:<44} {COUNTS[key]}")


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:20]}"


def stripe_payment(customer: str, amount_minor: int = 1000) -> tuple[dict[str, Any], str]:
    """A signed-ready Stripe invoice.paid event for a new invoice, and its transaction id."""
    invoice = unique("in_")
    event = stripe.sample_event(
        "invoice.paid",
        event_id=unique("evt_"),
        object_id=invoice,
        customer=customer,
        amount_minor=amount_minor,
    )
    return event, transaction_id("stripe", invoice, "subscription-payment")


def paddle_payment(customer: str, amount_minor: int = 1000) -> tuple[dict[str, Any], str]:
    txn = unique("txn_")
    event = paddle.sample_event(
        "transaction.completed",
        event_id=unique("evt_"),
        object_id=txn,
        customer=customer,
        amount_minor=amount_minor,
    )
    return event, transaction_id("paddle", txn, "transaction")


def adjustments_by_transaction(state: SandboxState) -> Counter[str]:
    return Counter(str(a["transaction_id"]) for a in state.snapshot()["adjustments"])


def assert_exactly_once(state: SandboxState, expected: set[str]) -> None:
    """Credyt holds each expected transaction id once, nothing else, and no conflict."""
    seen = adjustments_by_transaction(state)
    doubled = {t: n for t, n in seen.items() if n > 1}
    assert not doubled, f"credited more than once: {doubled}"
    missing = expected - set(seen)
    assert not missing, f"never credited: {sorted(missing)[:5]} ({len(missing)} in all)"
    extra = set(seen) - expected
    assert not extra, f"credited without being expected: {sorted(extra)[:5]}"
    assert state.snapshot()["conflicts"] == []


def reliability_config(
    database: str,
    api_url: str,
    *,
    timeout: float = 5,
    delivery: str = "",
    extra: str = "",
) -> str:
    """The shared test config with a Credyt timeout and extra `delivery:` keys."""
    text = config_text(database, api_url, extra)
    text = text.replace("  timeout: 5\n", f"  timeout: {timeout}\n", 1)
    for line in delivery.strip().splitlines():
        key = line.split(":", 1)[0].strip()
        found = re.search(rf"^  {key}:.*$", text, re.M)
        if found:  # the shared config sets it: replace the value
            text = text[: found.start()] + f"  {line.strip()}" + text[found.end() :]
        else:
            text = text.replace("delivery:\n", f"delivery:\n  {line.strip()}\n", 1)
    return text
