"""The review console's pages: the queue, an item, and its decisions. They only call the desk."""

from __future__ import annotations

import hmac
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from services.review.desk import Person
from services.review.evidence import measures
from services.review.records import ReviewItem
from services.review.rules import LEADS
from services.web.context import Csrf, Session, Web, WebContext, Who, page

router = APIRouter(include_in_schema=False)
Text = Annotated[str, Form(min_length=1, max_length=512)]


@router.get("/review")
def queue(request: Request, web: Web, who: Who, session: Session, note: str = "") -> Response:
    """What ``who`` can work on, oldest first within a priority; leads see every open item."""
    now = web.desk.clock()
    mine = web.desk.board.queue(who.name, who.role, now)
    everyone = web.desk.board.open_items() if who.role in LEADS else []
    return page(
        request,
        "queue.html",
        who=who,
        csrf=web.signer.csrf(session["sid"]),
        items=mine,
        everyone=everyone,
        now=now,
        blur=web.desk.board.blur(who.name, web.blur_default),
        note=note,
    )


@router.post("/review/next", dependencies=[Csrf])
def next_item(web: Web, who: Who) -> Response:
    """Claim the next item and open it."""
    item = web.desk.next(who)
    if item is None:
        return RedirectResponse("/review?note=nothing+left+to+review", status_code=303)
    return RedirectResponse(f"/review/items/{item.item_id}", status_code=303)


@router.get("/review/items/{item_id}")
def item_page(
    request: Request, item_id: str, web: Web, who: Who, session: Session, reveal: str = ""
) -> Response:
    """One item with its evidence (audited as a view); unblurred after a reveal."""
    item = web.desk.view(who, item_id)
    revealed = _revealed(web, who, item_id, reveal)
    context = _item_context(web, who, session["sid"], item, revealed)
    return page(request, "item.html", **context)


@router.post("/review/items/{item_id}/reveal", dependencies=[Csrf])
def reveal(request: Request, item_id: str, web: Web, who: Who, session: Session) -> Response:
    """Show the upload unblurred (audited): an htmx swap of the media block, or the whole page."""
    web.desk.reveal(who, item_id)
    if "HX-Request" not in request.headers:
        token = web.signer.token("reveal", who.name, item_id)
        return RedirectResponse(f"/review/items/{item_id}?reveal={token}", status_code=303)
    context = _item_context(web, who, session["sid"], web.desk.item(item_id), revealed=True)
    return page(request, "item.html", block="media", **context)


@router.get("/review/items/{item_id}/media")
async def media(item_id: str, web: Web, who: Who, reveal: str = "") -> Response:
    """The upload, fetched now: blurred and grey unless a reveal token for ``who`` is given."""
    item = web.desk.item(item_id)
    blurred = web.desk.board.blur(who.name, web.blur_default)
    blurred = blurred and not _revealed(web, who, item_id, reveal)
    face = item.action.face.box if item.action.face else None
    data = await run_in_threadpool(web.desk.evidence.picture, item.action.content_id, blurred, face)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.post("/review/items/{item_id}/decide", dependencies=[Csrf])
async def decide(
    item_id: str,
    web: Web,
    who: Who,
    verdict: Annotated[Literal["confirm", "reject", "escalate"], Form()],
    reason: Text,
    negative: Annotated[bool, Form()] = False,
) -> Response:
    """Confirm, reject or escalate; then the queue, saying what happened."""
    after = await run_in_threadpool(web.desk.decide, who, item_id, verdict, reason, negative)
    note = {"second-review": "recorded: a second reviewer must agree"}.get(
        after.status, f"item {after.status}"
    )
    return RedirectResponse(f"/review?note={note}", status_code=303)


@router.post("/review/items/{item_id}/skip", dependencies=[Csrf])
def skip(item_id: str, web: Web, who: Who, reason: Text) -> Response:
    """Pass the item back with a reason."""
    web.desk.skip(who, item_id, reason)
    return RedirectResponse("/review?note=skipped", status_code=303)


@router.post("/review/items/{item_id}/release", dependencies=[Csrf])
def release(item_id: str, web: Web, who: Who) -> Response:
    """Put the item back in the queue (its holder, or a lead reassigning it)."""
    web.desk.release(who, item_id)
    return RedirectResponse("/review?note=released", status_code=303)


@router.post("/review/settings", dependencies=[Csrf])
def settings(web: Web, who: Who, blur: Annotated[bool, Form()] = False) -> Response:
    """``who``'s own blur setting."""
    web.desk.set_blur(who, blur)
    return RedirectResponse("/review?note=settings+saved", status_code=303)


def _item_context(
    web: WebContext, who: Person, sid: str, item: ReviewItem, revealed: bool = False
) -> dict[str, Any]:
    action, name = item.action, who.name
    slot = web.view.get(action.entry_id)
    copies = [
        (c, web.ledger.result(c.action_id))
        for c in web.ledger.copies([action.entry_id])
        if c.content_id != action.content_id
    ]
    return {
        "who": who,
        "csrf": web.signer.csrf(sid),
        "item": item,
        "now": web.desk.clock(),
        "measures": measures(action, web.banks.for_bank(action.bank)),
        "policy": web.banks.for_bank(action.bank),
        "registration": web.registration(slot) if slot else None,
        "copies": copies,
        "result": web.ledger.result(item.action_id) if item.action_id else None,
        "blurred": web.desk.board.blur(name, web.blur_default) and not revealed,
        "reveal": web.signer.token("reveal", name, item.item_id) if revealed else "",
    }


def _revealed(web: WebContext, who: Person, item_id: str, token: str) -> bool:
    """Whether ``token`` is ``who``'s reveal of this item (a link cannot reveal for another)."""
    return hmac.compare_digest(token, web.signer.token("reveal", who.name, item_id))
