"""Writes to the review log and learns whether each write won (the board decides, everywhere alike).

A write that lost to another replica's change of the same item is followed by a restatement of
the winner's state, so the latest record of every item (all compaction keeps) is the true one.
"""

from __future__ import annotations

import uuid

from kafka import KafkaProducer

from services.review.board import ReviewBoard
from services.review.records import Change, PreferencesSet, ReviewChanged, ReviewItem
from services.review.rules import Refused
from services.shared.kafka import Outgoing
from services.shared.schemas import encode, new_event

SOURCE = "urn:eraser:review"


class LogUnavailable(Refused):
    """A write was not seen back on the review log in time; nothing is known to have changed."""


def change_record(
    topic: str, change: Change, actor: str, base_version: int, item: ReviewItem
) -> tuple[Outgoing, str]:
    """The record of a change, and its write id."""
    write_id = str(uuid.uuid4())
    data = ReviewChanged(
        change=change, actor=actor, write_id=write_id, base_version=base_version, item=item
    )
    return Outgoing.event(
        topic, item.item_id, new_event(data, id=write_id, source=SOURCE), "review"
    ), write_id


class ReviewLog:
    """Publishes review changes and preferences, and waits for their outcome on the board."""

    def __init__(
        self, producer: KafkaProducer, topic: str, board: ReviewBoard, timeout_s: float = 10.0
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._board = board
        self._timeout_s = timeout_s

    def write(self, change: Change, actor: str, before: ReviewItem, after: ReviewItem) -> bool:
        """Publish a change made from ``before``; whether it won.

        Raises:
            LogUnavailable: the write was not seen back in time.
        """
        won = self._publish(change, actor, before.version, after)
        if not won:
            self.restate(after.item_id)
        return won

    def set_blur(self, reviewer: str, blur: bool) -> None:
        """Publish a reviewer's blur setting."""
        event = new_event(
            PreferencesSet(reviewer=reviewer, blur=blur), id=str(uuid.uuid4()), source=SOURCE
        )
        self._producer.send(self._topic, key=f"prefs/{reviewer}".encode(), value=encode(event)).get(
            timeout=self._timeout_s
        )

    def _publish(self, change: Change, actor: str, base_version: int, item: ReviewItem) -> bool:
        out, write_id = change_record(self._topic, change, actor, base_version, item)
        self._producer.send(out.topic, key=out.key, value=out.value).get(timeout=self._timeout_s)
        won = self._board.outcome(write_id, self._timeout_s)
        if won is None:
            raise LogUnavailable("the review log did not answer in time; try again")
        return won

    def restate(self, item_id: str) -> None:
        """Publish the board's state of an item again, so the last record of it is the winner's."""
        for _ in range(3):
            current = self._board.get(item_id)
            if current is None:
                return
            restated = current.model_copy(update={"version": current.version + 1})
            if self._publish("restated", "review-log", current.version, restated):
                return
