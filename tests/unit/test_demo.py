"""The demo's own bookkeeping: when it has seen everything the pipeline owes it."""

from datetime import UTC, datetime

from services.demo import DemoUpload, _shortfall
from services.shared.schemas import ActionDecided, Match, VerdictIssued

T = datetime(2026, 1, 1, tzinfo=UTC)
SENT = {
    "u1": DemoUpload("post-01", "copy", b"", "astronaut.png"),
    "u2": DemoUpload("post-02", "unrelated", b"", None),
}


def _verdict(upload_id: str, content_id: str, verdict: str) -> VerdictIssued:
    matches = [Match(bank="demo", entry_id="e", signal="pdq", distance=3)]
    return VerdictIssued(
        upload_id=upload_id,
        content_id=content_id,
        verdict=verdict,
        scanned_at=T,
        matches=matches if verdict == "match" else [],
    )


def _action(content_id: str) -> ActionDecided:
    return ActionDecided(
        action="remove",
        content_id=content_id,
        upload_id="u1",
        bank="demo",
        entry_id="e",
        signal="pdq",
        distance=3,
        reason="close",
        decided_at=T,
    )


def test_a_match_without_its_action_is_a_shortfall_even_with_every_verdict_in():
    verdicts = {"u1": _verdict("u1", "post-01", "match"), "u2": _verdict("u2", "post-02", "clean")}
    assert _shortfall(SENT, verdicts, []) == ["1 match verdicts got no action"]
    assert _shortfall(SENT, verdicts, [_action("post-01")]) == []


def test_a_missing_verdict_is_a_shortfall():
    verdicts = {"u2": _verdict("u2", "post-02", "clean")}
    assert _shortfall(SENT, verdicts, []) == ["1 uploads got no verdict"]
