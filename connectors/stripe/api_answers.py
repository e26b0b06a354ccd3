"""What Stripe's API clients (`events_api`, `objects_api`) share: one call through the
stripe library, its errors as the caller's error, and the answer's text as Stripe sent
it (the library's objects are never re-serialized: see `events_api.StripeEvents`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bridge.errors import BackfillError

REFUSED_KEY = "Stripe refused the API key (check STRIPE_API_KEY or the connector's api_key): {}"


def answer_text(
    call: Callable[[], Any],
    error: type[BackfillError],
    *,
    doing: str,
    what: str,
    missing: str | None = None,
) -> tuple[Any, str]:
    """`call()`'s answer and its raw text. A refused key, `missing` (for a look-up by
    id: what has no such id), any other Stripe error, and an answer without its text
    each raise `error` with what to check."""
    import stripe

    try:
        answer = call()
    except stripe.InvalidRequestError as exc:
        if missing is None:
            raise error(f"{doing} failed: {exc}") from exc
        raise error(f"{missing}: {exc.user_message or exc}") from exc
    except stripe.AuthenticationError as exc:
        raise error(REFUSED_KEY.format(exc.user_message or exc)) from exc
    except stripe.StripeError as exc:
        raise error(f"{doing} failed: {exc}") from exc
    body = getattr(getattr(answer, "last_response", None), "body", None)
    if not isinstance(body, str):
        raise error(f"the stripe library kept no raw body of {what}")
    return answer, body
