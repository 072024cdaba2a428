"""Admin API: registering hashes and images, importing and exporting hash lists."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from services.admin.api_models import EntryIn, Imported, Registered
from services.admin.context import Actor, AdminContext, CaughtUp, Context, Reason
from services.admin.export import export
from services.admin.formats import Format, embeddings_left_out, entry_id_for, parse
from services.admin.operations import EntriesElsewhere, ImportRejected
from services.ingest.signals import SignalModels
from services.registrar import Measured, face_entries, measure_media, registration
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
    bank: BankName,
    request: Request,
    reason: Reason,
    context: Context,
    who: Actor,
    faces: bool = False,
    face: Annotated[int | None, Query(ge=1)] = None,
    subject: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
) -> Registered:
    """Register an image: hashed in memory and dropped; 413 over the byte cap.

    With ``faces`` (a bank whose policy holds faces), also its one face, or face number ``face``
    of a group photo (422 when there is no face, or several and none is picked), under
    ``subject`` (default: a new one).
    """
    data = await _capped_body(request, context.max_image_bytes)
    if faces and not context.banks.for_bank(bank).faces:
        raise HTTPException(422, f"bank {bank!r} does not hold faces")
    chosen = Faces(face, subject or str(uuid.uuid4())) if faces else None
    # Decoding and hashing take CPU-seconds: in a worker thread, the API keeps answering.
    return await run_in_threadpool(_register_image, context, who, bank, data, reason, chosen)


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
    bank: BankName, context: Context, who: Actor, format: Format = "hma", faces: bool = False
) -> StreamingResponse:
    """A bank's entries as a hash list, streamed; header ``Eraser-Warning`` if some data is not.

    Face entries (biometric data) only with ``faces``, and only in JSON (422 otherwise).
    """
    if faces and format != "json":
        raise HTTPException(422, "faces are biometric data: only the json format carries them")
    warning = embeddings_left_out(format, context.view.with_embeddings(bank))
    return StreamingResponse(
        export(context.view, context.records, bank, format, faces),
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


@dataclass(frozen=True)
class Faces:
    """Which face of a photograph to register, and whose."""

    number: int | None
    subject: str


def _register_image(
    context: AdminContext, who: str, bank: str, data: bytes, reason: str, faces: Faces | None
) -> Registered:
    floor = context.banks.for_bank(bank).quality_floor
    models = context.models or SignalModels()
    try:
        measured = measure_media(data, models, faces is not None, faces.number if faces else None)
    except PoisonError as error:
        raise HTTPException(422, error.reason) from None
    finally:
        del data  # the image is never kept
    subject = faces.subject if faces else None
    hashed = registration(measured, bank, floor, subject=subject)
    found = (
        face_entries(measured, bank, subject) if subject and isinstance(measured, Measured) else []
    )
    _register(context, who, [hashed.registration, *found], reason)
    registered = Registered(
        entry_id=hashed.registration.entry_id,
        warning=hashed.warning,
        subject=subject,
        face_entry_ids=[entry.entry_id for entry in found],
    )
    return _with_case(context, who, bank, registered)


def _with_case(context: AdminContext, who: str, bank: str, registered: Registered) -> Registered:
    """``registered`` with the requester's new case number and PIN, if cases are on."""
    if context.open_case is None:
        return registered
    entries = [registered.entry_id, *registered.face_entry_ids]
    number, pin = context.open_case(who, bank, entries, now())
    return registered.model_copy(update={"case": number, "pin": pin})


def _register(
    context: AdminContext, who: str, entries: list[EntryRegistered] | EntryRegistered, reason: str
) -> None:
    try:
        context.admin_for(who).register(entries if isinstance(entries, list) else [entries], reason)
    except EntriesElsewhere as elsewhere:
        raise HTTPException(status.HTTP_409_CONFLICT, str(elsewhere)) from None
