"""Everything the sandbox knows: customers, wallets, adjustments, usage events,
assets and the faults still to fire.
"""

from __future__ import annotations

import re
import secrets
import string
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from bridge.credyt.sandbox.faults import FaultAction, Faults, check_faults, retry_after_for
from bridge.credyt.sandbox.wire import AdjustmentRequest, UsageEvent, invalid
from bridge.errors import SandboxError

_ID_ALPHABET = string.ascii_lowercase + string.digits

# ISO 4217 currencies whose minor unit is not two decimal places. The sandbox answers
# `GET /assets/{code}` for these with their ISO exponent, for any other three-letter
# currency code with 2, and for custom assets with what `add_asset` (or
# `POST /_sandbox/assets`) gave them. Any other code is answered with precision 2, or,
# with `strict_assets` set, 404 as in Credyt.
ISO_ZERO_DECIMAL = frozenset(
    "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split()
)
ISO_THREE_DECIMAL = frozenset("BHD IQD JOD KWD LYD OMR TND".split())
ISO_FOUR_DECIMAL = frozenset("CLF UYW".split())
_CURRENCY_CODE = re.compile(r"^[A-Z]{3}$")
_CUSTOM_CODE = re.compile(r"^[A-Za-z0-9_]{2,32}$")
_SANDBOX_EPOCH = "2025-01-01T00:00:00.000000Z"


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    external_id: str | None
    name: str
    email: str
    created_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {**self.summary(), "created_at": self.created_at}

    def summary(self) -> dict[str, Any]:
        """The customer as a list page shows it (no `created_at`)."""
        return {
            "id": self.id,
            "external_id": self.external_id,
            "name": self.name,
            "email": self.email,
            "active_subscription_count": 0,
        }


class SandboxState:
    """Everything the sandbox knows; safe to read and drive from other threads."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.customers: dict[str, Customer] = {}
        self.wallets: dict[str, dict[str, Decimal]] = {}
        self.adjustments: list[dict[str, Any]] = []
        self.usage_events: list[dict[str, Any]] = []
        self.conflicts: list[dict[str, Any]] = []
        self.faults = Faults()
        self.request_count = 0
        self.adjustment_requests = 0
        self.rate_limited = 0  # 429s answered for going over `rate_limit`
        self.requests: list[str] = []  # "GET /customers?external_id=x", newest last
        self.environment = "test"  # what GET /accounts/self says the key is for
        self.account_id = "acc_sandbox"
        self._by_transaction: dict[str, dict[str, Any]] = {}
        self._event_ids: set[str] = set()
        self.assets: dict[str, int] = {}  # custom assets added: code -> precision
        # Credyt for Platforms: the connected accounts a request's X-CREDYT-ACCOUNT
        # names, each with customers and wallets of its own (`tenant`).
        self.tenants: dict[str, SandboxState] = {}
        # False: a custom asset nobody added is answered with precision 2, as the wallets
        # take any asset; True: it is a 404, as in Credyt.
        self.strict_assets = False

    def reset(self) -> None:
        """Forget customers, wallets, records, counters and faults."""
        with self._lock:
            self.customers.clear()
            self.wallets.clear()
            self.adjustments.clear()
            self.usage_events.clear()
            self.conflicts.clear()
            self._by_transaction.clear()
            self._event_ids.clear()
            self.assets.clear()
            self.faults = Faults()
            self.request_count = 0
            self.adjustment_requests = 0
            self.rate_limited = 0
            self.requests.clear()
            self.environment = "test"
            self.tenants.clear()

    def tenant(self, account: str | None) -> SandboxState:
        """The state of connected account `account` (created on first use); None or ""
        is this, the API key's own account."""
        if not account:
            return self
        with self._lock:
            found = self.tenants.get(account)
            if found is None:
                found = self.tenants[account] = SandboxState()
                found.environment = self.environment
                found.account_id = account
                found.strict_assets = self.strict_assets
            return found

    def add_customer(
        self,
        *,
        external_id: str | None = None,
        name: str = "",
        email: str = "",
        customer_id: str | None = None,
    ) -> str:
        """Create a customer and return its id; a taken id or external_id is a 409."""
        with self._lock:
            new_id = customer_id or _new_id("cust_")
            if new_id in self.customers:
                raise SandboxError(409, "Customer already exists", f"Customer {new_id} exists.")
            if external_id and self._by_external_id(external_id):
                raise SandboxError(
                    409,
                    "Customer already exists",
                    f"A customer with external_id {external_id} already exists.",
                )
            self.customers[new_id] = Customer(new_id, external_id or None, name, email, _now())
            return new_id

    def customer(self, customer_id: str) -> Customer:
        with self._lock:
            found = self.customers.get(customer_id)
        if found is None:
            raise SandboxError(404, "Customer not found", f"No customer {customer_id}.")
        return found

    def find_by_external_id(self, external_id: str) -> Customer:
        """The customer with this external_id, or a 404."""
        with self._lock:
            found = self._by_external_id(external_id)
        if found is None:
            raise SandboxError(
                404, "Customer not found", f"No customer with external_id {external_id}."
            )
        return found

    def customer_page(
        self, *, filters: Mapping[str, str] | None = None, limit: int, offset: int
    ) -> dict[str, Any]:
        """A page of the customers whose `email`, `name` and `id` match `filters`."""
        wanted = dict(filters or {})
        with self._lock:
            matching = [
                c
                for c in self.customers.values()
                if all(getattr(c, field) == value for field, value in wanted.items())
            ]
        return {
            "items": [c.summary() for c in matching[offset : offset + limit]],
            "total_count": len(matching),
            "limit": limit,
            "offset": offset,
        }

    def balance(self, customer_id: str, asset: str, account: str = "default") -> Decimal:
        with self._lock:
            return self.wallets.get(customer_id, {}).get(f"{account}:{asset}", Decimal("0"))

    def accounts(self, customer_id: str) -> list[dict[str, Any]]:
        with self._lock:
            wallet = dict(self.wallets.get(customer_id, {}))
        return [_account_json(account_id, wallet[account_id]) for account_id in sorted(wallet)]

    def inject(
        self,
        *,
        fail_next: int = 0,
        fail_status: int = 500,
        rate_limit_next: int = 0,
        retry_after: float | None = None,
        delay: float = 0.0,
        drop_next: int = 0,
        only: str | None = None,
        rate_limit: float | None = None,
    ) -> None:
        """Replace the fault settings; keys left out are cleared (no arguments: no faults)."""
        faults = Faults(
            fail_next, fail_status, rate_limit_next, retry_after, delay, drop_next, only, rate_limit
        )
        check_faults(faults)
        with self._lock:
            self.faults = faults

    def transaction(self, customer_id: str, transaction_id: str) -> dict[str, Any]:
        """The adjustment recorded under `transaction_id` for this customer (Credyt's
        GetTransactionResponse), or a 404."""
        with self._lock:
            record = self._by_transaction.get(transaction_id.lower())
        if record is None or record["customer_id"] != customer_id:
            raise SandboxError(
                404, "Transaction not found", f"No transaction {transaction_id} in this wallet."
            )
        body = record["body"]
        answer = {
            "id": record["transaction_id"],
            "type": "adjustment",
            "account_id": f"{body.get('account_name') or 'default'}:{body['asset']}",
            "asset": body["asset"],
            "amount": Decimal(body["amount"]),
            "created_at": record["received_at"],
            "executed_at": record["received_at"],
        }
        for optional in ("description", "metadata"):
            if body.get(optional) is not None:
                answer[optional] = body[optional]
        return answer

    def admit(self, group: str, request: str = "") -> float:
        """Count one API request and return how long its answer must wait."""
        with self._lock:
            self.request_count += 1
            if request:
                self.requests.append(request)
            if group == "adjustments":
                self.adjustment_requests += 1
            return self.faults.delay if self.faults.applies_to(group) else 0.0

    def take_fault(self, group: str) -> FaultAction:
        """The fault one authorized API request meets, counted down as it fires."""
        with self._lock:
            faults = self.faults
            if not faults.applies_to(group):
                return FaultAction()
            wait = faults.bucket.take() if faults.bucket is not None else None
            if wait is not None:  # over --rate-limit: 429, and no other fault counts down
                self.rate_limited += 1
                retry_after = faults.retry_after
                return FaultAction(
                    rate_limited=True,
                    retry_after=retry_after_for(wait) if retry_after is None else retry_after,
                )
            if faults.fail_next > 0:
                faults.fail_next -= 1
                return FaultAction(fail_status=faults.fail_status)
            if faults.rate_limit_next > 0:
                faults.rate_limit_next -= 1
                return FaultAction(rate_limited=True, retry_after=faults.retry_after)
            if group == "adjustments" and faults.drop_next > 0:
                faults.drop_next -= 1
                return FaultAction(drop=True)
            return FaultAction()

    def apply_adjustment(
        self, customer_id: str, request: AdjustmentRequest, body: Mapping[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """Record and apply an adjustment once per transaction_id; returns (record, is_new)."""
        with self._lock:
            self.customer(customer_id)
            first = self._by_transaction.get(request.transaction_id)
            if first is not None:
                self._note_conflict(first, customer_id, body)
                return first, False
            received_at = _now()
            record = {
                "id": _new_id("adj_"),
                "transaction_id": request.transaction_id,
                "customer_id": customer_id,
                "body": body,
                "received_at": received_at,
            }
            self.adjustments.append(record)
            self._by_transaction[request.transaction_id] = record
            self._credit(customer_id, f"{request.account_name}:{request.asset}", request.amount)
            return record, True

    def record_usage(self, customer_id: str, events: Sequence[UsageEvent]) -> tuple[int, int]:
        """Debit each new event's cost; returns (accepted, duplicates)."""
        accepted = 0
        with self._lock:
            for event in events:
                if event.id in self._event_ids:
                    continue
                self._event_ids.add(event.id)
                accepted += 1
                self.usage_events.append(
                    {"customer_id": customer_id, "event": event.body, "received_at": _now()}
                )
                if event.cost is not None:
                    self._credit(customer_id, f"default:{event.asset}", -event.cost)
        return accepted, len(events) - accepted

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy of the whole state (amounts stay Decimal)."""
        with self._lock:
            return {
                "customers": [c.as_json() for c in self.customers.values()],
                "wallets": {cid: dict(wallet) for cid, wallet in self.wallets.items()},
                "adjustments": list(self.adjustments),
                "conflicts": list(self.conflicts),
                "usage_events": list(self.usage_events),
                "request_count": self.request_count,
                "adjustment_requests": self.adjustment_requests,
                "rate_limited": self.rate_limited,
                "faults": self.faults.settings(),
                "tenants": {name: t.snapshot() for name, t in self.tenants.items()},
            }

    def lose_transaction(self, transaction_id: str) -> None:
        """Forget an applied adjustment and undo its effect on the wallet, as if Credyt's
        ledger had lost it (reconcile's `absent in Credyt`); a later arrival applies it."""
        with self._lock:
            record = self._by_transaction.pop(transaction_id.lower())
            self.adjustments.remove(record)
            body = record["body"]
            account = f"{body.get('account_name') or 'default'}:{body['asset']}"
            self._credit(record["customer_id"], account, -Decimal(str(body["amount"])))

    def alter_transaction(self, transaction_id: str, amount: Decimal) -> None:
        """Make the transaction under `transaction_id` hold `amount` instead (reconcile's
        `amount differs`: something else wrote under the bridge's id)."""
        with self._lock:
            record = self._by_transaction[transaction_id.lower()]
            body = dict(record["body"])
            account = f"{body.get('account_name') or 'default'}:{body['asset']}"
            self._credit(record["customer_id"], account, amount - Decimal(str(body["amount"])))
            body["amount"] = str(amount)
            record["body"] = body

    def _by_external_id(self, external_id: str) -> Customer | None:
        return next((c for c in self.customers.values() if c.external_id == external_id), None)

    def _credit(self, customer_id: str, account_id: str, amount: Decimal) -> None:
        wallet = self.wallets.setdefault(customer_id, {})
        wallet[account_id] = wallet.get(account_id, Decimal("0")) + amount

    def _note_conflict(
        self, first: Mapping[str, Any], customer_id: str, body: Mapping[str, Any]
    ) -> None:
        if first["body"] == body and first["customer_id"] == customer_id:
            return
        self.conflicts.append(
            {
                "transaction_id": first["transaction_id"],
                "first": first["body"],
                "second": body,
                "first_customer_id": first["customer_id"],
                "second_customer_id": customer_id,
                "received_at": _now(),
            }
        )

    def add_asset(self, code: str, precision: int) -> None:
        """Create (or redefine) a custom asset with `precision` decimal places."""
        whole = isinstance(precision, int) and not isinstance(precision, bool)
        if not whole or not 0 <= precision <= 18:
            raise invalid("precision", "precision must be a whole number from 0 to 18.")
        with self._lock:
            self.assets[code] = precision

    def asset(self, code: str) -> dict[str, Any]:
        """The asset as `GET /assets/{code}` answers it (the SDK's GetAssetResponse)."""
        with self._lock:
            precision = self.assets.get(code)
            strict = self.strict_assets
        if precision is None:
            precision = iso_precision(code)
        if precision is None and not strict and _CUSTOM_CODE.match(code):
            precision = 2
        if precision is None:
            raise SandboxError(404, "Asset not found", f"No asset {code}.")
        return {
            "code": code,
            "name": code,
            "precision": precision,
            "label": code,
            "rates": [],
            "created_at": _SANDBOX_EPOCH,
        }


def iso_precision(code: str) -> int | None:
    if not _CURRENCY_CODE.match(code):
        return None
    if code in ISO_ZERO_DECIMAL:
        return 0
    if code in ISO_THREE_DECIMAL:
        return 3
    if code in ISO_FOUR_DECIMAL:
        return 4
    return 2


def _account_json(account_id: str, available: Decimal) -> dict[str, Any]:
    name, _, asset = account_id.rpartition(":")
    return {"id": account_id, "name": name, "asset": asset, "available": available}


def _new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(26))


def _now() -> datetime:
    return datetime.now(UTC)
