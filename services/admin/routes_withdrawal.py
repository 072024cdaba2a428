"""Admin API: withdrawals (by entry, bank, batch or subject) and the audit log recording them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from services.admin.api_models import AuditOut, Withdrawn
from services.admin.context import Actor, CaughtUp, Context, Reason
from services.shared.schemas import BankName

router = APIRouter()


@router.delete("/entries/{entry_id}", tags=["withdrawal"])
def withdraw_entry(entry_id: str, reason: Reason, context: Context, who: Actor) -> Withdrawn:
    """Withdraw one entry (a tombstone, whether or not it is registered)."""
    return Withdrawn(withdrawn=context.admin_for(who).withdraw([entry_id], reason))


@router.delete("/banks/{bank}/entries", tags=["withdrawal"], dependencies=[CaughtUp])
def withdraw_bank(bank: BankName, reason: Reason, context: Context, who: Actor) -> Withdrawn:
    """Withdraw every entry of a bank."""
    return Withdrawn(withdrawn=context.admin_for(who).withdraw_bank(bank, reason))


@router.delete("/batches/{batch}", tags=["withdrawal"], dependencies=[CaughtUp])
def withdraw_batch(batch: str, reason: Reason, context: Context, who: Actor) -> Withdrawn:
    """Withdraw every entry of an import batch."""
    return Withdrawn(withdrawn=context.admin_for(who).withdraw_batch(batch, reason))


@router.delete("/subjects/{subject}", tags=["withdrawal"], dependencies=[CaughtUp])
def withdraw_subject(subject: str, reason: Reason, context: Context, who: Actor) -> Withdrawn:
    """Withdraw every photograph and face of a subject (a child)."""
    return Withdrawn(withdrawn=context.admin_for(who).withdraw_subject(subject, reason))


@router.get("/audit", tags=["audit"], dependencies=[CaughtUp])
def audit(
    context: Context,
    who: Actor,
    response: Response,
    bank: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[AuditOut]:
    """The latest audit records; header ``Eraser-Unreadable-Records``: records that were not."""
    response.headers["Eraser-Unreadable-Records"] = str(context.audit.unreadable)
    records = [
        AuditOut(time=t, record=r)
        for t, r in context.audit.records()
        if bank is None or r.bank == bank
    ]
    return records[-limit:]
