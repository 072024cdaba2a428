"""What an operator or a regulator's service can do to the registry, each step audited.

Shared by the ``eraser`` command and the admin HTTP API. Every change is published to Kafka (so
every matcher replica applies it) and then written to the audit log with who, what and why.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from services.admin.formats import Format, Parsed, Problem, parse, serialise
from services.admin.publishing import Publisher
from services.admin.view import BATCH_LABEL, RegistryView
from services.shared.schemas import AuditRecorded, BankConfigured, EntryRegistered


class ImportRejected(Exception):
    """A hash list had invalid lines and skipping them was not asked for; nothing was imported."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems[:20]))
        self.problems = problems


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
    """Registry administration on behalf of one actor."""

    def __init__(self, publisher: Publisher, view: RegistryView, actor: str) -> None:
        self._publisher = publisher
        self._view = view
        self._actor = actor

    def register(self, registrations: Sequence[EntryRegistered], reason: str) -> int:
        """Register entries (replacing any with the same ids); how many."""
        count = self._publisher.register(registrations)
        banks = {r.bank for r in registrations}
        self._audit(
            "register",
            reason,
            [r.entry_id for r in registrations],
            count,
            bank=banks.pop() if len(banks) == 1 else None,
        )
        return count

    def import_list(
        self,
        text: str,
        fmt: Format,
        bank: str,
        reason: str,
        skip_invalid: bool = False,
        batch: str | None = None,
    ) -> ImportResult:
        """Import a hash list into ``bank`` as one batch; all or nothing unless ``skip_invalid``."""
        parsed: Parsed = parse(text, fmt, bank)
        if parsed.problems and not skip_invalid:
            raise ImportRejected(parsed.problems)
        batch = batch or new_batch_id()
        entries = [
            e
            if BATCH_LABEL in e.labels
            else e.model_copy(update={"labels": {**e.labels, BATCH_LABEL: batch}})
            for e in parsed.entries
        ]
        count = self._publisher.register(entries)
        self._audit(
            "import",
            reason,
            [e.entry_id for e in entries],
            count,
            bank=bank,
            batch=batch,
            details={"format": fmt, "skipped": str(len(parsed.problems))},
        )
        return ImportResult(batch, count, parsed.problems)

    def withdraw(self, entry_ids: Sequence[str], reason: str) -> int:
        """Withdraw entries by id; how many tombstones were published."""
        count = self._publisher.withdraw(entry_ids)
        self._audit("withdraw", reason, list(entry_ids), count, details={"by": "entry"})
        return count

    def withdraw_bank(self, bank: str, reason: str) -> int:
        """Withdraw every entry of a bank; how many."""
        ids = [e.entry_id for e in self._view.in_bank(bank)]
        count = self._publisher.withdraw(ids)
        self._audit("withdraw", reason, ids, count, bank=bank, details={"by": "bank"})
        return count

    def withdraw_batch(self, batch: str, reason: str) -> int:
        """Withdraw every entry of an import batch; how many."""
        ids = [e.entry_id for e in self._view.in_batch(batch)]
        count = self._publisher.withdraw(ids)
        self._audit("withdraw", reason, ids, count, batch=batch, details={"by": "batch"})
        return count

    def set_bank(self, configured: BankConfigured, reason: str) -> None:
        """Set a bank's policy."""
        self._publisher.set_bank(configured)
        policy = configured.model_dump(exclude={"bank", "description"})
        self._audit(
            "set-bank",
            reason,
            [],
            0,
            bank=configured.bank,
            details={k: str(v) for k, v in policy.items()},
        )

    def reset_bank(self, bank: str, reason: str) -> None:
        """Drop a bank's published policy (it falls back to the deployment's default)."""
        self._publisher.reset_bank(bank)
        self._audit("reset-bank", reason, [], 0, bank=bank)

    def export(self, bank: str, fmt: Format) -> str:
        """A bank's entries as a hash list."""
        return serialise(self._view.in_bank(bank), fmt)

    def _audit(
        self,
        operation: str,
        reason: str,
        entry_ids: list[str],
        count: int,
        bank: str | None = None,
        batch: str | None = None,
        details: dict[str, str] | None = None,
    ) -> None:
        self._publisher.audit(
            AuditRecorded(
                actor=self._actor,
                operation=operation,
                bank=bank,
                batch=batch,
                entry_ids=entry_ids[:1000],
                count=count,
                reason=reason or "(no reason given)",
                details=details or {},
            )
        )
