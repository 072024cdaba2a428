import json
from datetime import UTC, datetime

import numpy as np
import pytest

from services.cases.records import CaseChanged, PinRefused
from services.review.records import PreferencesSet, ReviewChanged
from services.review.rules import opened
from services.shared.errors import MalformedEventError, UnsupportedEventError
from services.shared.schemas import (
    ActionDecided,
    ActionResultReported,
    AuditRecorded,
    BankConfigured,
    EntryRegistered,
    FaceBox,
    FaceHit,
    FaceSeen,
    Match,
    MediaHashed,
    Signals,
    UploadReceived,
    VerdictIssued,
    embedding_to_text,
    encode,
    event_id,
    new_event,
    parse_event,
    readable_fields,
)

T = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
FACE = embedding_to_text(np.full(128, 128**-0.5, dtype=np.float32))
BOX = FaceBox(x=4, y=5, width=60, height=70)
PDQ = "f" * 64
SHA = "a" * 64
MD5 = "b" * 32

EXAMPLES = [
    BankConfigured(bank="kids", auto_threshold=12, negative=False, description="parents' requests"),
    AuditRecorded(
        actor="ops-1",
        operation="withdraw",
        bank="kids",
        entry_ids=["e1"],
        count=1,
        reason="request 812",
        details={"by": "entry"},
    ),
    UploadReceived(
        content_id="c1",
        media_url="https://cdn.example/a.jpg",
        mime_type="image/jpeg",
        uploader_id="u1",
        platform="web",
        attributes={"surface": "feed"},
    ),
    UploadReceived(content_id="c2", media_b64="aGVsbG8="),
    MediaHashed(
        upload_id="u",
        content_id="c",
        uploaded_at=T,
        sha256=SHA,
        md5=MD5,
        pdq=[PDQ] * 8,
        pdq_quality=90,
        width=10,
        height=20,
        format="PNG",
    ),
    VerdictIssued(upload_id="u", content_id="c", verdict="clean", scanned_at=T),
    VerdictIssued(
        upload_id="u",
        content_id="c",
        verdict="match",
        scanned_at=T,
        matches=[Match(bank="kids", entry_id="e", signal="pdq", distance=3)],
    ),
    VerdictIssued(upload_id="u", content_id="", verdict="error", error="broken", scanned_at=T),
    ActionDecided(
        action="remove",
        content_id="c",
        upload_id="u",
        bank="kids",
        entry_id="e",
        signal="sha256",
        distance=0,
        reason="equal",
        decided_at=T,
    ),
    EntryRegistered(
        entry_id="e",
        bank="kids",
        signals=Signals(pdq=[PDQ], sha256=SHA, md5=MD5),
        labels={"source": "parent"},
    ),
    EntryRegistered(entry_id="f", bank="kids", signals=Signals(face=FACE), subject="child-1"),
    MediaHashed(
        upload_id="u",
        content_id="c",
        uploaded_at=T,
        sha256=SHA,
        md5=MD5,
        pdq=[PDQ] * 8,
        pdq_quality=90,
        faces=[FaceSeen(box=BOX, score=0.93, embedding=FACE)],
        width=10,
        height=20,
        format="PNG",
    ),
    VerdictIssued(
        upload_id="u",
        content_id="c",
        verdict="match",
        scanned_at=T,
        matches=[
            Match(
                bank="kids",
                entry_id="f",
                signal="face",
                distance=38,
                subject="child-1",
                face=FaceHit(box=BOX, similarity=0.62),
            )
        ],
    ),
    ActionResultReported(action_id="a-1", outcome="done", reason="removed"),
    ReviewChanged(
        change="opened",
        actor="urn:eraser:actions",
        write_id="w-1",
        base_version=0,
        item=opened(
            ActionDecided(
                action="review",
                content_id="c",
                upload_id="u",
                bank="kids",
                entry_id="e",
                signal="pdq",
                distance=30,
                reason="weak",
                decided_at=T,
            ),
            "item-1",
            "pdq",
        ),
    ),
    PreferencesSet(reviewer="ann", blur=False),
    CaseChanged(
        case_id="EC-2345-6789",
        pin_hash="scrypt$16384$8$1$00$00",
        bank="kids",
        entry_ids=["e"],
        status="open",
        opened_at=T,
    ),
    PinRefused(case_id="EC-2345-6789", failures=[T]),
]


def test_a_face_is_an_entry_of_its_own():
    with pytest.raises(ValueError, match="a face is an entry of its own"):
        Signals(face=FACE, sha256=SHA)
    with pytest.raises(ValueError, match="a face embedding is 128 float16 values"):
        Signals(face=embedding_to_text(np.ones(1280, dtype=np.float32)))


@pytest.mark.parametrize("data", EXAMPLES, ids=lambda d: type(d).__name__)
def test_every_event_round_trips_through_its_wire_form(data):
    event = new_event(data, id="id-1", source="urn:test", time=T)
    parsed = parse_event(encode(event), type(data))
    assert parsed == event
    wire = json.loads(encode(event))
    assert wire["specversion"] == "1.0"
    assert wire["type"] == data.TYPE
    assert wire["datacontenttype"] == "application/json"


def _upload_json(**data):
    return json.dumps(
        {
            "specversion": "1.0",
            "id": "u-1",
            "source": "s",
            "type": "eraser.upload.v1",
            "time": "2026-11-25T10:00:00Z",
            "data": data,
        }
    ).encode()


def test_an_upload_needs_exactly_one_media_source():
    with pytest.raises(MalformedEventError, match="exactly one of media_url and media_b64"):
        parse_event(_upload_json(content_id="c"), UploadReceived)
    with pytest.raises(MalformedEventError, match="exactly one"):
        parse_event(
            _upload_json(content_id="c", media_url="https://x/y", media_b64="aa=="), UploadReceived
        )


def test_unknown_fields_are_rejected_and_reasons_do_not_echo_values():
    raw = _upload_json(content_id="c", media_url="https://x/y", surname="Kim Ji-woo")
    with pytest.raises(MalformedEventError) as caught:
        parse_event(raw, UploadReceived)
    assert "surname" in caught.value.reason
    assert "Kim" not in caught.value.reason


def test_another_type_or_version_is_unsupported():
    raw = _upload_json(content_id="c", media_url="https://x/y").replace(b".v1", b".v2")
    with pytest.raises(UnsupportedEventError, match=r"eraser\.upload\.v2"):
        parse_event(raw, UploadReceived)


@pytest.mark.parametrize("raw", [None, b"", b"not json", b"[1, 2]", b"\xff\xfe", b"[" * 100_000])
def test_records_that_are_not_json_objects_are_malformed(raw):
    with pytest.raises(MalformedEventError):
        parse_event(raw, UploadReceived)


def test_time_must_carry_a_timezone():
    raw = _upload_json(content_id="c", media_url="https://x/y").replace(b"00Z", b"00")
    with pytest.raises(MalformedEventError, match="time"):
        parse_event(raw, UploadReceived)


def test_extension_attributes_are_kept_when_well_named():
    document = json.loads(_upload_json(content_id="c", media_url="https://x/y"))
    event = parse_event(json.dumps({**document, "traceparent": "00-abc"}).encode(), UploadReceived)
    assert event.model_extra == {"traceparent": "00-abc"}
    with pytest.raises(MalformedEventError, match="extension attribute"):
        parse_event(json.dumps({**document, "Bad-Name": "x"}).encode(), UploadReceived)


def test_hex_digests_are_normalised_to_lower_case_and_checked():
    assert Signals(sha256="A" * 64).sha256 == "a" * 64
    with pytest.raises(ValueError):
        Signals(pdq=["xyz"])
    with pytest.raises(ValueError, match="at least one signal"):
        Signals()


def test_verdict_fields_must_agree_with_the_verdict():
    with pytest.raises(ValueError):
        VerdictIssued(upload_id="u", content_id="c", verdict="match", scanned_at=T)
    with pytest.raises(ValueError):
        VerdictIssued(upload_id="u", content_id="c", verdict="clean", error="x", scanned_at=T)


def test_readable_fields_recovers_ids_from_invalid_events():
    assert readable_fields(_upload_json(content_id="c9")) == ("u-1", "c9")
    assert readable_fields(b"garbage") == (None, None)
    assert readable_fields(json.dumps({"id": 5, "data": "x"}).encode()) == (None, None)


def test_event_ids_are_deterministic_per_parts():
    assert event_id("a", "b") == event_id("a", "b")
    assert event_id("a", "b") != event_id("ab")


def test_embeddings_must_be_1280_float16_values():
    from services.shared.schemas import embedding_from_text, embedding_to_text

    vector = np.linspace(-1, 1, 1280, dtype=np.float32)
    text = embedding_to_text(vector)
    assert Signals(embedding=[text]).embedding == [text]
    assert np.allclose(embedding_from_text(text), vector, atol=1e-3)
    with pytest.raises(ValueError, match="1280 float16"):
        Signals(embedding=[embedding_to_text(vector[:10])])
    with pytest.raises(ValueError, match="base64"):
        Signals(embedding=["***"])
