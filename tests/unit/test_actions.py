import json
from datetime import UTC, datetime

from services.actions.handler import ActionsProcessor, RecentIds
from services.actions.policy import decide, strongest_per_entry
from services.actions.signing import verify
from services.review.evidence import measures
from services.shared.banks import BankBook
from services.shared.config import PolicySettings, TopicSettings
from services.shared.metrics import ActionsMetrics
from services.shared.schemas import (
    BankPolicy,
    FaceBox,
    FaceHit,
    Match,
    VerdictIssued,
    new_event,
)
from services.streams import parse_any

T = datetime(2026, 11, 25, tzinfo=UTC)
KEY = b"0123456789abcdef0123456789abcdef"


def verdict(*matches, content_id="c-1", upload_id="u-1"):
    return VerdictIssued(
        upload_id=upload_id,
        content_id=content_id,
        verdict="match" if matches else "clean",
        matches=list(matches),
        scanned_at=T,
    )


def m(entry, signal="pdq", distance=0, bank="kids"):
    return Match(bank=bank, entry_id=entry, signal=signal, distance=distance)


POLICIES = BankBook(
    PolicySettings(
        banks={
            "kids": BankPolicy(auto_threshold=10, action="remove"),
            "stock": BankPolicy(action="hide"),
            "known-ok": BankPolicy(negative=True),
        }
    )
)


def test_exact_and_close_matches_get_the_bank_action_and_weaker_ones_review():
    actions = decide(
        verdict(
            m("a", "sha256"),
            m("b", distance=10),
            m("c", distance=11),
            m("d", distance=3, bank="stock"),
        ),
        POLICIES,
        T,
    )
    assert [(a.entry_id, a.action) for a in actions] == [
        ("a", "remove"),
        ("b", "remove"),
        ("c", "review"),
        ("d", "hide"),
    ]
    assert "auto threshold 10" in actions[2].reason


def test_the_strongest_match_of_an_entry_decides():
    best = strongest_per_entry([m("a", distance=20), m("a", "md5"), m("a", distance=4)])
    assert [(x.signal, x.distance) for x in best] == [("md5", 0)]
    assert strongest_per_entry([m("a", distance=20), m("a", distance=4)])[0].distance == 4


def test_clean_verdicts_lead_to_no_action():
    assert decide(verdict(), POLICIES, T) == []


def _processor():
    return ActionsProcessor(TopicSettings(), POLICIES, ActionsMetrics(), RecentIds(100), KEY, "k1")


def test_a_repeated_decision_is_published_once_with_a_stable_id():
    processor = _processor()
    first = processor.process([new_event(verdict(m("a", "sha256")), id="v1", source="t")])[0]
    again = processor.process(
        [new_event(verdict(m("a", "sha256"), upload_id="u-2"), id="v2", source="t")]
    )[0]
    assert len(first) == 1 and again == []
    other = _processor().process([new_event(verdict(m("a", "sha256")), id="v1", source="t")])[0]
    assert json.loads(other[0].value)["id"] == json.loads(first[0].value)["id"]
    assert first[0].key == b"c-1" and first[0].topic == "eraser.actions"


def test_recent_ids_forget_the_oldest():
    recent = RecentIds(2)
    assert [recent.add(x) for x in "abca"] == [True, True, True, True]
    assert recent.add("c") is False


def _signed_action():
    (out,) = _processor().process([new_event(verdict(m("a", "sha256")), id="v", source="t")])[0]
    return out.value


def test_actions_are_signed_and_verify_with_the_right_key():
    signed = _signed_action()
    assert json.loads(signed)["sigkeyid"] == "k1"
    assert verify(signed, {"k1": KEY})
    assert parse_any(signed).data.action == "remove"  # still a valid action event


def test_a_tampered_action_fails_verification():
    document = json.loads(_signed_action())
    for field, value in (("action", "hide"), ("content_id", "someone-else")):
        tampered = {**document, "data": {**document["data"], field: value}}
        assert not verify(json.dumps(tampered).encode(), {"k1": KEY})
    assert not verify(json.dumps({**document, "id": "other"}).encode(), {"k1": KEY})


def test_a_wrong_or_unknown_key_fails_verification():
    signed = _signed_action()
    assert not verify(signed, {"k1": b"another-key-of-sixteen+"})
    assert not verify(signed, {"k2": KEY})
    unsigned = {k: v for k, v in json.loads(signed).items() if k != "signature"}
    assert not verify(json.dumps(unsigned).encode(), {"k1": KEY})
    assert not verify(b"not json", {"k1": KEY})


def test_verification_does_not_depend_on_key_order_or_whitespace():
    document = json.loads(_signed_action())
    reordered = json.dumps(dict(reversed(list(document.items()))), indent=2).encode()
    assert verify(reordered, {"k1": KEY})


def test_a_match_in_a_negative_bank_vetoes_every_action():
    assert (
        decide(verdict(m("a", "sha256"), m("ok-1", distance=5, bank="known-ok")), POLICIES, T) == []
    )
    processor = _processor()
    vetoed = verdict(m("a", "sha256"), m("ok-1", distance=5, bank="known-ok"))
    assert processor.process([new_event(vetoed, id="v", source="t")]) == [[]]


def test_embedding_alone_goes_to_review_and_agreeing_signals_act():
    alone = decide(verdict(m("a", "embedding", 5)), POLICIES, T)
    agreeing = decide(verdict(m("b", "embedding", 12), m("b", "pdq", 40)), POLICIES, T)
    assert [(a.action, a.signal) for a in alone] == [("review", "embedding")]
    assert [(a.action, a.signal, a.distance) for a in agreeing] == [("remove", "pdq", 40)]
    assert "agree" in agreeing[0].reason


def test_keypoints_alone_go_to_review_and_with_another_signal_act():
    alone = decide(verdict(m("a", "keypoints", 256 - 40)), POLICIES, T)
    with_embedding = decide(verdict(m("b", "embedding", 15), m("b", "keypoints", 200)), POLICIES, T)
    with_pdq = decide(verdict(m("c", "pdq", 30), m("c", "keypoints", 230)), POLICIES, T)
    assert [(a.action, a.signal) for a in alone] == [("review", "keypoints")]
    assert "40 keypoints agree" in alone[0].reason
    assert [(a.action, a.signal) for a in with_embedding] == [("remove", "keypoints")]
    assert [(a.action, a.signal) for a in with_pdq] == [("remove", "pdq")]


def face(entry, subject, distance=40, bank="kids"):
    return m(entry, "face", distance, bank).model_copy(update={"subject": subject})


def test_a_face_match_alone_is_never_acted_on_unreviewed_whatever_the_bank_says():
    actions = decide(verdict(face("f1", "child-1", distance=2)), POLICIES, T)
    assert [(a.entry_id, a.action) for a in actions] == [("f1", "review")]
    assert "a person must confirm" in actions[0].reason


def test_a_face_and_a_photo_of_the_same_subject_agree_and_get_the_bank_action():
    same = m("p1", "pdq", distance=20).model_copy(update={"subject": "child-1"})
    other = m("p2", "embedding", distance=5).model_copy(update={"subject": "child-2"})
    actions = decide(verdict(face("f1", "child-1"), same, other), POLICIES, T)
    assert {(a.entry_id, a.action) for a in actions} == {
        ("f1", "remove"),  # face and photo of child-1 agree
        ("p1", "remove"),  # a PDQ distance over the auto threshold, but the face agrees
        ("p2", "review"),  # an embedding alone, and no face of child-2 matched
    }
    assert "same subject agree" in next(a for a in actions if a.entry_id == "f1").reason


def test_a_face_action_says_which_face_of_the_upload():
    box = FaceBox(x=40, y=30, width=120, height=150)
    hit = face("f1", "child-1").model_copy(update={"face": FaceHit(box=box, similarity=0.6)})
    (action,) = decide(verdict(hit), POLICIES, T)
    assert action.face == FaceHit(box=box, similarity=0.6)
    assert measures(action, BankPolicy(faces=True)) == [
        (
            "face",
            "similarity 0.60, face at (40, 30), 120 x 150 px",
            "matches at >= 0.45; alone, always reviewed",
        )
    ]


def test_fewer_keypoints_with_an_embedding_go_to_review_and_enough_with_pdq_are_acted_on():
    def action(*matches):
        verdict = VerdictIssued(
            upload_id="u",
            content_id="c",
            verdict="match",
            matches=[Match(bank="kids", entry_id="e", signal=s, distance=d) for s, d in matches],
            scanned_at=T,
        )
        (decided,) = decide(verdict, BankBook(PolicySettings()), T)
        return decided.action

    assert action(("keypoints", 256 - 12), ("embedding", 15)) == "review"
    assert action(("keypoints", 256 - 40), ("embedding", 5)) == "remove"
    assert action(("keypoints", 256 - 12)) == "review"


def test_a_video_matching_a_registered_video_acts_as_pdq_does_by_its_median_frame_distance():
    close = Match(
        bank="kids",
        entry_id="v1",
        signal="vpdq",
        distance=12,
        timestamps=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
        match_percent=87.5,
    )
    far = close.model_copy(update={"entry_id": "v2", "distance": 28})
    actions = decide(verdict(close, far), BankBook(PolicySettings()), T)
    assert [(a.entry_id, a.action, a.signal) for a in actions] == [
        ("v1", "remove", "vpdq"),
        ("v2", "review", "vpdq"),
    ]
    assert actions[0].reason == (
        "vpdq: 87.5% of the video's frames matched, median distance 12 <= auto threshold 24; "
        "in the video at 1.0, 2.0, 3.0, 4.0, 5.0 s and 2 more"
    )


def test_a_photo_found_in_a_video_says_when():
    shown = m("p1", "pdq", 10).model_copy(update={"timestamps": [3.0, 4.0]})
    (action,) = decide(verdict(shown), BankBook(PolicySettings()), T)
    assert action.action == "remove" and action.reason.endswith("in the video at 3.0, 4.0 s")
