"""The console's log-in: signed session cookies, CSRF tokens and a log-in rate limit.

The operator logs in with `server.admin_token` (compared in constant time). The session
is a cookie `<payload>.<signature>`: the payload holds its expiry and the session's CSRF
token, the signature is an HMAC-SHA256 under a key derived from the admin token
(`HMAC(admin_token, "credyt-bridge console session v1")`). So every replica with the
same token accepts the same sessions, nothing else needs configuring or storing, and
changing the token ends every session at once.

Every POST carries the session's CSRF token in a form field (the log-in form carries
one from a short-lived signed pre-session cookie); the cookie alone is not enough.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

SESSION_COOKIE = "credyt_console"
LOGIN_COOKIE = "credyt_console_login"
SESSION_SECONDS = 8 * 3600  # a session ends 8 hours after the log-in
LOGIN_FORM_SECONDS = 600  # a log-in form must be sent within 10 minutes
KEY_LABEL = b"credyt-bridge console session v1"


@dataclass(frozen=True)
class Session:
    expires: int  # epoch seconds
    csrf: str  # the token every POST of this session must carry


class SessionSigner:
    """Signs and checks the console's cookies with a key derived from the admin token."""

    def __init__(self, admin_token: str, lifetime: int = SESSION_SECONDS) -> None:
        self._key = hmac.new(admin_token.encode(), KEY_LABEL, hashlib.sha256).digest()
        self._token = admin_token.encode()
        self.lifetime = lifetime

    def token_matches(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self._token)

    def new_session(self, now: float | None = None) -> tuple[str, Session]:
        moment = int(time.time() if now is None else now)
        session = Session(moment + self.lifetime, secrets.token_urlsafe(32))
        return self._sign("session", {"exp": session.expires, "csrf": session.csrf}), session

    def session(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie holds, or None when it is missing, forged or expired."""
        data = self._open("session", cookie, now)
        expires, csrf = (None, None) if data is None else (data.get("exp"), data.get("csrf"))
        if not isinstance(expires, int) or not isinstance(csrf, str):
            return None
        return Session(expires, csrf)

    def new_login_form(self, now: float | None = None) -> tuple[str, str]:
        """A pre-session cookie and the CSRF token the log-in form must send with it."""
        token = secrets.token_urlsafe(32)
        moment = int(time.time() if now is None else now)
        return self._sign("login", {"exp": moment + LOGIN_FORM_SECONDS, "csrf": token}), token

    def login_form_token(self, cookie: str | None, now: float | None = None) -> str | None:
        data = self._open("login", cookie, now)
        token = None if data is None else data.get("csrf")
        return token if isinstance(token, str) else None

    def _sign(self, purpose: str, data: dict[str, object]) -> str:
        payload = _b64(json.dumps({"p": purpose, **data}, separators=(",", ":")).encode())
        return f"{payload}.{self._mac(payload)}"

    def _open(
        self, purpose: str, cookie: str | None, now: float | None
    ) -> dict[str, object] | None:
        if not cookie or cookie.count(".") != 1 or len(cookie) > 1024:
            return None
        payload, signature = cookie.split(".")
        if not hmac.compare_digest(signature.encode(), self._mac(payload).encode()):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("p") != purpose:
            return None
        expires = data.get("exp")
        moment = time.time() if now is None else now
        if not isinstance(expires, int) or expires <= moment:
            return None
        return data

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())


def csrf_matches(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class LoginThrottle:
    """At most `attempts` failed log-ins per client address in `window` seconds.

    Kept in memory per process; the table holds at most `clients` addresses (the
    oldest is forgotten first), so a flood of addresses can not grow it."""

    def __init__(self, attempts: int = 5, window: float = 60.0, clients: int = 10_000) -> None:
        self.attempts = attempts
        self.window = window
        self.clients = clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str, now: float | None = None) -> int:
        """Seconds until `client` may try again; 0 when it may now."""
        moment = time.monotonic() if now is None else now
        failures = self._failures.get(client)
        if failures is None:
            return 0
        while failures and failures[0] <= moment - self.window:
            failures.popleft()
        if len(failures) < self.attempts:
            return 0
        return max(1, int(failures[0] + self.window - moment + 0.999))

    def failed(self, client: str, now: float | None = None) -> None:
        moment = time.monotonic() if now is None else now
        failures = self._failures.setdefault(client, deque())
        self._failures.move_to_end(client)
        failures.append(moment)
        while len(failures) > self.attempts:
            failures.popleft()
        while len(self._failures) > self.clients:
            self._failures.popitem(last=False)

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)
