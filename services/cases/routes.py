"""The requester's pages: open a case with its number and PIN, see where it stands, withdraw."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from services.cases.operations import NotRecognised, TooManyAttempts
from services.cases.records import CaseChanged
from services.web.context import CASE_COOKIE, Web, check_form, form_page, page
from services.web.sessions import check_csrf

router = APIRouter(include_in_schema=False)
CASE_MINUTES = 15


@router.get("/case")
def case_form(request: Request, web: Web) -> Response:
    """Ask for the case number and PIN."""
    return form_page(request, web, "case_form.html")


@router.post("/case")
async def case_open(
    request: Request,
    web: Web,
    number: Annotated[str, Form(max_length=32)],
    pin: Annotated[str, Form(max_length=32)],
) -> Response:
    """Check the number and PIN (slowly, and a few times per case at most); then the status."""
    await check_form(request, web)
    try:
        case = await run_in_threadpool(web.cases.open, number, pin)
    except (NotRecognised, TooManyAttempts) as error:
        code = 429 if isinstance(error, TooManyAttempts) else 401
        return form_page(request, web, "case_form.html", code=code, error=str(error), number=number)
    response = RedirectResponse("/case/status", status_code=303)
    web.signer.cookie(
        response, CASE_COOKIE, {"c": case.case_id}, CASE_MINUTES * 60, request.url.scheme == "https"
    )
    return response


def _case(request: Request, web: Web) -> tuple[CaseChanged, dict[str, Any]] | None:
    opened = web.signer.read(request, CASE_COOKIE)
    case = web.cases.book.get(str(opened.get("c", ""))) if opened else None
    return (case, opened) if case and opened else None


OpenCase = Annotated[tuple[CaseChanged, dict[str, Any]] | None, Depends(_case)]


@router.get("/case/status")
def case_status(request: Request, web: Web, opened: OpenCase) -> Response:
    """Where the case stands, in counts."""
    if opened is None:
        return RedirectResponse("/case", status_code=303)
    case, cookie = opened
    return page(
        request,
        "case_status.html",
        status=web.cases.status(case),
        csrf=web.signer.csrf(cookie["sid"]),
    )


@router.post("/case/withdraw")
async def case_withdraw(
    request: Request,
    web: Web,
    opened: OpenCase,
    sure: Annotated[bool, Form()] = False,
) -> Response:
    """Withdraw every entry of the case, if the requester ticked that they are sure."""
    if opened is None:
        return RedirectResponse("/case", status_code=303)
    case, cookie = opened
    await check_csrf(request, web.signer, cookie)
    if sure and case.status == "open":
        await run_in_threadpool(web.cases.withdraw, case)
    return RedirectResponse("/case/status", status_code=303)
