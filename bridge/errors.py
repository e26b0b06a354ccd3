"""The bridge's exceptions, one tree rooted at BridgeError.

Every error the bridge and its connectors raise on purpose is one of these:

BridgeError                  also raised as such for a refused `send` input
├── ConfigError              the config file is wrong; names file, line and key
├── WebhookError             an HTTP-facing refusal; carries its status code
│   ├── SignatureError       400: bad, missing or stale signature
│   ├── MalformedEventError  400: body is not an event we can read
│   ├── UnknownConnectorError 404
│   └── PayloadTooLargeError 413
├── StoreError               the store could not commit (the receiver answers 503)
│   ├── DecisionConflictError  another process decided for the same payment meanwhile:
│   │                        nothing was recorded; decide the event again
│   └── DiskFullError        the database's disk is full: no insert can succeed
├── EventError               an accepted event can not become adjustments;
│   │                        the event ends `failed` with this message
│   ├── CustomerNotFoundError   no metadata id, and Credyt's look-up answered 404
│   ├── CustomerLookupError     Credyt refused the look-up (400, 422, an odd 3xx...)
│   ├── InvalidCustomerIdError  a customer id from PSP metadata is not a safe id
│   └── CustomerMismatchError   a metadata-named customer failed verification: its
│                               Credyt external_id is not the PSP customer's id
├── CredytError              Credyt answered badly or could not be reached
│   └── CredytUnavailableError  network failure, timeout, 408/425/429/5xx: try later
├── OperationError           an operator's request (CLI, admin API) can not be carried
│   │                        out: a bad time, limit or option (the admin API: 400)
│   └── NotFoundError        no stored event or adjustment has that id (admin API: 404)
├── BackfillError            a PSP's API could not be listed (key refused, unreachable,
│   │                        an unexpected answer)
│   └── ReconcileError       reconcile could not list the PSP's objects or read
│                            Credyt's transactions back; the run stops, nothing fixed
├── SubscriptionCheckError   `check --online` could not read where the PSP sends webhooks,
│                            or found rule event types it does not send
└── SandboxError             the Credyt sandbox refused an operation; carries the HTTP
                             status and problem fields it answers with

Built-in exceptions raised inside a module and caught there (a parse step that turns
a ValueError into one of these) are not part of the tree.
"""

from __future__ import annotations

from collections.abc import Mapping


class BridgeError(Exception):
    """Root of every error the bridge raises on purpose."""


class ConfigError(BridgeError):
    """A configuration mistake. The message names the file, line and key."""


class WebhookError(BridgeError):
    status_code = 400


class SignatureError(WebhookError):
    """The signature is missing, does not match any configured secret, or is stale."""

    status_code = 400

    def __init__(self, message: str, *, reason: str = "mismatch") -> None:
        super().__init__(message)
        self.reason = reason


class MalformedEventError(WebhookError):
    status_code = 400


class UnknownConnectorError(WebhookError):
    status_code = 404


class PayloadTooLargeError(WebhookError):
    status_code = 413


class StoreError(BridgeError):
    """The store could not durably record something."""


class DecisionConflictError(StoreError):
    """What a decision about a payment was based on changed before it was recorded
    (another process recorded adjustments for the same payment): nothing was written."""


class DiskFullError(StoreError):
    """The database's disk is full: writes fail until an operator frees space."""


class EventError(BridgeError):
    """An accepted event that can not be turned into adjustments; the event is `failed`."""


class CustomerNotFoundError(EventError):
    """Neither the metadata nor a Credyt lookup names the customer."""


class CustomerLookupError(EventError):
    """Credyt gave the customer look-up a final answer that is not 303 or 404."""


class InvalidCustomerIdError(EventError):
    """A customer id from the PSP's metadata is not letters, digits, `_`, `-` (<= 64)."""


class CustomerMismatchError(EventError):
    """`customer_metadata: verify`: the Credyt customer named in PSP metadata does not
    have the paying PSP customer's id as its `external_id`."""


class CredytError(BridgeError):
    """Credyt refused a request."""

    def __init__(self, message: str, *, status_code: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body


class CredytUnavailableError(CredytError):
    """Credyt could not be reached or asked us to come back later."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        body: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, body=body)
        self.retry_after = retry_after


class OperationError(BridgeError):
    """An operator's request that can not be carried out (bad time, conflicting options)."""


class NotFoundError(OperationError):
    """No stored event or adjustment has that id."""


class BackfillError(BridgeError):
    """The PSP's API could not be listed (key refused, unreachable, unexpected answer)."""


class SubscriptionCheckError(BridgeError):
    """The PSP's webhook subscriptions could not be read, or miss a type the rules use."""


class ReconcileError(BackfillError):
    """Reconcile could not list the PSP's objects or read Credyt's transactions back."""


class SandboxError(BridgeError):
    """A refused sandbox operation, answered over HTTP as a problem document."""

    def __init__(
        self,
        status_code: int,
        title: str,
        detail: str = "",
        *,
        errors: Mapping[str, list[str]] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status_code = status_code
        self.title = title
        self.detail = detail
        self.errors = dict(errors or {})
