"""The actions service's logic: match verdicts in, actions out (``eraser.verdicts`` → actions).

Each action's CloudEvent id is derived from (content id, entry id, action), so the same decision
always has the same id. Ids published recently are remembered and not published again; a removal
service drops any repeat that still gets through (after a restart, say) by the same id. Every
action is signed (``signing.py``). A ``review`` action also opens an item on the review log
(``services/review``), where people decide it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from kafka.consumer.fetcher import ConsumerRecord

from services.actions.policy import decide, suppressed
from services.actions.signing import sign
from services.review.log import change_record
from services.review.rules import opened
from services.shared.banks import BankBook
from services.shared.config import TopicSettings
from services.shared.errors import PoisonError
from services.shared.kafka import Outgoing, Result
from services.shared.metrics import ActionsMetrics
from services.shared.schemas import CloudEvent, VerdictIssued, encode, event_id, new_event, now

SOURCE = "urn:eraser:actions"


class RecentIds:
    """The last ``capacity`` ids seen, oldest forgotten first."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, id_: str) -> bool:
        """Remember ``id_``; False if it was already remembered."""
        if id_ in self._ids:
            self._ids.move_to_end(id_)
            return False
        self._ids[id_] = None
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)
        return True


class ActionsProcessor:
    """Applies bank policy to match verdicts and drops repeated actions."""

    model = VerdictIssued

    def __init__(
        self,
        topics: TopicSettings,
        policies: BankBook,
        metrics: ActionsMetrics,
        recent: RecentIds,
        signing_key: bytes,
        signing_key_id: str,
    ) -> None:
        self._topics = topics
        self._policies = policies
        self._metrics = metrics
        self._recent = recent
        self._signing_key = signing_key
        self._signing_key_id = signing_key_id

    def process(self, events: Sequence[CloudEvent[VerdictIssued]]) -> list[Result]:
        """The new actions of each verdict (none for clean and error verdicts)."""
        return [self._actions(event.data) for event in events]

    def on_poison(self, record: ConsumerRecord, error: PoisonError) -> list[Outgoing]:
        """Nothing besides the dead letter: a broken verdict names no content to act on."""
        return []

    def _actions(self, verdict: VerdictIssued) -> list[Outgoing]:
        if suppressed(verdict, self._policies):
            self._metrics.suppressed.inc()
            return []
        outgoing = []
        for action in decide(verdict, self._policies, now()):
            id_ = event_id("action", action.content_id, action.entry_id, action.action)
            if not self._recent.add(id_):
                self._metrics.repeats_dropped.inc()
                continue
            self._metrics.actions.labels(action.action).inc()
            event = encode(new_event(action, id=id_, source=SOURCE))
            signed = sign(event, self._signing_key, self._signing_key_id)
            outgoing.append(
                Outgoing(self._topics.actions, action.content_id.encode(), signed, "action")
            )
            if action.action == "review":
                item = opened(action, id_, action.signal)
                outgoing.append(change_record(self._topics.review, "opened", SOURCE, 0, item)[0])
        return outgoing
