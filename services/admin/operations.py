"""What an operator or a regulator's service can do to the registry, each step audited.

Shared by the ``eraser`` command and the admin HTTP API. Every change is first written to the audit
log (who, what, why; acknowledged by the broker), then published to Kafka, so every matcher replica
applies it. A crash between the two leaves an audit record for a change that was not made, never a
change without a record; when the publish raises, a second record says it failed.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from pydantic import ValidationError

from services.admin.formats import Format, Parsed, Problem, unit_of
from services.admin.publishing import Publisher
from services.admin.view import BATCH_LABEL, RegistryView
from services.shared.schemas import AuditRecorded, BankConfigured, EntryRegistered, describe

log = logging.getLogger(__name__)
Operation = Literal["register", "withdraw", "import", "set-bank", "reset-bank"]
AUDIT_IDS_PER_RECORD = 1000  # the schema's limit; larger changes take several records


class ImportRejected(Exception):
    """A hash list had invalid lines and skipping them was not asked for; nothing was imported."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems[:20]))
        self.problems = problems


class EntriesElsewhere(Exception):
    """Entry ids that already belong to another bank; nothing was registered."""

    def __init__(self, owners: dict[str, str]) -> None:
        listed = ", ".join(
            f"{entry_id} (bank {bank})" for entry_id, bank in list(owners.items())[:5]
        )
        super().__init__(f"entry ids already in another bank: {listed}")
        self.owners = owners


@dataclass
class ImportResult:
    """What an import did."""

    batch: str
    imported: int
    skipped: list[Problem] = field(default_factory=list)


def new_batch_id() -> str:
    """An import batch id: when, plus a little randomness."""
    return f"batch-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


class Admin:
    """Registry administration on behalf of one actor.

    ``view`` is the registry as replayed from the topic; without one (``eraser register``, whose
    entry ids are derived from the bank and so cannot name another bank's entry) the operations
    that need it refuse to run rather than act on an empty registry.
    """

    def __init__(self, publisher: Publisher, view: RegistryView | None, actor: str) -> None:
        self._publisher = publisher
        self._view = view
        self._actor = actor

    def register(self, registrations: Sequence[EntryRegistered], reason: str) -> int:
        """Register entries (replacing any with the same ids in the same bank); how many.

        Raises:
            EntriesElsewhere: an entry id belongs to another bank.
        """
        if self._view is not None:
            elsewhere = {r.entry_id: bank for r in registrations if (bank := self._owner(r))}
            if elsewhere:
                raise EntriesElsewhere(elsewhere)
        banks = {r.bank for r in registrations}
        return self._change(
            "register",
            reason,
            [r.entry_id for r in registrations],
            lambda: self._publisher.register(registrations),
            bank=banks.pop() if len(banks) == 1 else None,
        )

    def import_list(
        self,
        parsed: Parsed,
        fmt: Format,
        bank: str,
        reason: str,
        skip_invalid: bool = False,
        batch: str | None = None,
    ) -> ImportResult:
        """Import a parsed hash list into ``bank`` as one batch; all or nothing unless skipping.

        Every entry is labelled with the new batch, replacing any batch label it carried (a
        re-imported export belongs to the new batch; the audit log keeps the old batch's ids).
        """
        batch = batch or new_batch_id()
        entries = self._batched(parsed, batch, bank, unit_of(fmt))
        if parsed.problems and not skip_invalid:
            raise ImportRejected(parsed.problems)
        self._change(
            "import",
            reason,
            [e.entry_id for e in entries],
            lambda: self._publisher.register(entries),
            bank=bank,
            batch=batch,
            details={"format": fmt, "skipped": str(len(parsed.problems))},
        )
        return ImportResult(batch, len(entries), parsed.problems)

    def withdraw(self, entry_ids: Sequence[str], reason: str) -> int:
        """Withdraw entries by id; how many tombstones were published."""
        ids = list(entry_ids)
        return self._withdraw(ids, reason, details={"by": "entry"})

    def withdraw_bank(self, bank: str, reason: str) -> int:
        """Withdraw every entry of a bank; how many."""
        ids = list(self._registry().in_bank(bank))
        return self._withdraw(ids, reason, bank=bank, details={"by": "bank"})

    def withdraw_batch(self, batch: str, reason: str) -> int:
        """Withdraw every entry of an import batch; how many."""
        ids = self._registry().in_batch(batch)
        return self._withdraw(ids, reason, batch=batch, details={"by": "batch"})

    def withdraw_subject(self, subject: str, reason: str) -> int:
        """Withdraw every photograph and face of a subject (a child); how many."""
        ids = self._registry().of_subject(subject)
        return self._withdraw(ids, reason, details={"by": "subject", "subject": subject})

    def set_bank(self, configured: BankConfigured, reason: str) -> None:
        """Set a bank's policy."""
        policy = configured.model_dump(exclude={"bank", "description"})
        self._change(
            "set-bank",
            reason,
            [],
            lambda: self._publisher.set_bank(configured),
            bank=configured.bank,
            details={k: str(v) for k, v in policy.items()},
        )

    def reset_bank(self, bank: str, reason: str) -> None:
        """Drop a bank's published policy (it falls back to the deployment's default)."""
        self._change("reset-bank", reason, [], lambda: self._publisher.reset_bank(bank), bank=bank)

    def _withdraw(
        self,
        ids: list[str],
        reason: str,
        details: dict[str, str],
        bank: str | None = None,
        batch: str | None = None,
    ) -> int:
        publish = functools.partial(self._publisher.withdraw, ids)
        return self._change("withdraw", reason, ids, publish, bank, batch, details)

    def _registry(self) -> RegistryView:
        if self._view is None:
            raise RuntimeError("this operation needs the registry replayed first")
        return self._view

    def _owner(self, registration: EntryRegistered) -> str | None:
        """The other bank ``registration``'s entry id belongs to, if it does."""
        slot = self._registry().get(registration.entry_id)
        return slot.bank if slot is not None and slot.bank != registration.bank else None

    def _batched(self, parsed: Parsed, batch: str, bank: str, unit: str) -> list[EntryRegistered]:
        """The parsed entries labelled with ``batch``; those that cannot be join the problems."""
        entries = []
        for line, entry in parsed.items:
            if owner := self._owner(entry):
                reason = f"entry id {entry.entry_id[:64]!r} belongs to bank {owner!r}"
                parsed.problems.append(Problem(line, reason, unit))
                continue
            try:
                labels = {**entry.labels, BATCH_LABEL: batch}
                entries.append(EntryRegistered(**{**entry.model_dump(), "labels": labels}))
            except ValidationError as error:
                parsed.problems.append(Problem(line, describe(error), unit))
        parsed.problems.sort(key=lambda problem: problem.line)
        return entries

    def _change(
        self,
        operation: Operation,
        reason: str,
        entry_ids: list[str],
        publish: Callable[[], object],
        bank: str | None = None,
        batch: str | None = None,
        details: dict[str, str] | None = None,
    ) -> int:
        """Audit, then publish; how many entries. If publishing raises, audit that and re-raise."""
        records = self._records(operation, reason, entry_ids, bank, batch, details or {})
        self._publisher.audit(records)
        try:
            publish()
        except Exception as error:
            failed = {**records[0].details, "outcome": "failed", "error": type(error).__name__}
            self._record_failure(records[0].model_copy(update={"entry_ids": [], "details": failed}))
            raise
        return len(entry_ids)

    def _record_failure(self, record: AuditRecorded) -> None:
        try:
            self._publisher.audit([record])
        except Exception:
            log.exception("could not record a failed change in the audit log")

    def _records(
        self,
        operation: Operation,
        reason: str,
        entry_ids: list[str],
        bank: str | None,
        batch: str | None,
        details: dict[str, str],
    ) -> list[AuditRecorded]:
        """The audit records of one change: every id listed, at most 1,000 to a record."""
        step = AUDIT_IDS_PER_RECORD
        parts = [entry_ids[i : i + step] for i in range(0, len(entry_ids), step)] or [[]]
        return [
            AuditRecorded(
                actor=self._actor,
                operation=operation,
                bank=bank,
                batch=batch,
                entry_ids=part,
                count=len(entry_ids),
                reason=reason or "(no reason given)",
                details={**details, "part": f"{n}/{len(parts)}"} if len(parts) > 1 else details,
            )
            for n, part in enumerate(parts, start=1)
        ]
