"""Admin API: registering hashes and images, importing and exporting hash lists."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Request, status
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from services.admin.api_models import EntryIn, Imported, Registered
from services.admin.context import Actor, AdminContext, CaughtUp, Context, Reason
from services.admin.export import export
from services.admin.formats import Format, embeddings_left_out, entry_id_for, parse
from services.admin.operations import EntriesElsewhere, ImportRejected
from services.registrar import hash_file
from services.shared.errors import PoisonError
from services.shared.schemas import BankName, EntryRegistered, now

router = APIRouter(tags=["entries"], dependencies=[CaughtUp])
_BINARY_BODY = {
    "requestBody": {
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        "required": True,
    }
}


@router.post("/banks/{bank}/entries", status_code=201)
def register_hashes(bank: BankName, body: EntryIn, context: Context, who: Actor) -> Registered:
    """Register an entry's hashes; 409 if its id belongs to another bank."""
    entry = EntryRegistered(
        entry_id=body.entry_id or entry_id_for(bank, body.signals),
        bank=bank,
        signals=body.signals,
        labels=body.labels,
    )
    _register(context, who, entry, body.reason)
    return _with_case(context, who, bank, Registered(entry_id=entry.entry_id))


@router.post("/banks/{bank}/images", status_code=201, openapi_extra=_BINARY_BODY)
async def register_image(
    bank: BankName, request: Request, reason: Reason, context: Context, who: Actor
) -> Registered:
    """Register an image: hashed in memory and dropped; 413 over the byte cap."""
    data = await _capped_body(request, context.max_image_bytes)
    # Decoding and hashing take CPU-seconds: in a worker thread, the API keeps answering.
    return await run_in_threadpool(_register_image, context, who, bank, data, reason)


@router.post("/banks/{bank}/import")
def import_list(
    bank: BankName,
    context: Context,
    who: Actor,
    reason: Reason,
    body: Annotated[str, Body(media_type="text/plain")],
    format: Format = "hma",
    skip_invalid: bool = False,
    batch: str | None = None,
) -> Imported:
    """Import a hash list as one batch; 422 naming every invalid line unless skipping them."""
    admin = context.admin_for(who)
    try:
        parsed = parse(body, format, bank)
        result = admin.import_list(parsed, format, bank, reason, skip_invalid, batch)
    except ImportRejected as rejected:
        raise HTTPException(422, {"problems": [str(p) for p in rejected.problems]}) from None
    skipped = [str(p) for p in result.skipped]
    return Imported(batch=result.batch, imported=result.imported, skipped=skipped)


@router.get("/banks/{bank}/export", response_class=StreamingResponse)
def export_list(
    bank: BankName, context: Context, who: Actor, format: Format = "hma"
) -> StreamingResponse:
    """A bank's entries as a hash list, streamed; header ``Eraser-Warning`` if some data is not."""
    warning = embeddings_left_out(format, context.view.with_embeddings(bank))
    return StreamingResponse(
        export(context.view, context.records, bank, format),
        media_type={"json": "application/json", "csv": "text/csv"}.get(format, "text/plain"),
        headers={"Eraser-Warning": warning} if warning else None,
    )


async def _capped_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "image is over the byte cap")
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "image is over the byte cap")
    return bytes(received)


def _register_image(
    context: AdminContext, who: str, bank: str, data: bytes, reason: str
) -> Registered:
    floor = context.banks.for_bank(bank).quality_floor
    try:
        hashed = hash_file(data, bank, floor, models=context.models)
    except PoisonError as error:
        raise HTTPException(422, error.reason) from None
    finally:
        del data  # the image is never kept
    _register(context, who, hashed.registration, reason)
    registered = Registered(entry_id=hashed.registration.entry_id, warning=hashed.warning)
    return _with_case(context, who, bank, registered)


def _with_case(context: AdminContext, who: str, bank: str, registered: Registered) -> Registered:
    """``registered`` with the requester's new case number and PIN, if cases are on."""
    if context.open_case is None:
        return registered
    number, pin = context.open_case(who, bank, [registered.entry_id], now())
    return registered.model_copy(update={"case": number, "pin": pin})


def _register(context: AdminContext, who: str, entry: EntryRegistered, reason: str) -> None:
    try:
        context.admin_for(who).register([entry], reason)
    except EntriesElsewhere as elsewhere:
        raise HTTPException(status.HTTP_409_CONFLICT, str(elsewhere)) from None
