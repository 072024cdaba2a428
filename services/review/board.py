"""Every review item as the review log says now: the fold every admin replica runs alike.

Fed by following ``eraser.review`` (``shared/follower.py``). A change applies only to the version
it was made from, so when two replicas change one item at once the first record wins on every
replica, and its writer learns which by waiting for its ``write_id`` (:meth:`ReviewBoard.outcome`).
After compaction an item's oldest surviving record is taken as it is: it was the latest then.
"""

from __future__ import annotations

import collections
import json
import threading
from collections.abc import Callable, Iterable
from datetime import datetime

from kafka.consumer.fetcher import ConsumerRecord

from services.review.records import FINAL, PreferencesSet, ReviewChanged, ReviewItem, Role
from services.review.rules import available
from services.shared.errors import PoisonError
from services.shared.follower import log_rejected
from services.shared.schemas import parse_event

OUTCOMES_KEPT = 10_000


class ReviewBoard:
    """Items by id, reviewers' preferences, and whether recent writes won; thread-safe."""

    def __init__(self, priorities: dict[str, int]) -> None:
        self._priorities = priorities
        self._items: dict[str, ReviewItem] = {}
        self._blur: dict[str, bool] = {}
        self._outcomes: collections.OrderedDict[str, bool] = collections.OrderedDict()
        self._changed = threading.Condition()

    def apply(self, record: ConsumerRecord) -> None:
        """Apply one review-log record."""
        try:
            kind = json.loads(record.value or b"null")
            kind = kind.get("type") if isinstance(kind, dict) else None
            if kind == PreferencesSet.TYPE:
                prefs = parse_event(record.value, PreferencesSet).data
                with self._changed:
                    self._blur[prefs.reviewer] = prefs.blur
                return
            change = parse_event(record.value, ReviewChanged).data
        except (PoisonError, ValueError) as error:
            log_rejected("review", record, getattr(error, "reason", "not JSON"))
            return
        with self._changed:
            self._outcomes[change.write_id] = self._accept(change)
            while len(self._outcomes) > OUTCOMES_KEPT:
                self._outcomes.popitem(last=False)
            self._changed.notify_all()

    def _accept(self, change: ReviewChanged) -> bool:
        current = self._items.get(change.item.item_id)
        if current is None:
            accepted = True  # opened, or the oldest record compaction left
        elif change.change == "opened":
            accepted = False  # opened again (a redelivered action): the item has moved on
        else:
            accepted = change.base_version == current.version
        if accepted:
            self._items[change.item.item_id] = change.item
        return accepted

    def outcome(self, write_id: str, timeout_s: float) -> bool | None:
        """Whether the write won (None: not seen within ``timeout_s``)."""
        with self._changed:
            self._changed.wait_for(lambda: write_id in self._outcomes, timeout=timeout_s)
            return self._outcomes.get(write_id)

    def get(self, item_id: str) -> ReviewItem | None:
        """One item."""
        with self._changed:
            return self._items.get(item_id)

    def blur(self, reviewer: str, default: bool) -> bool:
        """Whether ``reviewer`` sees media blurred until revealed."""
        with self._changed:
            return self._blur.get(reviewer, default)

    def queue(self, reviewer: str, role: Role, now: datetime) -> list[ReviewItem]:
        """What ``reviewer`` may claim, in the order to work it: priority, then oldest first."""
        with self._changed:
            items = [i for i in self._items.values() if available(i, reviewer, role, now)]
        return sorted(items, key=self._rank)

    def items(self, keep: Callable[[ReviewItem], bool] = lambda item: True) -> list[ReviewItem]:
        """Every item ``keep`` accepts, in queue order."""
        with self._changed:
            items = [i for i in self._items.values() if keep(i)]
        return sorted(items, key=self._rank)

    def open_items(self) -> list[ReviewItem]:
        """Items not decided yet."""
        return self.items(lambda item: item.status not in FINAL)

    def for_entries(self, entry_ids: Iterable[str]) -> list[ReviewItem]:
        """Items about any of these entries."""
        wanted = set(entry_ids)
        return self.items(lambda item: item.action.entry_id in wanted)

    def _rank(self, item: ReviewItem) -> tuple[int, datetime]:
        return self._priorities.get(item.queue, len(self._priorities)), item.opened_at
