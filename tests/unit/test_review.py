"""Review rules and the review log's fold, without a broker."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from services.review import rules
from services.review.board import ReviewBoard
from services.review.log import ReviewLog, change_record
from services.review.metrics import ReviewMetrics
from services.review.records import ReviewItem
from services.shared.schemas import ActionDecided
from tests.records import record

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def item(item_id="item-1", signal="pdq", at=T0) -> ReviewItem:
    action = ActionDecided(
        action="review",
        content_id=f"post-{item_id}",
        upload_id="u",
        bank="kids",
        entry_id="e1",
        signal=signal,
        distance=20,
        reason="pdq distance 20 > auto threshold 8",
        decided_at=at,
    )
    return rules.opened(action, item_id, signal)


def claimed(by="ann", role="reviewer", at=T0):
    return rules.claim(item(), by, role, at, 600)


def test_a_claim_keeps_others_out_until_it_lapses():
    held = claimed()
    assert not rules.available(held, "bob", "reviewer", T0 + timedelta(seconds=599))
    assert rules.available(held, "bob", "reviewer", T0 + timedelta(seconds=601))
    with pytest.raises(rules.Refused):
        rules.claim(held, "bob", "reviewer", T0, 600)


def test_only_the_holder_decides_and_a_reason_goes_with_it():
    with pytest.raises(rules.Refused):
        rules.decide(claimed(), "bob", "reviewer", "confirm", "same", T0, 1)
    lapsed = T0 + timedelta(seconds=601)
    with pytest.raises(rules.Refused):
        rules.decide(claimed(), "ann", "reviewer", "confirm", "same", lapsed, 1)
    done = rules.decide(claimed(), "ann", "reviewer", "confirm", "same", T0, 1)
    assert done.status == "confirmed" and done.decisions[0].reason == "same"
    with pytest.raises(rules.Refused):
        rules.decide(done, "lee", "lead", "reject", "no", T0, 1)


def test_two_reviewers_must_agree_and_disagreement_goes_to_a_lead():
    first = rules.decide(claimed(), "ann", "reviewer", "confirm", "same", T0, 2)
    assert first.status == "second-review"
    assert not rules.available(first, "ann", "reviewer", T0), "not the same reviewer twice"
    agreed = rules.decide(claimed_from(first, "bob"), "bob", "reviewer", "confirm", "yes", T0, 2)
    assert agreed.status == "confirmed"
    split = rules.decide(claimed_from(first, "bob"), "bob", "reviewer", "reject", "no", T0, 2)
    assert split.status == "escalated" and rules.overturns(split)
    assert not rules.available(split, "carl", "reviewer", T0)
    assert rules.available(split, "lee", "lead", T0)
    final = rules.decide(split, "lee", "lead", "reject", "not her", T0, 2)
    assert final.status == "rejected"


def claimed_from(current, reviewer):
    return rules.claim(current, reviewer, "reviewer", T0, 600)


def test_a_skip_needs_the_claim_and_the_skipper_is_not_offered_it_again():
    skipped = rules.skip(claimed(), "ann", "cannot tell at this size", T0)
    assert skipped.claim is None and skipped.skips[0].reason == "cannot tell at this size"
    assert not rules.available(skipped, "ann", "reviewer", T0)
    assert rules.available(skipped, "bob", "reviewer", T0)


def test_a_lead_can_release_anyone_and_decide_without_a_claim():
    with pytest.raises(rules.Refused):
        rules.release(claimed(), "bob", "reviewer")
    assert rules.release(claimed(), "lee", "lead").claim is None
    assert rules.decide(claimed(), "lee", "lead", "escalate", "legal", T0, 1).status == "escalated"


def change(base, after, kind="claimed", offset=0):
    out, write_id = change_record("review", kind, "ann", base, after)
    return record(out.value, key=out.key, offset=offset), write_id


def test_the_first_write_of_a_version_wins_and_a_redelivered_open_changes_nothing():
    board, opened = ReviewBoard({}), item()
    board.apply(change(0, opened, "opened")[0])
    ann = rules.claim(opened, "ann", "reviewer", T0, 600)
    bob = rules.claim(opened, "bob", "reviewer", T0, 600)
    first, ann_id = change(1, ann, offset=1)
    second, bob_id = change(1, bob, offset=2)
    board.apply(first)
    board.apply(second)
    board.apply(change(0, opened, "opened", offset=3)[0])
    assert board.outcome(ann_id, 0) is True
    assert board.outcome(bob_id, 0) is False
    assert board.get("item-1").claim.reviewer == "ann"


def test_after_compaction_the_oldest_surviving_record_stands():
    board = ReviewBoard({})
    decided = rules.decide(claimed(), "ann", "reviewer", "reject", "no", T0, 1)
    board.apply(change(2, decided, "decided", offset=9)[0])
    assert board.get("item-1").status == "rejected"


def test_the_queue_is_by_priority_then_oldest_first():
    board = ReviewBoard({"keypoints": 0, "pdq": 1, "embedding": 3})
    for n, (signal, minutes) in enumerate(
        [("embedding", 0), ("pdq", 5), ("pdq", 1), ("keypoints", 9)]
    ):
        opened = item(f"i{n}", signal, T0 + timedelta(minutes=minutes))
        board.apply(change(0, opened, "opened", offset=n)[0])
    order = [i.item_id for i in board.queue("ann", "reviewer", T0 + timedelta(hours=1))]
    assert order == ["i3", "i2", "i1", "i0"]


class FakeProducer:
    """Sends to a board as a one-partition log would: in order, one record at a time."""

    def __init__(self, board):
        self.board, self.offset, self.lock = board, 0, threading.Lock()

    def send(self, topic, key, value):
        with self.lock:
            self.offset += 1
            self.board.apply(record(value, key=key, offset=self.offset))
        return self

    def get(self, timeout):
        return None


def test_racing_claims_of_one_item_have_one_winner_and_the_log_ends_with_its_state():
    board = ReviewBoard({})
    producer = FakeProducer(board)
    log = ReviewLog(producer, "review", board, timeout_s=1)
    opened = item()
    board.apply(change(0, opened, "opened")[0])
    won = {}

    def take(name):
        won[name] = log.write(
            "claimed", name, opened, rules.claim(opened, name, "reviewer", T0, 60)
        )

    threads = [threading.Thread(target=take, args=(n,)) for n in ("ann", "bob", "carl")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (winner,) = [name for name, ok in won.items() if ok]
    assert board.get("item-1").claim.reviewer == winner


def test_backlog_and_oldest_age_are_computed_per_queue_when_scraped():
    board = ReviewBoard({})
    for n, minutes in enumerate([0, 30]):
        board.apply(change(0, item(f"i{n}", at=T0 + timedelta(minutes=minutes)), "opened")[0])
    metrics = ReviewMetrics(open_items=board.open_items, clock=lambda: T0 + timedelta(hours=1))
    samples = {
        (s.name, s.labels.get("queue")): s.value
        for family in metrics.exported.collect()
        for s in family.samples
    }
    assert samples[("eraser_review_backlog_items", "pdq")] == 2
    assert samples[("eraser_review_oldest_item_age_seconds", "pdq")] == 3600
    assert samples[("eraser_review_backlog_items", "embedding")] == 0
