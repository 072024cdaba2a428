"""Which copies were actioned, and what removal services say became of them.

Fed by following the actions topic (remove and hide actions, by entry) and ``eraser.action-results``
(by action id). Requesters' case pages and the console read it. It holds ids only. It knows what
the actions topic still holds: keep that topic's retention at least as long as cases stay open.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import NamedTuple

from kafka.consumer.fetcher import ConsumerRecord

from services.shared.errors import PoisonError
from services.shared.follower import log_rejected
from services.shared.schemas import ActionDecided, ActionResultReported, parse_event


class Copy(NamedTuple):
    """One actioned copy of a registered entry."""

    content_id: str
    action: str
    action_id: str
    entry_id: str


class ActionLedger:
    """Actioned copies by entry, and results by action id; thread-safe."""

    def __init__(self) -> None:
        self._copies: dict[str, dict[str, Copy]] = {}
        self._results: dict[str, ActionResultReported] = {}
        self._lock = threading.Lock()

    def apply_action(self, record: ConsumerRecord) -> None:
        """Apply one actions-topic record (review actions are the board's business)."""
        try:
            event = parse_event(record.value, ActionDecided)
        except PoisonError as error:
            log_rejected("actions", record, error.reason)
            return
        action = event.data
        if action.action == "review":
            return
        copy = Copy(action.content_id, action.action, event.id, action.entry_id)
        with self._lock:
            self._copies.setdefault(action.entry_id, {})[action.content_id] = copy

    def apply_result(self, record: ConsumerRecord) -> None:
        """Apply one action-results record."""
        try:
            result = parse_event(record.value, ActionResultReported).data
        except PoisonError as error:
            log_rejected("action-results", record, error.reason)
            return
        with self._lock:
            self._results[result.action_id] = result

    def copies(self, entry_ids: Iterable[str]) -> list[Copy]:
        """The actioned copies of these entries."""
        with self._lock:
            return [c for e in entry_ids for c in self._copies.get(e, {}).values()]

    def result(self, action_id: str) -> ActionResultReported | None:
        """What a removal service reported for an action, if anything."""
        with self._lock:
            return self._results.get(action_id)
