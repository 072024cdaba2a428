"""Signed cookies for who is signed in (or which case is open), and CSRF tokens for every form.

A cookie is ``base64url(json).hmac``: the server keeps no session table, so any admin replica
reads any cookie. Cookies are HttpOnly and SameSite=Strict; each form also carries a token bound
to the cookie's random id (the synchroniser pattern), checked on every POST.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from fastapi import HTTPException, Request, Response, status

CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"


class Signer:
    """Signs and checks cookie values and CSRF tokens with one key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def cookie(
        self, response: Response, name: str, payload: dict[str, Any], seconds: float, secure: bool
    ) -> str:
        """Set a signed cookie holding ``payload`` for ``seconds``; its CSRF token."""
        value, token = self.issue(payload, seconds)
        response.set_cookie(
            name, value, max_age=int(seconds), httponly=True, samesite="strict", secure=secure
        )
        return token

    def issue(self, payload: dict[str, Any], seconds: float) -> tuple[str, str]:
        """A signed cookie value holding ``payload`` for ``seconds``, and its CSRF token."""
        sid = secrets.token_urlsafe(16)
        body = {**payload, "sid": sid, "exp": time.time() + seconds}
        encoded = base64.urlsafe_b64encode(json.dumps(body).encode()).decode()
        return f"{encoded}.{self._mac(encoded)}", self.csrf(sid)

    def read(self, request: Request, name: str) -> dict[str, Any] | None:
        """The payload of a valid, unexpired cookie, else None."""
        value = request.cookies.get(name, "")
        encoded, _, mac = value.partition(".")
        if not mac or not hmac.compare_digest(mac, self._mac(encoded)):
            return None
        try:
            body: dict[str, Any] = json.loads(base64.urlsafe_b64decode(encoded))
        except ValueError:
            return None
        return body if body.get("exp", 0) > time.time() else None

    def csrf(self, sid: str) -> str:
        """The CSRF token of a cookie id."""
        return self._mac(f"csrf:{sid}")

    def token(self, *parts: str) -> str:
        """A token binding ``parts`` (a reveal of one item to one person, say)."""
        return self._mac("\x1f".join(parts))

    def _mac(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()


async def check_csrf(request: Request, signer: Signer, session: dict[str, Any]) -> None:
    """Refuse a POST whose form or header lacks the session's CSRF token (403)."""
    presented = request.headers.get(CSRF_HEADER, "")
    if not presented:
        form = await request.form()
        presented = str(form.get(CSRF_FIELD, ""))
    if not hmac.compare_digest(presented, signer.csrf(str(session.get("sid", "")))):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the form has expired: reload the page")
