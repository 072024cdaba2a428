"""The admin API's request and response bodies (the events themselves are in shared/schemas)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from services.shared.schemas import AuditRecorded, BankPolicy, Signals


class BankIn(BankPolicy):
    """A bank's new policy (every field; unset ones take the defaults), and why it changes."""

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
    subject: str | None = None
    face_entry_ids: list[str] = []
    case: str | None = Field(default=None, description="The requester's case number.")
    pin: str | None = Field(
        default=None, description="The case's PIN: shown this once, never kept (only its hash)."
    )


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
