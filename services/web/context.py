"""What the pages share: their collaborators, the templates, who is signed in, CSRF checks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Response, status
from jinja2_fragments.fastapi import Jinja2Blocks

from services.admin.view import RegistryView
from services.cases.operations import Cases
from services.review.desk import Person, ReviewDesk
from services.review.evidence import RegistrationLookup
from services.review.ledger import ActionLedger
from services.review.rules import LEADS
from services.shared.banks import BankBook
from services.web.sessions import Signer, check_csrf

HERE = Path(__file__).parent
templates = Jinja2Blocks(directory=HERE / "templates")
SESSION_COOKIE = "eraser_session"
CASE_COOKIE = "eraser_case"
FORM_COOKIE = "eraser_form"  # binds the CSRF token of forms shown before any session exists
FORM_SECONDS = 3600


@dataclass(frozen=True)
class WebContext:
    """The pages' collaborators: real ones in ``admin/__main__``, fakes in tests."""

    desk: ReviewDesk
    cases: Cases
    signer: Signer
    users: dict[str, tuple[str, str]]  # name -> (role, password hash)
    blur_default: bool
    session_hours: float
    ledger: ActionLedger
    view: RegistryView
    banks: BankBook
    registration: RegistrationLookup


def _web(request: Request) -> WebContext:
    web: WebContext = request.app.state.web
    return web


Web = Annotated[WebContext, Depends(_web)]


class SignIn(Exception):
    """Nobody is signed in: the page sends them to the sign-in form."""


def _session(request: Request, web: Web) -> dict[str, Any]:
    session = web.signer.read(request, SESSION_COOKIE)
    if session is None or session.get("u") not in web.users:
        raise SignIn()
    return session


Session = Annotated[dict[str, Any], Depends(_session)]


def _person(session: Session, web: Web) -> Person:
    name = str(session["u"])
    return Person(name, web.users[name][0])  # type: ignore[arg-type]


Who = Annotated[Person, Depends(_person)]


async def _csrf(request: Request, web: Web, session: Session) -> None:
    await check_csrf(request, web.signer, session)


Csrf = Depends(_csrf)
"""For every console POST: 403 without the session's CSRF token."""


def _lead(who: Who) -> Person:
    if who.role not in LEADS:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "leads and admins only")
    return who


Lead = Annotated[Person, Depends(_lead)]


def page(
    request: Request, name: str, block: str | None = None, code: int = 200, **context: Any
) -> Response:
    """Render a template (one block of it for an htmx swap)."""
    response: Response = templates.TemplateResponse(
        request, name, context, status_code=code, block_name=block
    )
    return response


def form_page(
    request: Request, web: WebContext, name: str, code: int = 200, **context: Any
) -> Response:
    """A page whose form is posted before any session exists (sign-in, case number and PIN).

    Its CSRF token is bound to a short-lived cookie of its own (set here if missing), so those
    forms are protected like every other.
    """
    known = web.signer.read(request, FORM_COOKIE)
    if known is not None:
        return page(request, name, code=code, csrf=web.signer.csrf(known["sid"]), **context)
    value, token = web.signer.issue({}, FORM_SECONDS)
    response = page(request, name, code=code, csrf=token, **context)
    secure = request.url.scheme == "https"
    response.set_cookie(
        FORM_COOKIE, value, max_age=FORM_SECONDS, httponly=True, samesite="strict", secure=secure
    )
    return response


async def check_form(request: Request, web: WebContext) -> None:
    """Refuse (403) a pre-session form post without its cookie's CSRF token."""
    await check_csrf(request, web.signer, web.signer.read(request, FORM_COOKIE) or {})
