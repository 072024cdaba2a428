"""What the admin API's endpoints share: their collaborators, the caller's name, readiness.

``api.py`` stores an :class:`AdminContext` on the app; endpoints receive it, the actor named by
the bearer token, and a 503 while the registry, banks and audit topics are still being replayed
(an answer from a half-replayed registry would be wrong: a withdrawal by bank would miss entries).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from services.admin.audit import AuditTail
from services.admin.export import RecordSource
from services.admin.operations import Admin
from services.admin.view import RegistryView
from services.ingest.signals import SignalModels
from services.shared.banks import BankBook


@dataclass(frozen=True)
class AdminContext:
    """The admin API's collaborators: real ones in ``__main__``, fakes in tests."""

    admin_for: Callable[[str], Admin]
    view: RegistryView
    banks: BankBook
    audit: AuditTail
    records: RecordSource
    tokens: dict[str, SecretStr]
    ready: Callable[[], bool]
    max_image_bytes: int
    models: SignalModels | None = None
    # (actor, bank, entry ids, time) -> (case number, PIN): registering opens a requester's case.
    open_case: Callable[[str, str, list[str], datetime], tuple[str, str]] | None = None


_bearer = HTTPBearer(auto_error=False)


def _context(request: Request) -> AdminContext:
    context: AdminContext = request.app.state.context
    return context


Context = Annotated[AdminContext, Depends(_context)]


def _actor(
    context: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    presented = credentials.credentials.encode() if credentials else b""
    for name, token in context.tokens.items():
        if hmac.compare_digest(presented, token.get_secret_value().encode()):
            return name
    raise HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        "a valid bearer token is required",
        headers={"WWW-Authenticate": "Bearer"},
    )


Actor = Annotated[str, Depends(_actor)]
"""The caller: the name of the token presented (401 without a valid one)."""


def _caught_up(context: Context, who: Actor) -> None:
    # Depends on the actor so that a caller without a token gets 401, not news of readiness.
    if not context.ready():
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the admin API is still reading the registry; retry in a few seconds",
            headers={"Retry-After": "5"},
        )


CaughtUp = Depends(_caught_up)
"""For endpoints that read the registry view: 503 until it has caught up with the topic."""

Reason = Annotated[str, Query(min_length=1, max_length=1024, description="Why (a reference).")]
