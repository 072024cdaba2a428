"""Admin API: the banks and their policies (``/banks``)."""

from __future__ import annotations

from fastapi import APIRouter

from services.admin.api_models import BankIn, BankOut
from services.admin.context import Actor, CaughtUp, Context, Reason
from services.shared.schemas import BankConfigured, BankName

router = APIRouter(tags=["banks"])


@router.get("/banks", dependencies=[CaughtUp])
def list_banks(context: Context, who: Actor) -> list[BankOut]:
    """Every bank with entries or a published policy."""
    counts = context.view.banks()
    configured = {c.bank for c in context.banks.configured()}
    return [
        BankOut(
            bank=name,
            entries=counts.get(name, 0),
            configured=name in configured,
            policy=context.banks.for_bank(name),
        )
        for name in sorted(set(counts) | configured)
    ]


@router.put("/banks/{bank}")
def set_bank(bank: BankName, body: BankIn, context: Context, who: Actor) -> BankOut:
    """Publish a bank's whole policy."""
    configured = BankConfigured(bank=bank, **body.model_dump(exclude={"reason"}))
    context.admin_for(who).set_bank(configured, body.reason)
    return BankOut(
        bank=bank,
        entries=context.view.banks().get(bank, 0),
        configured=True,
        policy=configured.policy(),
    )


@router.delete("/banks/{bank}/policy")
def reset_bank(bank: BankName, reason: Reason, context: Context, who: Actor) -> dict[str, str]:
    """Drop a bank's published policy: it falls back to the deployment's default."""
    context.admin_for(who).reset_bank(bank, reason)
    return {"bank": bank, "policy": "reset"}
