"""Sign-in and sign-out for the console: names, roles and password hashes from the settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from services.shared.passwords import hash_secret, verify_secret
from services.web.context import SESSION_COOKIE, Csrf, Web, check_form, form_page

router = APIRouter(include_in_schema=False)


async def _form(request: Request, web: Web) -> None:
    await check_form(request, web)


_UNKNOWN = hash_secret("no such reviewer")  # unknown names take as long as wrong passwords


@router.get("/login")
def login_form(request: Request, web: Web) -> Response:
    """The sign-in form."""
    return form_page(request, web, "login.html", configured=bool(web.users))


@router.post("/login", dependencies=[Depends(_form)])
def login(
    request: Request,
    web: Web,
    name: Annotated[str, Form(max_length=256)],
    password: Annotated[str, Form(max_length=1024)],
) -> Response:
    """Check the password; on success a session cookie and the queue."""
    role, hashed = web.users.get(name, ("", _UNKNOWN))
    if not verify_secret(password, hashed) or not role:
        error = "name or password wrong"
        return form_page(request, web, "login.html", code=401, configured=True, error=error)
    response = RedirectResponse("/review", status_code=303)
    web.signer.cookie(
        response,
        SESSION_COOKIE,
        {"u": name},
        web.session_hours * 3600,
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout", dependencies=[Csrf])
def logout() -> Response:
    """Forget the session."""
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response
