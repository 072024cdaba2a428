"""Every case and its recent wrong PINs, as the cases log says now; fed by following it."""

from __future__ import annotations

import json
import threading

from kafka.consumer.fetcher import ConsumerRecord

from services.cases.records import CaseChanged, PinRefused
from services.shared.errors import PoisonError
from services.shared.follower import log_rejected
from services.shared.schemas import parse_event


class CaseBook:
    """Cases by number; thread-safe."""

    def __init__(self) -> None:
        self._cases: dict[str, CaseChanged] = {}
        self._refused: dict[str, PinRefused] = {}
        self._lock = threading.Lock()

    def apply(self, record: ConsumerRecord) -> None:
        """Apply one cases-log record."""
        try:
            document = json.loads(record.value or b"null")
            if isinstance(document, dict) and document.get("type") == PinRefused.TYPE:
                refused = parse_event(record.value, PinRefused).data
                with self._lock:
                    self._refused[refused.case_id] = refused
                return
            case = parse_event(record.value, CaseChanged).data
        except (PoisonError, ValueError) as error:
            log_rejected("cases", record, getattr(error, "reason", "not JSON"))
            return
        with self._lock:
            self._cases[case.case_id] = case

    def remember(self, change: CaseChanged | PinRefused) -> None:
        """Apply a change this replica just published, before the log brings it back.

        So a burst of wrong PINs meets the limit, and a withdrawal shows at once.
        """
        with self._lock:
            if isinstance(change, PinRefused):
                self._refused[change.case_id] = change
            else:
                self._cases[change.case_id] = change

    def get(self, case_id: str) -> CaseChanged | None:
        """One case."""
        with self._lock:
            return self._cases.get(case_id)

    def refused(self, case_id: str) -> PinRefused | None:
        """The case's recent wrong PINs."""
        with self._lock:
            return self._refused.get(case_id)
