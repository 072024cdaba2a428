"""The review rules, as pure functions of an item: who may take it, and what a decision does.

A reviewer works one item at a time: they claim it (it is theirs until the claim lapses), then
decide or skip it. In a bank that needs two reviewers, a first confirm or reject sends the item
back for a second reviewer; agreement makes it final, disagreement escalates it to a lead. Leads
and admins see escalated items and may decide any open item, claimed or not (an override).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from services.review.records import FINAL, Claim, Decision, ReviewItem, Role, Skip, Verdict
from services.shared.schemas import ActionDecided

LEADS: frozenset[str] = frozenset({"lead", "admin"})


class Refused(Exception):
    """The change is not allowed now; the message says why, for the person who asked."""


def available(item: ReviewItem, reviewer: str, role: Role, now: datetime) -> bool:
    """Whether ``reviewer`` may claim ``item`` now."""
    if item.status in FINAL or item.claimed_by_other(reviewer, now):
        return False
    if item.status == "escalated":
        return role in LEADS
    if item.status == "second-review" and any(d.reviewer == reviewer for d in item.decisions):
        return False
    return not any(s.reviewer == reviewer for s in item.skips)


def claim(item: ReviewItem, reviewer: str, role: Role, now: datetime, seconds: float) -> ReviewItem:
    """The item claimed by ``reviewer`` until ``seconds`` from now."""
    holds = item.claim is not None and item.claim.reviewer == reviewer
    if not holds and not available(item, reviewer, role, now):
        raise Refused("this item is not available to you")
    until = now + timedelta(seconds=seconds)
    return _next(item, claim=Claim(reviewer=reviewer, until=until))


def release(item: ReviewItem, reviewer: str, role: Role) -> ReviewItem:
    """The item back in the queue (its holder, or a lead reassigning it)."""
    if item.claim is None:
        return item
    if item.claim.reviewer != reviewer and role not in LEADS:
        raise Refused("only its holder or a lead can release this item")
    return _next(item, claim=None)


def skip(item: ReviewItem, reviewer: str, reason: str, now: datetime) -> ReviewItem:
    """The item passed back by its holder; they will not be offered it again."""
    _require_holder(item, reviewer, now)
    skipped = Skip(reviewer=reviewer, reason=reason, at=now)
    return _next(item, claim=None, skips=[*item.skips, skipped])


def decide(
    item: ReviewItem,
    reviewer: str,
    role: Role,
    verdict: Verdict,
    reason: str,
    now: datetime,
    reviewers_required: int,
) -> ReviewItem:
    """The item after ``reviewer``'s decision (see the module docstring for the rules)."""
    if item.status in FINAL:
        raise Refused(f"this item is already {item.status}")
    if role not in LEADS:
        _require_holder(item, reviewer, now)
        if item.status == "escalated":
            raise Refused("escalated items are decided by a lead")
    decision = Decision(reviewer=reviewer, role=role, verdict=verdict, reason=reason, at=now)
    decisions = [*item.decisions, decision]
    return _next(
        item, claim=None, decisions=decisions, status=_status(item, decision, reviewers_required)
    )


def _status(item: ReviewItem, decision: Decision, reviewers_required: int) -> str:
    if decision.verdict == "escalate":
        return "escalated"
    final = "confirmed" if decision.verdict == "confirm" else "rejected"
    if decision.role in LEADS or reviewers_required == 1:
        return final
    earlier = [
        d for d in item.decisions if d.verdict != "escalate" and d.reviewer != decision.reviewer
    ]
    if not earlier:
        return "second-review"
    return final if earlier[-1].verdict == decision.verdict else "escalated"


def overturns(item: ReviewItem) -> bool:
    """Whether the latest decision disagrees with an earlier confirm or reject."""
    made = [d.verdict for d in item.decisions if d.verdict != "escalate"]
    return len(made) >= 2 and made[-1] != made[-2]


def _require_holder(item: ReviewItem, reviewer: str, now: datetime) -> None:
    if item.claim is None or item.claim.reviewer != reviewer or item.claim.until <= now:
        raise Refused("claim this item first (claims lapse after a while)")


def _next(item: ReviewItem, **changes: object) -> ReviewItem:
    return item.model_copy(update={**changes, "version": item.version + 1})


def opened(action: ActionDecided, item_id: str, queue: str) -> ReviewItem:
    """A new item for a review action."""
    return ReviewItem(
        item_id=item_id, action=action, queue=queue, opened_at=action.decided_at, version=1
    )
