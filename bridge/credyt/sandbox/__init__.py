"""A local Credyt-compatible API: wallets, idempotent adjustments, customers, usage events.

The demo, the tests and the benchmarks run the bridge against this sandbox instead of
the real Credyt API. It speaks the same wire format (as Credyt's docs and its official
SDK describe it; tests/integration/test_credyt_contract.py checks it with the SDK):

    POST /customers                              201 {"id": "cust_..."}; 409 on a taken external_id
    GET  /customers/{id}                         200 customer, or 404
    GET  /customers?external_id=X                303 See Other, Location /customers/{id};
                                                 404 when no customer has that external_id
    GET  /customers?email&name&customer_id&limit&offset
                                                 200 page of customer summaries
    POST /customers/{id}/wallet/adjustments      201 {"id": transaction_id, "created_at"}; a
                                                 repeated transaction_id changes nothing and
                                                 answers `duplicate_status` (409 "Adjustment
                                                 already exists" by default)
    GET  /customers/{id}/wallet/transactions/{transaction_id}
                                                 200 the adjustment recorded under that id
                                                 for that customer, or 404
    GET  /customers/{id}/wallet                  200 {"accounts": [...]}
    GET  /customers/{id}/wallet/{name:ASSET}     200 the account with pending_in/pending_out
    GET  /accounts/self                          200 {"account_id", "environment", "name"};
                                                 `environment` is SandboxState.environment
                                                 (`test` unless set)
    POST /events                                 201 {"accepted", "duplicates"}
    GET  /assets/{code}                          200 the asset with its `precision`, or 404

Credyt for Platforms: a request with ``X-CREDYT-ACCOUNT: <account>`` acts on that
connected account's own customers, wallets and adjustments (``SandboxState.tenant``,
created on first use; control endpoints take ``?account=``); without it, on the key's.

Every API request needs the header ``X-CREDYT-API-KEY`` (401 with an empty body
otherwise) unless the app was built with ``api_key=None``. Every API request's method
and raw path (with its query) is logged in ``SandboxState.requests``, so a test can
prove which URLs the bridge did, and did not, ask for. Request JSON is parsed with
``parse_float=Decimal`` and answers render Decimals as their exact text, so money never
passes through a float. Errors are problem documents; validation errors (422) name each
bad field under ``errors``.

Sandbox convention for usage events: an event whose ``data.cost`` is a number debits that
much from the customer's ``default:<data.asset>`` account (``data.asset`` defaults to
``USD``). Each event ``id`` is an idempotency key across the whole sandbox; a repeated id is
counted as a duplicate and debits nothing.

Control endpoints (no key, never faulted) drive tests and demos over HTTP:

    POST /_sandbox/faults      same keys as SandboxState.inject(); replaces the fault settings
    GET  /_sandbox/state       customers, wallets, adjustments, conflicts, counters, faults
    POST /_sandbox/reset       forget everything
    POST /_sandbox/customers   same keys as SandboxState.add_customer(); 201 {"id": ...}
    POST /_sandbox/assets      {"code", "precision"}: add a custom asset; 201

Faults apply to API requests only (``only`` narrows them to one group: ``adjustments``,
``customers``, ``wallet``, ``events``, ``accounts`` or ``assets``), in this order:
``delay`` (every answer waits that long first), then the key check, then
``rate_limit`` (a token bucket of N API calls a second, a quarter second's worth
held: a call over it is answered 429 with ``Retry-After``,
whole seconds unless ``retry_after`` is set, changes nothing and is counted in
``rate_limited``), then ``fail_next``
(answer ``fail_status``, change nothing), then ``rate_limit_next`` (429 with
``Retry-After`` when ``retry_after`` is set, change nothing), then ``drop_next``
(adjustment POSTs only: the request is processed as usual, then the connection closes
after the status line and headers, so the client sees a broken response). The counters
count down as faults fire.

Errors raised on purpose: SandboxError (in bridge.errors' tree), a refused sandbox
operation; it carries the HTTP status and problem fields it is answered with (409 taken
id, 404 unknown, 422 invalid).
"""

from bridge.credyt.sandbox.app import create_sandbox_app, serve_sandbox
from bridge.credyt.sandbox.faults import FaultSettings
from bridge.credyt.sandbox.gate import API_KEY_HEADER
from bridge.credyt.sandbox.state import SandboxState
from bridge.credyt.sandbox.wire import dumps_exact, loads_exact, validate_adjustment
from bridge.errors import SandboxError

__all__ = [
    "API_KEY_HEADER",
    "FaultSettings",
    "SandboxError",
    "SandboxState",
    "create_sandbox_app",
    "dumps_exact",
    "loads_exact",
    "serve_sandbox",
    "validate_adjustment",
]
