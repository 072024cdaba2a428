"""The admin HTTP API: banks, registrations, imports, exports, withdrawals and the audit log.

For a regulator's "eraser" service or a platform's trust-and-safety tools. Every call but the
probes and the OpenAPI description needs ``Authorization: Bearer <token>``; each token has a name,
which becomes the actor in the audit log. Changes go through :class:`Admin`, so they travel
through Kafka like the CLI's and are audited the same way. Images sent for registration are hashed
in memory and dropped.

(No ``from __future__ import annotations`` here: FastAPI reads the endpoint annotations at runtime,
and they refer to names local to :func:`create_app`.)
"""

import hmac
from collections.abc import Callable, Sequence
from typing import Annotated

from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from services.admin.formats import Format, entry_id_for
from services.admin.operations import Admin, ImportRejected
from services.admin.view import RegistryView
from services.ingest.embedding import Embedder
from services.registrar import hash_file
from services.shared.banks import BankBook
from services.shared.errors import PoisonError
from services.shared.schemas import (
    AuditRecorded,
    BankConfigured,
    BankName,
    BankPolicy,
    EntryRegistered,
    Signals,
)

Reason = Annotated[str, Query(min_length=1, max_length=1024, description="Why (a reference).")]
_bearer = HTTPBearer(auto_error=False)


class BankIn(BankPolicy):
    """A bank's new policy, and why it changes."""

    description: str = Field(default="", max_length=512)
    reason: str = Field(min_length=1, max_length=1024)


class BankOut(BaseModel):
    """A bank as the matchers see it."""

    bank: str
    entries: int
    configured: bool = Field(description="Whether the policy was published (else: a default).")
    policy: BankPolicy


class EntryIn(BaseModel):
    """Hashes to register (no image)."""

    model_config = ConfigDict(extra="forbid")

    entry_id: str | None = Field(default=None, min_length=1, max_length=256)
    signals: Signals
    labels: dict[str, str] = Field(default_factory=dict)
    reason: str = Field(min_length=1, max_length=1024)


class Registered(BaseModel):
    """The result of a registration."""

    entry_id: str
    warning: str | None = None


class Imported(BaseModel):
    """The result of an import."""

    batch: str
    imported: int
    skipped: list[str]


class Withdrawn(BaseModel):
    """How many entries a withdrawal reached."""

    withdrawn: int


class AuditOut(BaseModel):
    """An audit-log record with its time."""

    time: str
    record: AuditRecorded


def create_app(
    *,
    admin_for: Callable[[str], Admin],
    view: RegistryView,
    banks: BankBook,
    audit_log: Callable[[], Sequence[tuple[str, AuditRecorded]]],
    tokens: dict[str, SecretStr],
    ready: Callable[[], bool],
    max_image_bytes: int,
    embedder: Embedder | None = None,
) -> FastAPI:
    """The API, wired to its collaborators (real ones in ``__main__``, fakes in tests)."""
    app = FastAPI(title="eraser admin", version="1", description=__doc__)

    def actor(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> str:
        presented = credentials.credentials.encode() if credentials else b""
        for name, token in tokens.items():
            if hmac.compare_digest(presented, token.get_secret_value().encode()):
                return name
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a valid bearer token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )

    Actor = Annotated[str, Depends(actor)]

    @app.get("/healthz", response_class=PlainTextResponse, tags=["probes"])
    def healthz() -> str:
        return "ok"

    @app.get("/readyz", response_class=PlainTextResponse, tags=["probes"])
    def readyz() -> PlainTextResponse:
        return (
            PlainTextResponse("ready")
            if ready()
            else PlainTextResponse("replaying the registry", status_code=503)
        )

    @app.get("/banks", tags=["banks"])
    def list_banks(who: Actor) -> list[BankOut]:
        counts = view.banks()
        configured = {c.bank for c in banks.configured()}
        return [
            BankOut(
                bank=name,
                entries=counts.get(name, 0),
                configured=name in configured,
                policy=banks.for_bank(name),
            )
            for name in sorted(set(counts) | configured)
        ]

    @app.put("/banks/{bank}", tags=["banks"])
    def set_bank(bank: BankName, body: BankIn, who: Actor) -> BankOut:
        fields = body.model_dump(exclude={"reason"})
        admin_for(who).set_bank(BankConfigured(bank=bank, **fields), body.reason)
        return BankOut(
            bank=bank,
            entries=len(view.in_bank(bank)),
            configured=True,
            policy=BankPolicy(**body.model_dump(include=set(BankPolicy.model_fields))),
        )

    @app.delete("/banks/{bank}/policy", tags=["banks"])
    def reset_bank(bank: BankName, reason: Reason, who: Actor) -> dict[str, str]:
        admin_for(who).reset_bank(bank, reason)
        return {"bank": bank, "policy": "reset"}

    @app.post("/banks/{bank}/entries", tags=["entries"], status_code=201)
    def register_hashes(bank: BankName, body: EntryIn, who: Actor) -> Registered:
        entry = EntryRegistered(
            entry_id=body.entry_id or entry_id_for(bank, body.signals),
            bank=bank,
            signals=body.signals,
            labels=body.labels,
        )
        admin_for(who).register([entry], body.reason)
        return Registered(entry_id=entry.entry_id)

    @app.post(
        "/banks/{bank}/images",
        tags=["entries"],
        status_code=201,
        openapi_extra={
            "requestBody": {
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
                "required": True,
            }
        },
    )
    async def register_image(
        bank: BankName, request: Request, reason: Reason, who: Actor
    ) -> Registered:
        data = await request.body()
        if len(data) > max_image_bytes:
            raise HTTPException(413, "image is over the byte cap")
        try:
            hashed = hash_file(data, bank, banks.for_bank(bank).quality_floor, embedder=embedder)
        except PoisonError as error:
            raise HTTPException(422, error.reason) from None
        finally:
            del data  # the image is never kept
        admin_for(who).register([hashed.registration], reason)
        return Registered(entry_id=hashed.registration.entry_id, warning=hashed.warning)

    @app.post("/banks/{bank}/import", tags=["entries"])
    def import_list(
        bank: BankName,
        who: Actor,
        reason: Reason,
        body: Annotated[str, Body(media_type="text/plain")],
        format: Format = "hma",
        skip_invalid: bool = False,
        batch: str | None = None,
    ) -> Imported:
        try:
            result = admin_for(who).import_list(body, format, bank, reason, skip_invalid, batch)
        except ImportRejected as rejected:
            raise HTTPException(422, {"problems": [str(p) for p in rejected.problems]}) from None
        return Imported(
            batch=result.batch, imported=result.imported, skipped=[str(p) for p in result.skipped]
        )

    @app.get("/banks/{bank}/export", response_class=PlainTextResponse, tags=["entries"])
    def export(bank: BankName, who: Actor, format: Format = "hma") -> str:
        return admin_for(who).export(bank, format)

    @app.delete("/entries/{entry_id}", tags=["withdrawal"])
    def withdraw_entry(entry_id: str, reason: Reason, who: Actor) -> Withdrawn:
        return Withdrawn(withdrawn=admin_for(who).withdraw([entry_id], reason))

    @app.delete("/banks/{bank}/entries", tags=["withdrawal"])
    def withdraw_bank(bank: BankName, reason: Reason, who: Actor) -> Withdrawn:
        return Withdrawn(withdrawn=admin_for(who).withdraw_bank(bank, reason))

    @app.delete("/batches/{batch}", tags=["withdrawal"])
    def withdraw_batch(batch: str, reason: Reason, who: Actor) -> Withdrawn:
        return Withdrawn(withdrawn=admin_for(who).withdraw_batch(batch, reason))

    @app.get("/audit", tags=["audit"])
    def audit(
        who: Actor, bank: str | None = None, limit: Annotated[int, Query(ge=1, le=10_000)] = 100
    ) -> list[AuditOut]:
        records = [
            AuditOut(time=t, record=r) for t, r in audit_log() if bank is None or r.bank == bank
        ]
        return records[-limit:]

    return app
