"""What the cases log (``eraser.cases``, compacted, one partition) holds.

A case is keyed by its number; its wrong-PIN attempts by ``<number>/attempts``, so every admin
replica counts the same attempts. Internal to eraser. No image, URL or name: entry ids, a bank,
times, and a slow hash of the PIN.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AwareDatetime, Field

from services.shared.schemas import BankName, Identifier, Schema


class CaseChanged(Schema):
    """A case as it stands: opened, or withdrawn."""

    TYPE: ClassVar[str] = "eraser.case.v1"

    case_id: Identifier = Field(description="The case number the requester holds.")
    pin_hash: Identifier = Field(description="scrypt hash of the PIN (services/shared/passwords).")
    bank: BankName = Field(description="The bank the entries were registered in.")
    entry_ids: list[Identifier] = Field(max_length=10_000, description="The case's entries.")
    status: Literal["open", "withdrawn"] = Field(description="Whether it was withdrawn.")
    opened_at: AwareDatetime = Field(description="When the case was opened.")
    withdrawn_at: AwareDatetime | None = Field(default=None, description="When withdrawn.")


class PinRefused(Schema):
    """Recent wrong PINs for a case; keyed ``<case number>/attempts``."""

    TYPE: ClassVar[str] = "eraser.case.attempts.v1"

    case_id: Identifier = Field(description="The case number tried.")
    failures: list[AwareDatetime] = Field(max_length=100, description="Recent wrong PINs.")
