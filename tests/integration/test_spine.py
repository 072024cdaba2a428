"""The spine through the real broker: registrations, uploads, verdicts, actions, withdrawal."""

from __future__ import annotations

import os
import time

from PIL import ImageOps

from tests.images import encode, photo, photo_bytes

# The regulator bank acts only on PDQ (its embedding and keypoint thresholds are out of reach),
# with a strict auto threshold, so weaker PDQ matches go to review.
BANKS = {
    "regulator": {
        "auto_threshold": 8,
        "action": "hide",
        "embedding_threshold": 1.0,
        "agreement_embedding_threshold": 1.0,
        "keypoint_threshold": 256,
    }
}


def _resized(name):
    image = photo(name)
    return encode(image.resize((image.width // 2, image.height // 2)), "JPEG", quality=90)


def _uploads():
    """(content id, bytes, registered photo it copies or None) for every upload of the test."""
    astronaut, coffee, chelsea = photo("astronaut.png"), photo("coffee.png"), photo("chelsea.png")
    return [
        ("astronaut-exact", photo_bytes("astronaut.png"), "astronaut"),
        ("astronaut-jpeg50", encode(astronaut, "JPEG", quality=50), "astronaut"),
        ("astronaut-mirrored", encode(ImageOps.mirror(astronaut), "JPEG", quality=90), "astronaut"),
        ("coffee-half", _resized("coffee.png"), "coffee"),
        ("coffee-rot90", encode(coffee.rotate(90, expand=True), "PNG"), "coffee"),
        ("coffee-png", encode(coffee, "PNG", optimize=True), "coffee"),
        ("chelsea-exact", photo_bytes("chelsea.png"), "chelsea"),
        ("chelsea-half", _resized("chelsea.png"), "chelsea"),
        ("chelsea-jpeg50", encode(chelsea, "JPEG", quality=50), "chelsea"),
        ("rocket", photo_bytes("rocket.jpg"), None),
        ("camera", photo_bytes("camera.png"), None),
        ("coins", photo_bytes("coins.png"), None),
        ("moon", photo_bytes("moon.png"), None),
        ("hubble", photo_bytes("hubble_deep_field.jpg"), None),
        ("junk", os.urandom(5000), None),
    ]


EXPECTED_ACTIONS = {
    ("astronaut-exact", "astronaut", "remove"),
    ("astronaut-jpeg50", "astronaut", "remove"),
    ("astronaut-mirrored", "astronaut", "remove"),
    ("coffee-half", "coffee", "remove"),
    ("coffee-rot90", "coffee", "remove"),
    ("coffee-png", "coffee", "remove"),
    ("chelsea-exact", "chelsea", "hide"),  # exact digest: the bank's action, whatever the threshold
    ("chelsea-half", "chelsea", "review"),  # PDQ distance above the regulator bank's 8
    ("chelsea-jpeg50", "chelsea", "hide"),
}


def test_copies_match_unrelated_photos_do_not_and_withdrawal_takes_effect(make_eraser):
    eraser = make_eraser(banks=BANKS)
    entries = eraser.register(
        "parents", {"astronaut": photo_bytes("astronaut.png"), "coffee": photo_bytes("coffee.png")}
    )
    entries |= eraser.register("regulator", {"chelsea": photo_bytes("chelsea.png")})
    names = {entry_id: name for name, entry_id in entries.items()}

    uploads = _uploads()
    ids = {
        eraser.upload(cid, data, by_file=n % 2 == 0): (cid, copies)
        for n, (cid, data, copies) in enumerate(uploads)
    }
    verdicts = eraser.wait_for_verdicts(ids)
    eraser.wait_for_actions(len(EXPECTED_ACTIONS))
    eraser.settle()

    assert set(verdicts) == set(ids), "every upload gets a verdict"
    assert all(len(v) == 1 for v in eraser.verdicts.values()), "exactly one verdict per upload"
    for upload_id, (content_id, copies) in ids.items():
        verdict = verdicts[upload_id]
        assert verdict.content_id == content_id
        if content_id == "junk":
            assert verdict.verdict == "error" and "not an image" in verdict.error
        elif copies is None:
            assert verdict.verdict == "clean", content_id
        else:
            assert verdict.verdict == "match", content_id
            assert {names[m.entry_id] for m in verdict.matches} == {copies}, content_id
    exact = verdicts[next(u for u, (c, _) in ids.items() if c == "astronaut-exact")]
    assert {m.signal for m in exact.matches} == {"sha256", "md5", "pdq", "embedding"}

    got = {(a.content_id, names[a.entry_id], a.action) for a in eraser.actions}
    assert got == EXPECTED_ACTIONS
    assert len(eraser.actions) == len(EXPECTED_ACTIONS), "no repeated actions"
    assert eraser.unsigned_actions == 0

    (dead,) = eraser.dead_letters(eraser.topics.ingest_dlq)
    headers = dict(dead.headers)
    assert headers["eraser-error-class"] == b"MediaUndecodableError"
    assert headers["eraser-source-topic"] == eraser.topics.uploads.encode()
    assert dead.key == b"junk"

    # Withdraw coffee: its copies stop matching; the other entries still match.
    eraser.withdraw(entries["coffee"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        probe = eraser.upload(f"coffee-probe-{time.monotonic()}", photo_bytes("coffee.png"))
        if eraser.wait_for_verdicts([probe], timeout_s=5)[probe].verdict == "clean":
            break
    else:
        raise AssertionError("withdrawal did not take effect within 10 s")
    after = {eraser.upload(f"{cid}-again", data): copies for cid, data, copies in uploads[:9]}
    verdicts = eraser.wait_for_verdicts(after)
    for upload_id, copies in after.items():
        expected = "clean" if copies == "coffee" else "match"
        assert verdicts[upload_id].verdict == expected, copies
