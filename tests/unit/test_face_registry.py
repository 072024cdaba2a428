"""Faces in the matcher: searchable at once, withdrawn at once, kept through snapshots."""

from __future__ import annotations

import json

import numpy as np
import pytest

from services.matcher.generation import Entry
from services.matcher.handler import Found, MatcherProcessor
from services.matcher.registry import Registry
from services.matcher.snapshots import load_latest
from services.shared.banks import BankBook
from services.shared.config import PolicySettings, TopicSettings
from services.shared.metrics import MatcherMetrics
from services.shared.schemas import (
    BankPolicy,
    EntryRegistered,
    FaceBox,
    FaceSeen,
    Signals,
    VerdictIssued,
    VideoFrame,
    VideoHashed,
    embedding_to_text,
    new_event,
)
from tests.unit.test_matcher import BASE, flip, hashed


def unit(vector):
    return (vector / np.linalg.norm(vector)).astype(np.float32)


@pytest.fixture
def people():
    rng = np.random.default_rng(5)
    return [unit(rng.normal(size=128)) for _ in range(4)]


def near(vector, cosine, seed=0):
    """A unit vector at exactly ``cosine`` to ``vector``."""
    noise = np.random.default_rng(seed).normal(size=128)
    noise -= (noise @ vector) * vector
    return unit(cosine * vector + np.sqrt(1 - cosine**2) * unit(noise))


def face_entry(entry_id, vector, subject="child-1", bank="kids"):
    return EntryRegistered(
        entry_id=entry_id,
        bank=bank,
        signals=Signals(face=embedding_to_text(vector)),
        subject=subject,
    )


def photo_entry(entry_id, subject="child-1", bank="kids"):
    return EntryRegistered(
        entry_id=entry_id, bank=bank, signals=Signals(sha256="ab" * 32), subject=subject
    )


def upload_with(*vectors):
    faces = [
        FaceSeen(box=FaceBox(x=10 * n, y=0, width=80, height=90), score=0.9,
                 embedding=embedding_to_text(v))
        for n, v in enumerate(vectors)
    ]  # fmt: skip
    return hashed().model_copy(update={"faces": faces})


def test_faces_are_found_withdrawn_and_kept_through_compaction_and_restart(people, tmp_path):
    registry = Registry(snapshot_dir=tmp_path)
    registry.register(face_entry("f1", people[0]))
    registry.register(photo_entry("p1"))
    query = [np.stack([near(people[0], 0.7)])]
    assert [(n, e.entry_id) for n, e, _ in registry.faces(query, 0.6)[0]] == [(0, "f1")]
    assert registry.faces(query, 0.75) == [[]]
    registry.compact({0: 2}, background=False)
    restarted = Registry(load_latest(tmp_path), tmp_path)
    (hits,) = restarted.faces(query, 0.6)
    assert [e.entry_id for _, e, _ in hits] == ["f1"] and hits[0][2] == pytest.approx(0.7, 1e-2)
    assert restarted.subject_of(Entry("f1", "kids")) == "child-1"
    assert restarted.subject_of(Entry("p1", "kids")) == "child-1"
    assert restarted.counts()["face"] == 1
    restarted.withdraw("f1")
    assert restarted.faces(query, 0.6) == [[]]
    assert restarted.subject_of(Entry("f1", "kids")) is None


def matcher(registry, **policy):
    banks = {"kids": BankPolicy(**{"faces": True, **policy}), "plain": BankPolicy()}
    return MatcherProcessor(
        TopicSettings(), BankBook(PolicySettings(banks=banks)), registry, MatcherMetrics()
    )


def test_a_face_matches_only_in_a_bank_with_faces_at_its_threshold(people):
    registry = Registry()
    registry.register(face_entry("f1", people[0]))
    registry.register(face_entry("f2", people[0], bank="plain"))
    upload = upload_with(near(people[1], 0.9), near(people[0], 0.6, 1))
    processor = matcher(registry, face_threshold=0.5)
    hits = processor._faces([upload])[0]
    (match,) = processor.matches(upload, Found({}, faces=hits))
    assert (match.entry_id, match.signal, match.distance, match.subject) == (
        "f1",
        "face",
        40,
        "child-1",
    )
    assert match.face.box.x == 10 and match.face.similarity == pytest.approx(0.6, abs=1e-2)
    assert matcher(registry, face_threshold=0.65).matches(upload, Found({}, faces=hits)) == []


def test_a_bank_can_ask_for_several_of_a_subjects_faces_to_agree(people):
    registry = Registry()
    registry.register(face_entry("f1", people[0]))
    registry.register(face_entry("f2", near(people[0], 0.8, 2)))
    registry.register(face_entry("g1", people[2], subject="child-2"))
    upload = upload_with(near(people[0], 0.75, 3), near(people[2], 0.75, 4))
    processor = matcher(registry, face_threshold=0.45, face_agreement=2)
    found = processor.matches(upload, Found({}, faces=processor._faces([upload])[0]))
    assert {m.entry_id for m in found} == {"f1", "f2"}  # child-2 has one face registered


def test_image_matches_carry_their_subject_when_a_face_matched(people):
    registry = Registry()
    registry.register(face_entry("f1", people[0]))
    registry.register(photo_entry("p1"))
    registry.register(photo_entry("p2", subject=None))
    upload = upload_with(people[0]).model_copy(update={"sha256": "ab" * 32})
    processor = matcher(registry)
    found = processor.matches(upload, Found({}, faces=processor._faces([upload])[0]))
    assert {(m.entry_id, m.signal, m.subject) for m in found} == {
        ("f1", "face", "child-1"),
        ("p1", "sha256", "child-1"),
        ("p2", "sha256", None),
    }


def test_a_face_on_a_video_key_frame_matches_and_says_when_it_was_shown(people):
    registry = Registry()
    registry.register(face_entry("f1", people[0]))
    registry.register(photo_entry("p1"))

    def frame(number, *vectors):
        faces = upload_with(*vectors).faces
        return VideoFrame(number=number, timestamp=number / 10, quality=90,
                          pdq=[flip(BASE, 100 + number)] * 2, faces=faces)  # fmt: skip

    frames = [frame(0), frame(10, people[1]), frame(20, near(people[0], 0.7)), frame(30)]
    video = VideoHashed(
        frame_rate=10, frames_decoded=40, duration_s=4, seconds_per_hash=1, frames=frames
    )
    upload = hashed().model_copy(update={"pdq": [], "video": video, "sha256": "ab" * 32})
    (result,) = matcher(registry).process([new_event(upload, id="u", source="t")])
    verdict = VerdictIssued.model_validate(json.loads(result[0].value)["data"])
    assert {(m.entry_id, m.signal, m.subject, tuple(m.timestamps)) for m in verdict.matches} == {
        ("f1", "face", "child-1", (2.0,)),  # the face on the frame shown at 2 s
        ("p1", "sha256", "child-1", ()),  # named, so the policy sees the two agree
    }
