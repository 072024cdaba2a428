"""A requester's case: opened at registration, checked by number and PIN, withdrawn by them.

The case number and PIN are shown once, to whoever registered; eraser keeps only a slow hash of
the PIN. Wrong PINs are counted on the cases log, so the limit holds across replicas and restarts.
The status is coarse on purpose: counts, never images, URLs or platforms.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, NamedTuple

from services.admin.operations import Admin
from services.admin.view import RegistryView
from services.cases.book import CaseBook
from services.cases.records import CaseChanged, PinRefused
from services.review.board import ReviewBoard
from services.review.ledger import ActionLedger
from services.shared.passwords import hash_secret, verify_secret
from services.shared.schemas import AuditRecorded, Schema

NUMBER_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L: read aloud, typed by a child
_UNKNOWN = hash_secret("no such case")  # checked against unknown numbers too: same time taken
Send = Callable[[str, Schema], None]
"""Publishes a record on the cases log under a key, and waits for the broker."""


class NotRecognised(Exception):
    """The number and PIN do not open a case (which of the two is wrong is not said)."""


class TooManyAttempts(Exception):
    """Too many wrong PINs for this case lately; the message says when to try again."""


class CaseStatus(NamedTuple):
    """What a requester sees: where their case stands, in counts."""

    case_id: str
    stage: Literal["received", "matching", "withdrawn"]
    entries: int  # photographs
    actioned: int
    taken_down: int
    under_review: int
    opened_at: datetime
    faces: int = 0  # faces registered from those photographs (while they are registered)


def new_number() -> str:
    """A case number such as ``EC-7K3M-Q9P2`` (31^8 possibilities)."""
    chars = "".join(secrets.choice(NUMBER_ALPHABET) for _ in range(8))
    return f"EC-{chars[:4]}-{chars[4:]}"


def new_pin() -> str:
    """An 8-digit PIN."""
    return f"{secrets.randbelow(10**8):08d}"


def open_case(
    send: Send,
    audit: Callable[[list[AuditRecorded]], None],
    actor: str,
    bank: str,
    entry_ids: Sequence[str],
    now: datetime,
) -> tuple[str, str]:
    """Open a case for newly registered entries; its number and PIN (shown once, never kept)."""
    number, pin = new_number(), new_pin()
    case = CaseChanged(
        case_id=number,
        pin_hash=hash_secret(pin),
        bank=bank,
        entry_ids=list(entry_ids),
        status="open",
        opened_at=now,
    )
    audit(
        [
            AuditRecorded(
                actor=actor,
                operation="case-open",
                bank=bank,
                entry_ids=list(entry_ids)[:1000],
                count=len(entry_ids),
                reason="registration",
                details={"case": number},
            )
        ]
    )
    send(number, case)
    return number, pin


@dataclass
class Cases:
    """Status and withdrawal of cases, for the requester's page."""

    book: CaseBook
    send: Send
    admin_for: Callable[[str], Admin]
    view: RegistryView
    ledger: ActionLedger
    board: ReviewBoard
    attempts: int
    window_s: float
    clock: Callable[[], datetime]

    def open(self, number: str, pin: str) -> CaseChanged:
        """The case these open.

        Raises:
            TooManyAttempts: too many wrong PINs for the case lately (even if this one is right).
            NotRecognised: no case has this number and PIN.
        """
        number = number.strip().upper()
        case, now = self.book.get(number), self.clock()
        recent = self._recent_failures(number, now)
        if len(recent) >= self.attempts:
            wait = recent[0] + timedelta(seconds=self.window_s) - now
            raise TooManyAttempts(f"too many wrong PINs: try again in {_minutes(wait)}")
        pin = "".join(ch for ch in pin if ch.isdigit())
        if not verify_secret(pin, case.pin_hash if case else _UNKNOWN) or case is None:
            if case is not None:
                refused = PinRefused(case_id=number, failures=[*recent, now])
                self.book.remember(refused)
                self.send(f"{number}/attempts", refused)
            raise NotRecognised("that case number and PIN do not match a case")
        return case

    def status(self, case: CaseChanged) -> CaseStatus:
        """Where ``case`` stands."""
        copies = self.ledger.copies(case.entry_ids)
        done = [c for c in copies if (r := self.ledger.result(c.action_id)) and r.outcome == "done"]
        reviews = [i for i in self.board.for_entries(case.entry_ids) if i.status not in _DONE]
        slots = [self.view.get(entry_id) for entry_id in case.entry_ids]
        registered = any(slots)
        faces = sum(1 for slot in slots if slot is not None and slot.face)
        stage: Literal["received", "matching", "withdrawn"] = "received"
        if case.status == "withdrawn":
            stage = "withdrawn"
        elif registered:
            stage = "matching"
        return CaseStatus(
            case.case_id,
            stage,
            len(case.entry_ids) - faces,
            len({c.content_id for c in copies}),
            len({c.content_id for c in done}),
            len({i.action.content_id for i in reviews}),
            case.opened_at,
            faces,
        )

    def withdraw(self, case: CaseChanged) -> None:
        """Withdraw every entry of the case (audited; every matcher applies it within a poll)."""
        self.admin_for(f"requester {case.case_id}").withdraw(
            case.entry_ids, "withdrawn by the requester"
        )
        withdrawn = case.model_copy(update={"status": "withdrawn", "withdrawn_at": self.clock()})
        self.send(case.case_id, withdrawn)
        self.book.remember(withdrawn)

    def _recent_failures(self, number: str, now: datetime) -> list[datetime]:
        refused = self.book.refused(number)
        since = now - timedelta(seconds=self.window_s)
        return [t for t in (refused.failures if refused else []) if t > since]


_DONE = frozenset({"confirmed", "rejected"})


def _minutes(wait: timedelta) -> str:
    minutes = max(1, round(wait.total_seconds() / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
