"""The review console's operations: next item, view, reveal, skip, decide; each one audited.

The web pages (``review/routes.py``) only call these. A confirmation publishes the bank's action
(remove, or hide) signed as the actions service signs it, with the same deterministic id, so a
removal service treats it as any other action. A rejection can add the upload's hashes to the
negative bank, so the same upload yields no action again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from kafka import KafkaProducer

from services.actions.signing import sign
from services.review import rules
from services.review.board import ReviewBoard
from services.review.evidence import Evidence, EvidenceUnavailable
from services.review.log import SOURCE, ReviewLog
from services.review.metrics import ReviewMetrics
from services.review.records import Change, ReviewItem, Role, Verdict
from services.shared.banks import BankBook
from services.shared.schemas import ActionDecided, AuditRecorded, encode, event_id, new_event

CLAIM_TRIES = 5


class Person(NamedTuple):
    """Who is signed in, and as what."""

    name: str
    role: Role


@dataclass(frozen=True)
class ActionSender:
    """Publishes signed actions on the actions topic."""

    producer: KafkaProducer
    topic: str
    key: bytes
    key_id: str

    def send(self, action: ActionDecided) -> str:
        """Publish ``action`` with its deterministic id; the id."""
        id_ = event_id("action", action.content_id, action.entry_id, action.action)
        signed = sign(encode(new_event(action, id=id_, source=SOURCE)), self.key, self.key_id)
        self.producer.send(self.topic, key=action.content_id.encode(), value=signed).get(timeout=10)
        return id_


NegativeBank = Callable[[ReviewItem, bytes, str, str], None]
"""Registers an upload's bytes in the negative bank: (item, bytes, actor, reason)."""


@dataclass
class ReviewDesk:
    """Review operations on behalf of the person signed in."""

    board: ReviewBoard
    log: ReviewLog
    banks: BankBook
    audit: Callable[[list[AuditRecorded]], None]
    evidence: Evidence
    metrics: ReviewMetrics
    claim_seconds: float
    clock: Callable[[], datetime]
    actions: ActionSender | None = None
    negative: NegativeBank | None = None

    def next(self, who: Person) -> ReviewItem | None:
        """Claim the first item of ``who``'s queue (None: nothing to do)."""
        for _ in range(CLAIM_TRIES):
            queue = self.board.queue(who.name, who.role, self.clock())
            if not queue:
                return None
            claimed = self._claim(who, queue[0])
            if claimed is not None:
                return claimed
        return None  # others keep taking the first item: let the person try again

    def take(self, who: Person, item_id: str) -> ReviewItem:
        """Claim one item (a lead reassigning work, or a reviewer opening a link)."""
        claimed = self._claim(who, self.item(item_id))
        if claimed is None:
            raise rules.Refused("someone else claimed this item first")
        return claimed

    def view(self, who: Person, item_id: str) -> ReviewItem:
        """An item, as ``who`` opens it (audited)."""
        item = self.item(item_id)
        self._audit(who, "review-view", item, "opened the item")
        return item

    def reveal(self, who: Person, item_id: str) -> None:
        """``who`` asks to see the upload unblurred (audited)."""
        self._audit(who, "review-reveal", self.item(item_id), "revealed the media")

    def skip(self, who: Person, item_id: str, reason: str) -> None:
        """Pass an item back with a reason."""
        item = self.item(item_id)
        after = rules.skip(item, who.name, reason, self.clock())
        self._audit(who, "review-skip", item, reason)
        self._write("skipped", who, item, after)

    def release(self, who: Person, item_id: str) -> None:
        """Put an item back in the queue (its holder, or a lead)."""
        item = self.item(item_id)
        self._write("released", who, item, rules.release(item, who.name, who.role))

    def decide(
        self, who: Person, item_id: str, verdict: Verdict, reason: str, add_negative: bool = False
    ) -> ReviewItem:
        """Confirm, reject or escalate an item; a final confirm publishes the bank's action."""
        item, now = self.item(item_id), self.clock()
        policy = self.banks.for_bank(item.action.bank)
        after = rules.decide(item, who.name, who.role, verdict, reason, now, policy.reviewers)
        removal = self._removal(item, now) if after.status == "confirmed" else None
        if removal is not None:
            action_id = event_id("action", removal.content_id, removal.entry_id, removal.action)
            after = after.model_copy(update={"action_id": action_id})
        self._audit(who, "review-decide", item, reason, verdict=verdict, status=after.status)
        try:
            self._write("decided", who, item, after)
        except rules.Refused:  # the record above then says the decision did not take
            self._audit(who, "review-decide", item, reason, verdict=verdict, outcome="refused")
            raise
        self.metrics.decided(after, now)
        if removal is not None:
            self._sender().send(removal)
        if after.status == "rejected" and add_negative:
            self._add_negative(who, after, reason)
        return after

    def set_blur(self, who: Person, blur: bool) -> None:
        """``who``'s own setting: media blurred until revealed, or not."""
        self.log.set_blur(who.name, blur)

    def item(self, item_id: str) -> ReviewItem:
        """One item.

        Raises:
            Refused: there is no such item.
        """
        item = self.board.get(item_id)
        if item is None:
            raise rules.Refused("no such item")
        return item

    def _claim(self, who: Person, item: ReviewItem) -> ReviewItem | None:
        after = rules.claim(item, who.name, who.role, self.clock(), self.claim_seconds)
        if not self.log.write("claimed", who.name, item, after):
            return None
        self._audit(who, "review-claim", item, "claimed the item")
        return after

    def _write(self, change: Change, who: Person, before: ReviewItem, after: ReviewItem) -> None:
        if not self.log.write(change, who.name, before, after):
            raise rules.Refused("someone changed this item at the same moment; look again")

    def _removal(self, item: ReviewItem, now: datetime) -> ActionDecided:
        kind = self.banks.for_bank(item.action.bank).action
        return item.action.model_copy(
            update={
                "action": "remove" if kind == "review" else kind,
                "reason": f"confirmed in review: {item.action.reason}"[:512],
                "decided_at": now,
            }
        )

    def _sender(self) -> ActionSender:
        if self.actions is None:
            raise rules.Refused("confirmed, but no action went out: set ERASER_ACTIONS_SIGNING_KEY")
        return self.actions

    def _add_negative(self, who: Person, item: ReviewItem, reason: str) -> None:
        if self.negative is None:
            raise rules.Refused("rejected, but there is no negative bank to add the upload to")
        try:
            data = self.evidence.media(item.action.content_id)
        except EvidenceUnavailable as error:
            raise rules.Refused(f"rejected, but not added to the negative bank: {error}") from None
        self.negative(item, data, who.name, reason)

    def _audit(
        self, who: Person, operation: str, item: ReviewItem, reason: str, **details: str
    ) -> None:
        record = AuditRecorded(
            actor=who.name,
            operation=operation,
            bank=item.action.bank,
            entry_ids=[item.action.entry_id],
            count=1,
            reason=reason,
            details={"item": item.item_id, "role": who.role, **details},
        )
        self.audit([record])
