"""What the review log (``eraser.review``, compacted, one partition) holds: items and preferences.

Each record carries the whole state of one item after a change, so compaction (the latest record
per key) keeps exactly what the console needs. Internal to eraser: the public contract for review
outcomes is the action a confirmation publishes and the audit log.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import AwareDatetime, Field, StringConstraints

from services.shared.schemas import ActionDecided, Identifier, Schema

Role = Literal["reviewer", "lead", "admin"]
Status = Literal["open", "second-review", "escalated", "confirmed", "rejected"]
Verdict = Literal["confirm", "reject", "escalate"]
Change = Literal["opened", "claimed", "released", "skipped", "decided", "restated"]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=512)]
FINAL: frozenset[str] = frozenset({"confirmed", "rejected"})


class Claim(Schema):
    """One reviewer holds an item until a time."""

    reviewer: Identifier = Field(description="Who holds the item.")
    until: AwareDatetime = Field(description="When the claim lapses.")


class Decision(Schema):
    """A reviewer's decision on an item, with the reason they gave."""

    reviewer: Identifier = Field(description="Who decided.")
    role: Role = Field(description="Their role when they decided.")
    verdict: Verdict = Field(description="confirm, reject or escalate.")
    reason: Reason = Field(description="Why, in their words.")
    at: AwareDatetime = Field(description="When.")


class Skip(Schema):
    """A reviewer passed an item back, with a reason."""

    reviewer: Identifier = Field(description="Who skipped.")
    reason: Reason = Field(description="Why.")
    at: AwareDatetime = Field(description="When.")


class ReviewItem(Schema):
    """One review action and everything people did about it."""

    item_id: Identifier = Field(description="The review action's CloudEvent id.")
    action: ActionDecided = Field(description="The review action itself.")
    queue: Identifier = Field(description="The queue (the signal behind the action).")
    opened_at: AwareDatetime = Field(description="When the action was decided.")
    version: int = Field(ge=1, description="1 when opened, one more per change.")
    status: Status = Field(default="open", description="Where the item stands.")
    claim: Claim | None = Field(default=None, description="Who holds it, if anyone.")
    decisions: list[Decision] = Field(default_factory=list, description="Oldest first.")
    skips: list[Skip] = Field(default_factory=list, description="Oldest first.")
    action_id: Identifier | None = Field(
        default=None, description="The removal action a confirmation published."
    )

    def claimed_by_other(self, reviewer: str, now: datetime) -> bool:
        """Whether someone else holds a live claim."""
        return self.claim is not None and self.claim.reviewer != reviewer and self.claim.until > now


class ReviewChanged(Schema):
    """An item changed: the new state, and the version it was made from (first writer wins)."""

    TYPE: ClassVar[str] = "eraser.review.v1"

    change: Change = Field(description="What happened.")
    actor: Identifier = Field(description="Who made the change (a service for 'opened').")
    write_id: Identifier = Field(description="Unique per write, so its writer can find it.")
    base_version: int = Field(ge=0, description="The version changed (0 for 'opened').")
    item: ReviewItem = Field(description="The item after the change.")


class PreferencesSet(Schema):
    """A reviewer's own settings; keyed ``prefs/<reviewer>``."""

    TYPE: ClassVar[str] = "eraser.review.preferences.v1"

    reviewer: Identifier = Field(description="Whose settings.")
    blur: bool = Field(description="Media blurred and grey until revealed.")
