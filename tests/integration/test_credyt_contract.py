"""The sandbox and the bridge's request bodies, checked against Credyt's official SDK.

The sandbox is not the truth; Credyt's published contract is. These tests point
`credytapi`'s own client (the `credyt-api` package, generated from Credyt's OpenAPI
spec) at the running sandbox and call every operation the bridge relies on. Each answer
is checked against the SDK's model for it: every field the model marks required is
present, with the type the model declares. Where the SDK and the sandbox disagree (a page
where the SDK expects a 303, a missing required field, a status its error map does not
expect), a test here fails.
"""

from __future__ import annotations

import datetime
import decimal
import json
import types
import typing
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from corehttp.credentials import ServiceKeyCredential
from corehttp.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from credytapi import CredytApiClient, models
from credytapi._utils.model_base import Model as SdkModel

from bridge.credyt.sandbox import SandboxState, create_sandbox_app
from bridge.receiving.servers import serve_in_thread
from connectors import paddle, stripe
from tests.conftest import (
    API_KEY,
    PADDLE_SECRET,
    STRIPE_SECRET,
    RunningBridge,
    Sandbox,
    bridge_config,
)

# --- the SDK's models as the schema -------------------------------------------------


def conforms(model: type[Any], data: Any, where: str = "") -> list[str]:
    """What in `data` disagrees with the SDK model `model` (empty: it conforms).

    The SDK's deserializer is lax (a missing field reads as None, a bad date stays a
    string), so the model's own annotations are read as the schema instead."""
    where = where or model.__name__
    if not isinstance(data, dict):
        return [f"{where}: expected an object, got {type(data).__name__}"]
    problems: list[str] = []
    fields = model({})._attr_to_rest_field  # the SDK fills this in on first use
    for cls in reversed(model.__mro__):
        for name, annotation in getattr(cls, "__annotations__", {}).items():
            field = fields.get(name)
            if field is None:
                continue
            key = field._rest_name
            optional, inner = _unwrap_optional(annotation)
            if key not in data or data[key] is None:
                if not optional:
                    problems.append(f"{where}.{key}: required by the SDK, missing")
                continue
            problems += _check_type(inner, data[key], f"{where}.{key}")
    return problems


def _unwrap_optional(annotation: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        if len(args) == 1:
            return optional, args[0]
        return optional, typing.Union[tuple(args)]  # noqa: UP007
    return False, annotation


def _check_type(annotation: Any, value: Any, where: str) -> list[str]:
    origin = typing.get_origin(annotation)
    if annotation is str:
        return [] if isinstance(value, str) else [f"{where}: expected a string, got {value!r}"]
    if annotation is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return [] if ok else [f"{where}: expected an integer, got {value!r}"]
    if annotation is bool:
        return [] if isinstance(value, bool) else [f"{where}: expected a boolean, got {value!r}"]
    if annotation is decimal.Decimal:
        ok = isinstance(value, int | float | decimal.Decimal) and not isinstance(value, bool)
        return [] if ok else [f"{where}: expected a JSON number, got {value!r}"]
    if annotation is datetime.datetime:
        try:
            datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return [f"{where}: expected an ISO-8601 date-time, got {value!r}"]
        return []
    if origin is typing.Literal:
        allowed = typing.get_args(annotation)
        return [] if value in allowed else [f"{where}: expected one of {allowed}, got {value!r}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {value!r}"]
        (item,) = typing.get_args(annotation)
        return [p for i, v in enumerate(value) for p in _check_type(item, v, f"{where}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {value!r}"]
        _, item = typing.get_args(annotation)
        return [p for k, v in value.items() for p in _check_type(item, v, f"{where}.{k}")]
    if origin in (typing.Union, types.UnionType):  # str or a known-values enum
        args = typing.get_args(annotation)
        if any(not _check_type(a, value, where) for a in args):
            return []
        return [f"{where}: {value!r} matches none of {args}"]
    if isinstance(annotation, typing.ForwardRef | str):
        name = (
            annotation.__forward_arg__ if isinstance(annotation, typing.ForwardRef) else annotation
        )
        return conforms(getattr(models, name.rsplit(".", 1)[-1]), value, where)
    if isinstance(annotation, type) and issubclass(annotation, str):  # an enum of str
        return [] if isinstance(value, str) else [f"{where}: expected a string, got {value!r}"]
    if isinstance(annotation, type) and issubclass(annotation, SdkModel):
        return conforms(annotation, value, where)
    return []


def test_the_schema_check_itself_can_fail() -> None:
    """conforms() is what the contract rests on: it must see what the SDK requires."""
    good = {
        "id": "c",
        "name": "n",
        "created_at": "2024-01-01T00:00:00Z",
        "active_subscription_count": 0,
    }
    assert conforms(models.GetCustomerResponse, good) == []
    missing = {k: v for k, v in good.items() if k != "active_subscription_count"}
    assert conforms(models.GetCustomerResponse, missing) == [
        "GetCustomerResponse.active_subscription_count: required by the SDK, missing"
    ]
    assert conforms(models.GetCustomerResponse, good | {"created_at": "yesterday"})
    assert conforms(models.AccountContext, {"account_id": "a", "environment": "staging"})
    assert conforms(models.GetWalletResponse, {"accounts": [{"id": "default:USD"}]})


# --- the SDK against the sandbox ----------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[SandboxState, str]]:
    state = SandboxState()
    with serve_in_thread(create_sandbox_app(state, api_key=API_KEY)) as url:
        yield state, url


@pytest.fixture
def state(server: tuple[SandboxState, str]) -> SandboxState:
    server[0].reset()
    return server[0]


def sdk_client(url: str, key: str = API_KEY) -> CredytApiClient:
    # No retries: a contract answer is read once, as the bridge reads it.
    return CredytApiClient(ServiceKeyCredential(key), endpoint=url, retry_total=0)


@pytest.fixture
def sdk(server: tuple[SandboxState, str], state: SandboxState) -> Iterator[CredytApiClient]:
    with sdk_client(server[1]) as client:
        yield client


def raw(pipeline_response: Any, deserialized: Any, headers: Any) -> tuple[Any, Any]:
    """`cls=` for an SDK call: the HTTP answer too, to check its JSON against the model."""
    return pipeline_response.http_response, deserialized


def answered(result: object) -> tuple[Any, Any]:
    """An SDK call's result under `cls=raw`: (HTTP answer, model). The SDK's stubs type
    it as the model alone, whatever `cls` returns."""
    return cast(tuple[Any, Any], result)


def answer_of(error: HttpResponseError) -> Any:
    """The HTTP answer an SDK error carries (its stubs type it as a bare response)."""
    assert error.response is not None
    return error.response


def adjustment_body(amount: str = "12.50", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "transaction_id": str(uuid.uuid4()),
        "account_name": "default",
        "asset": "USD",
        "amount": decimal.Decimal(amount),
        "reason": "external_topup",
        "description": "Stripe invoice in_1",
        "metadata": {"source": "credyt-bridge"},
    }
    body.update(overrides)
    return body


def test_create_adjustment_answers_what_the_sdk_reads(
    sdk: CredytApiClient, state: SandboxState
) -> None:
    customer = state.add_customer(name="Ada")
    body = adjustment_body()
    response, created = answered(
        sdk.wallets.customer_wallet_ops.create_adjustment(
            customer, models.CreateAdjustmentRequest(body), cls=raw
        )
    )
    assert response.status_code == 201
    assert conforms(models.CreateAdjustmentResponse, response.json()) == []
    assert created.id == body["transaction_id"]
    assert state.balance(customer, "USD") == decimal.Decimal("12.50")


def test_a_repeated_adjustment_is_the_sdks_resource_exists(
    sdk: CredytApiClient, state: SandboxState
) -> None:
    customer = state.add_customer(name="Ada")
    body = models.CreateAdjustmentRequest(adjustment_body())
    sdk.wallets.customer_wallet_ops.create_adjustment(customer, body)
    with pytest.raises(ResourceExistsError) as again:
        sdk.wallets.customer_wallet_ops.create_adjustment(customer, body)
    assert again.value.status_code == 409
    assert again.value.response is not None
    assert conforms(models.ProblemDetails, answer_of(again.value).json()) == []
    assert state.balance(customer, "USD") == decimal.Decimal("12.50")  # applied once


def test_an_invalid_adjustment_is_the_sdks_validation_problem(
    sdk: CredytApiClient, state: SandboxState
) -> None:
    customer = state.add_customer(name="Ada")
    with pytest.raises(HttpResponseError) as refused:
        sdk.wallets.customer_wallet_ops.create_adjustment(
            customer, adjustment_body(reason="because")
        )
    assert refused.value.status_code == 422
    document = answer_of(refused.value).json()
    assert conforms(models.ValidationProblem, document) == []
    assert refused.value.model is not None
    assert "reason" in refused.value.model.errors  # the SDK parsed it into its model


def test_external_id_lookup_is_a_303_to_the_customer(
    sdk: CredytApiClient, state: SandboxState
) -> None:
    customer = state.add_customer(external_id="cus_303", name="Ada")
    state.add_customer(external_id="cus_other", name="Bob")
    # The SDK does not follow redirects: a 303 reaches the caller as an HttpResponseError
    # carrying the Location. A page here (the sandbox's old answer) would be returned.
    with pytest.raises(HttpResponseError) as found:
        sdk.customers.list(external_id="cus_303")
    assert found.value.status_code == 303
    location = answer_of(found.value).headers["Location"]
    assert location == f"/customers/{customer}"
    response, got = answered(sdk.customers.get(location.rsplit("/", 1)[1], cls=raw))
    assert conforms(models.GetCustomerResponse, response.json()) == []
    assert (got.id, got.external_id) == (customer, "cus_303")


def test_an_unknown_external_id_is_the_sdks_not_found(
    sdk: CredytApiClient, state: SandboxState
) -> None:
    state.add_customer(external_id="cus_someone", name="Ada")
    with pytest.raises(ResourceNotFoundError) as missing:
        sdk.customers.list(external_id="cus_nobody")
    assert missing.value.status_code == 404
    assert conforms(models.ProblemDetails, answer_of(missing.value).json()) == []


def test_other_filters_answer_a_page(sdk: CredytApiClient, state: SandboxState) -> None:
    ada = state.add_customer(name="Ada", email="ada@example.com")
    state.add_customer(name="Bob", email="bob@example.com")
    response, page = answered(sdk.customers.list(email="ada@example.com", cls=raw))
    assert conforms(models.PageCustomerSummary, response.json()) == []
    assert [item.id for item in page["items"]] == [ada]
    response, everyone = answered(sdk.customers.list(limit=10, cls=raw))
    assert conforms(models.PageCustomerSummary, response.json()) == []
    assert everyone.total_count == 2


def test_get_customer_has_every_required_field(sdk: CredytApiClient, state: SandboxState) -> None:
    customer = state.add_customer(external_id="cus_1", name="Ada", email="ada@example.com")
    response, got = answered(sdk.customers.get(customer, cls=raw))
    assert conforms(models.GetCustomerResponse, response.json()) == []
    assert got.active_subscription_count == 0
    with pytest.raises(ResourceNotFoundError):
        sdk.customers.get("cust_nobody")


def test_a_transaction_reads_back_as_sent(sdk: CredytApiClient, state: SandboxState) -> None:
    customer = state.add_customer(name="Ada")
    body = adjustment_body("-3.25", reason="external_refund")
    sdk.wallets.customer_wallet_ops.create_adjustment(customer, body)
    response, got = answered(
        sdk.wallets.customer_wallet_ops.get_transaction(customer, body["transaction_id"], cls=raw)
    )
    assert conforms(models.GetTransactionResponse, response.json()) == []
    assert (got.id, got.type, got.asset, got.account_id) == (
        body["transaction_id"],
        "adjustment",
        "USD",
        "default:USD",
    )
    assert decimal.Decimal(str(response.json()["amount"])) == decimal.Decimal("-3.25")
    with pytest.raises(ResourceNotFoundError):
        sdk.wallets.customer_wallet_ops.get_transaction(customer, str(uuid.uuid4()))
    other = state.add_customer(name="Bob")
    with pytest.raises(ResourceNotFoundError):  # a transaction is read under its customer
        sdk.wallets.customer_wallet_ops.get_transaction(other, body["transaction_id"])


def test_accounts_self_names_the_environment(
    server: tuple[SandboxState, str], state: SandboxState
) -> None:
    with sdk_client(server[1]) as sdk:
        response, account = answered(sdk.accounts.get_context(cls=raw))
    assert conforms(models.AccountContext, response.json()) == []
    assert account.environment == "test"
    state.environment = "live"
    with sdk_client(server[1]) as sdk:
        assert sdk.accounts.get_context().environment == "live"


def test_a_bad_key_is_the_sdks_authentication_error(
    server: tuple[SandboxState, str], state: SandboxState
) -> None:
    with (
        sdk_client(server[1], key="key_wrong") as sdk,
        pytest.raises(ClientAuthenticationError) as refused,
    ):
        sdk.accounts.get_context()
    assert refused.value.status_code == 401


def test_the_wallet_lists_its_accounts(sdk: CredytApiClient, state: SandboxState) -> None:
    customer = state.add_customer(name="Ada")
    sdk.wallets.customer_wallet_ops.create_adjustment(customer, adjustment_body("5"))
    sdk.wallets.customer_wallet_ops.create_adjustment(customer, adjustment_body("7", asset="TOK"))
    response, wallet = answered(
        sdk.wallets.customer_wallet_ops.get_customer_wallet(customer, cls=raw)
    )
    assert conforms(models.GetWalletResponse, response.json()) == []
    assert {(a.id, a.available) for a in wallet.accounts} == {
        ("default:USD", decimal.Decimal("5")),
        ("default:TOK", decimal.Decimal("7")),
    }
    response, account = answered(
        sdk.wallets.customer_wallet_ops.get_account(customer, "default:USD", cls=raw)
    )
    assert conforms(models.GetAccountDetailsResponse, response.json()) == []


# --- every body the bridge sends ----------------------------------------------------

BODIES_CONNECTORS = """
  stripe:
    type: stripe
    secrets: ["{stripe_secret}"]
    rules:
      - name: subscription-payment
        on: [invoice.paid]
        credit: {{amount: paid, expires: 30d}}
      - name: topup
        on: payment_intent.succeeded
        credit: {{amount: paid}}
      - name: refund
        on: [refund.created]
        reverse: {{reason: external_refund}}
  paddle:
    type: paddle
    secrets: ["{paddle_secret}"]
    rules:
      - name: transaction
        on: transaction.completed
        credit: {{amount: paid, expires: 7d}}
      - name: refund
        on: [adjustment.created]
        reverse: {{}}
"""


def test_every_body_the_bridge_sends_loads_into_the_sdks_request_model(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    """Credits and reversals, Stripe and Paddle, with and without expires_at."""
    running = make_bridge(
        bridge_config(
            tmp_path / "bodies.db",
            sandbox.url,
            BODIES_CONNECTORS.format(stripe_secret=STRIPE_SECRET, paddle_secret=PADDLE_SECRET),
        )
    )
    customer = sandbox.state.add_customer(name="Ada")
    sent = [
        stripe.sample_event(
            "invoice.paid", event_id="evt_b1", object_id="in_b1", customer=customer
        ),
        stripe.sample_event(
            "payment_intent.succeeded", event_id="evt_b2", object_id="pi_b2", customer=customer
        ),
        stripe.sample_event(
            "refund.created",
            event_id="evt_b3",
            object_id="re_b3",
            customer=customer,
            payment="pi_b2",
            amount_minor=500,
        ),
    ]
    for event in sent:
        assert running.send_stripe(event).json() == {"status": "accepted"}
    running.settle()
    for event in [
        paddle.sample_event(
            "transaction.completed", event_id="evt_p1", object_id="txn_p1", customer=customer
        ),
        paddle.sample_event(
            "adjustment.created",
            event_id="evt_p2",
            object_id="adj_p2",
            customer=customer,
            transaction_id="txn_p1",
            amount_minor=300,
        ),
    ]:
        assert running.send_paddle(event).json() == {"status": "accepted"}
        running.settle()

    bodies = [json.loads(row.body) for row in running.bridge.store.list_adjustments()]
    kinds = {(b["reason"], "expires_at" in b, b["amount"] > 0) for b in bodies}
    assert len(bodies) == 5
    assert ("external_topup", True, True) in kinds  # a credit that expires
    assert ("external_topup", False, True) in kinds  # a credit that does not
    assert ("external_refund", False, False) in kinds  # a reversal
    for body in bodies:
        assert conforms(models.CreateAdjustmentRequest, body) == [], body
        request = models.CreateAdjustmentRequest(body)
        assert request.as_dict() == body  # nothing the SDK does not know, nothing lost
        assert uuid.UUID(request.transaction_id)
        assert request.reason in {r.value for r in models.AdjustmentReason}
        assert sandbox.state.conflicts == []
