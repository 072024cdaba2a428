import json
from datetime import UTC, datetime

import numpy as np
import pytest

from services.matcher.handler import Found, MatcherProcessor
from services.matcher.registry import Registry
from services.shared.banks import BankBook
from services.shared.config import PolicySettings, TopicSettings
from services.shared.errors import MalformedEventError
from services.shared.metrics import MatcherMetrics
from services.shared.schemas import (
    BankPolicy,
    EntryRegistered,
    MediaHashed,
    Signals,
    VerdictIssued,
    embedding_to_text,
    new_event,
)
from tests.records import record

T = datetime(2026, 11, 25, tzinfo=UTC)
BASE = "00" * 32


def flip(code: str, bits: int) -> str:
    """``code`` with its first ``bits`` bits inverted."""
    value = int(code, 16) ^ (((1 << bits) - 1) << (256 - bits))
    return f"{value:064x}"


def registration(entry_id, bank="kids", pdq=(), sha256=None):
    return EntryRegistered(
        entry_id=entry_id, bank=bank, signals=Signals(pdq=list(pdq), sha256=sha256, md5=None)
    )


def hashed(pdq=BASE, quality=100, sha256="1" * 64, upload_id="up-1"):
    rotations = [pdq] + [flip(BASE, 128)] * 7
    return MediaHashed(
        upload_id=upload_id,
        content_id="c-1",
        uploaded_at=T,
        sha256=sha256,
        md5="2" * 32,
        pdq=rotations,
        pdq_quality=quality,
        width=1,
        height=1,
        format="PNG",
    )


def processor(registry, **banks):
    policies = BankBook(PolicySettings(banks={name: BankPolicy(**p) for name, p in banks.items()}))
    return MatcherProcessor(TopicSettings(), policies, registry, MatcherMetrics())


def verdict_of(result) -> VerdictIssued:
    (out,) = result
    return VerdictIssued.model_validate(json.loads(out.value)["data"])


def test_registry_replaces_and_withdraws_entries():
    registry = Registry()
    registry.register(registration("e1", pdq=[BASE], sha256="a" * 64))
    registry.register(registration("e1", pdq=[flip(BASE, 100)], sha256="b" * 64))
    assert registry.counts() == {"pdq": 1, "sha256": 1, "md5": 0, "embedding": 0, "face": 0}
    assert registry.exact("sha256", "a" * 64) == []
    assert [e.entry_id for e in registry.exact("sha256", "b" * 64)] == ["e1"]
    assert registry.withdraw("e1") is True
    assert registry.withdraw("e1") is False
    assert registry.counts() == {"pdq": 0, "sha256": 0, "md5": 0, "embedding": 0, "face": 0}


def test_near_reports_each_entry_once_with_its_smallest_distance():
    registry = Registry()
    registry.register(registration("e1", pdq=[flip(BASE, 5), flip(BASE, 9)]))
    (found,) = registry.near([[BASE, flip(BASE, 2)]], 31)
    assert {e.entry_id: d for e, d in found.items()} == {"e1": 3}


def test_a_close_pdq_hash_matches_and_a_far_one_is_clean():
    registry = Registry()
    registry.register(registration("e1", pdq=[flip(BASE, 31)]))
    matcher = processor(registry)
    last_40_bits = f"{(1 << 40) - 1:064x}"
    near, far = hashed(), hashed(pdq=last_40_bits, upload_id="up-2")
    events = [new_event(h, id=h.upload_id, source="t") for h in (near, far)]
    first, second = (verdict_of(r) for r in matcher.process(events))
    assert first.verdict == "match"
    assert [(m.entry_id, m.signal, m.distance) for m in first.matches] == [("e1", "pdq", 31)]
    assert second.verdict == "clean"


def test_any_rotation_of_the_upload_can_match():
    registry = Registry()
    registry.register(registration("e1", pdq=[flip(BASE, 128)]))
    (result,) = processor(registry).process([new_event(hashed(), id="u", source="t")])
    assert verdict_of(result).matches[0].distance == 0


def test_bank_thresholds_quality_floors_and_disabled_banks_apply():
    registry = Registry()
    registry.register(registration("strict-1", bank="strict", pdq=[flip(BASE, 10)]))
    registry.register(registration("picky-1", bank="picky", pdq=[BASE]))
    registry.register(registration("off-1", bank="off", pdq=[BASE], sha256="1" * 64))
    matcher = processor(
        registry,
        strict={"pdq_threshold": 8, "auto_threshold": 8},
        picky={"quality_floor": 90},
        off={"enabled": False},
    )
    assert matcher.matches(hashed(quality=80), Found(registry.near([hashed().pdq], 31)[0])) == []
    assert [
        m.entry_id
        for m in matcher.matches(hashed(quality=95), Found(registry.near([hashed().pdq], 31)[0]))
    ] == ["picky-1"]


def test_equal_sha256_matches_whatever_the_pdq():
    registry = Registry()
    registry.register(registration("e1", sha256="1" * 64))
    (result,) = processor(registry).process([new_event(hashed(quality=0), id="u", source="t")])
    assert [(m.entry_id, m.signal) for m in verdict_of(result).matches] == [("e1", "sha256")]


def test_a_broken_hashes_record_still_gets_an_error_verdict():
    raw = json.dumps(
        {"type": "eraser.media.hashed.v1", "data": {"upload_id": "up-9", "content_id": "c-9"}}
    ).encode()
    broken = record(raw, topic="eraser.hashes", key=b"c-9")
    (out,) = processor(Registry()).on_poison(broken, MalformedEventError("invalid event"))
    verdict = verdict_of([out])
    assert (verdict.upload_id, verdict.verdict, verdict.error) == ("up-9", "error", "invalid event")
    assert processor(Registry()).on_poison(record(b"junk"), MalformedEventError("x")) == []


@pytest.mark.parametrize("quality", [49, 50])
def test_the_default_quality_floor_is_fifty(quality):
    registry = Registry()
    registry.register(registration("e1", pdq=[BASE]))
    (result,) = processor(registry).process(
        [new_event(hashed(quality=quality), id="u", source="t")]
    )
    assert verdict_of(result).verdict == ("match" if quality >= 50 else "clean")


def unit(vector):
    vector = np.asarray(vector, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def embedded(entry_id, vectors, pdq=(), bank="kids"):
    return EntryRegistered(
        entry_id=entry_id,
        bank=bank,
        signals=Signals(pdq=list(pdq), embedding=[embedding_to_text(v) for v in vectors]),
    )


def test_an_embedding_close_enough_matches_alone_and_a_weaker_one_needs_pdq_to_agree():
    base = unit(np.arange(1280) % 7)
    near = unit(base + 0.3 * unit(np.arange(1280) % 5 - 2))
    cosine = float(base @ near)
    assert 0.9 < cosine < 0.999
    registry = Registry()
    registry.register(embedded("alone", [base]))
    registry.register(embedded("agree", [base], pdq=[flip(BASE, 60)]))
    matcher = processor(
        registry, kids={"embedding_threshold": 0.999, "agreement_embedding_threshold": 0.9}
    )
    upload = hashed(pdq=BASE).model_copy(update={"embeddings": [embedding_to_text(near)]})
    (result,) = matcher.process([new_event(upload, id="u", source="t")])
    signals = {(m.entry_id, m.signal) for m in verdict_of(result).matches}
    assert signals == {("agree", "embedding"), ("agree", "pdq")}
    loose = processor(registry, kids={"embedding_threshold": cosine - 0.01})
    (result,) = loose.process([new_event(upload, id="u", source="t")])
    assert {m.entry_id for m in verdict_of(result).matches} == {"alone", "agree"}


def test_withdrawn_embeddings_stop_matching():
    vector = unit(np.ones(1280))
    registry = Registry()
    registry.register(embedded("e1", [vector]))
    assert [e.entry_id for e in registry.similar([vector[None]], 0.9)[0]] == ["e1"]
    registry.withdraw("e1")
    assert registry.similar([vector[None]], 0.9) == [{}]


def test_a_copy_under_stickers_is_found_by_its_keypoints_and_unrelated_photos_are_not():
    from PIL import ImageDraw

    from services.ingest.keypoints import KeypointExtractor
    from services.shared.keypoints import keypoints_to_text
    from tests.images import photo

    extractor = KeypointExtractor()
    cat = photo("chelsea.png")
    covered = cat.copy()
    draw = ImageDraw.Draw(covered)
    draw.ellipse((40, 30, 200, 190), fill=(250, 200, 0))
    draw.rectangle((260, 150, 420, 280), fill=(20, 20, 200))

    def text(image):
        return keypoints_to_text(extractor.extract(np.asarray(image)))

    vector = unit(np.arange(1280) % 7)
    registry = Registry()
    registry.register(
        EntryRegistered(
            entry_id="cat",
            bank="kids",
            signals=Signals(keypoints=text(cat), embedding=[embedding_to_text(vector)]),
        )
    )
    # Embeddings only shortlist the entry (cosine 0.6: no embedding match on their own).
    other = unit(np.arange(1280) % 3)
    shortlisted = unit(vector + 1.1 * unit(other - (other @ vector) * vector))
    assert 0.5 < float(shortlisted @ vector) < 0.8
    uploads = [
        hashed(pdq=flip(BASE, 120), upload_id=name).model_copy(
            update={"embeddings": [embedding_to_text(shortlisted)], "keypoints": text(image)}
        )
        for name, image in (("covered", covered), ("coffee", photo("coffee.png")))
    ]
    results = processor(registry).process(
        [new_event(u, id=u.upload_id, source="t") for u in uploads]
    )
    (match,) = verdict_of(results[0]).matches
    assert (match.entry_id, match.signal) == ("cat", "keypoints")
    assert 256 - match.distance >= BankPolicy().keypoint_threshold
    assert verdict_of(results[1]).verdict == "clean"


def test_fewer_keypoints_match_only_with_an_embedding_that_nearly_matches():
    from services.matcher.generation import Entry

    registry = Registry()
    registry.register(registration("e1", pdq=[flip(BASE, 200)]))
    matcher = processor(registry, kids={})
    entry = Entry("e1", "kids")

    def signals(cosine, count):
        found = Found({}, {entry: cosine} if cosine else {}, {entry: count})
        return sorted(m.signal for m in matcher.matches(hashed(), found))

    assert signals(0.85, 12) == ["embedding", "keypoints"]  # two weaker signals agree
    assert signals(0.70, 12) == []  # the embedding is too far to count
    assert signals(None, 12) == []
    assert signals(None, 25) == ["keypoints"]  # enough keypoints alone
    assert signals(0.85, 25) == ["keypoints"]  # the cosine adds nothing to them
    with pytest.raises(ValueError, match="agreement_keypoint_threshold"):
        BankPolicy(keypoint_threshold=8)
