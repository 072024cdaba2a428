"""The face tier through the real broker: a registered child's face found in new photos.

Portraits of public figures from PyPI source packages stand in for a child's photos (the models
were trained on adults; docs/privacy.md). A bank holds faces only when its policy says so.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

from services.bench.face_data import sdist_portraits
from services.bench.face_swap import paste_face
from services.bench.video_media import encode, slideshow
from services.ingest.decoding import decode
from services.ingest.faces import FaceModels
from tests.integration.test_registry_admin import eraser_cli
from tests.integration.test_video import VIDEO_ENV

CACHE = Path(__file__).parents[2] / ".cache" / "test-faces"
BANKS = {"kids": {"faces": True}}


def _jpeg(pixels, quality=85):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _composite(photos):
    """Obama's face from a photo not registered, pasted over Jacinda Ardern's (Poisson blend)."""
    models = FaceModels()
    donor = decode(photos["obama3"].data, 10**8).pixels
    target = decode(photos["person_b_1"].data, 10**8).pixels
    swapped = paste_face(
        donor, models.detect(donor)[0], target, models.detect(target)[0], "poisson"
    )
    return _jpeg(swapped)


def _verdicts(eraser, uploads):
    ids = {eraser.upload(name, data, by_file=True): name for name, data in uploads.items()}
    found = eraser.wait_for_verdicts(ids, timeout_s=60)
    return {ids[upload_id]: verdict for upload_id, verdict in found.items()}


def test_a_registered_face_is_found_in_other_photos_and_only_ever_reviewed_alone(
    make_eraser, tmp_path
):
    photos = sdist_portraits(CACHE)
    eraser = make_eraser(banks=BANKS)
    for name in ("obama", "obama2"):
        (tmp_path / f"{name}.jpg").write_bytes(photos[name].data)
    registered = eraser_cli(
        eraser, "register", "--bank", "kids", "--faces", str(tmp_path / "obama.jpg"),
        str(tmp_path / "obama2.jpg"), "--reason", "case 7",
    )  # fmt: skip
    assert registered.returncode == 0, registered.stderr
    lines = [line.split("\t") for line in registered.stdout.splitlines()]
    assert lines[0][0] == "subject"
    subject = lines[0][1]
    faces = {line[0] for line in lines[1:] if line[-1] == "face"}
    photo_entries = {line[0] for line in lines[1:] if line[-1] != "face"}
    assert len(faces) == 2 and len(photo_entries) == 2

    copy = _jpeg(np.asarray(Image.open(io.BytesIO(photos["obama"].data)).convert("RGB")), 70)
    verdicts = _verdicts(
        eraser,
        {
            "other-photo": photos["impostor_1"].data,  # a different photo of the same person
            "composite": _composite(photos),  # his face pasted onto someone else
            "copy": copy,  # a re-encoded copy of a registered photo
            "unrelated-1": photos["biden"].data,
            "unrelated-2": photos["person_a_2"].data,
            "unrelated-3": photos["person_b_2"].data,
        },
    )
    for name in ("unrelated-1", "unrelated-2", "unrelated-3"):
        assert verdicts[name].verdict == "clean", (name, verdicts[name].matches)
    for name in ("other-photo", "composite"):
        matches = verdicts[name].matches
        assert {m.signal for m in matches} == {"face"}, (name, matches)
        assert {m.entry_id for m in matches} <= faces
        assert all(m.subject == subject and m.face.similarity >= 0.45 for m in matches)
        assert all(m.face.box.width > 50 for m in matches)
    copy_signals = {m.signal for m in verdicts["copy"].matches}
    assert "face" in copy_signals and "pdq" in copy_signals

    eraser.wait_for_actions(6, timeout_s=30)
    eraser.settle(1.0)
    by_upload: dict[str, set[str]] = {}
    for action in eraser.actions:
        by_upload.setdefault(action.content_id, set()).add(action.action)
    assert by_upload["other-photo"] == {"review"}
    assert by_upload["composite"] == {"review"}
    assert by_upload["copy"] == {"remove"}  # face and photo of the same subject agree
    assert not {"unrelated-1", "unrelated-2", "unrelated-3"} & by_upload.keys()

    withdrawn = eraser_cli(eraser, "withdraw", "--subject", subject, "--reason", "case 7 closed")
    assert withdrawn.returncode == 0, withdrawn.stderr
    assert "4 entries withdrawn" in withdrawn.stderr
    started = time.monotonic()
    while True:
        again = _verdicts(eraser, {f"again-{time.monotonic()}": photos["impostor_1"].data})
        if next(iter(again.values())).verdict == "clean":
            break
        assert time.monotonic() - started < 10, "the face still matched 10 s after withdrawal"


def test_faces_are_refused_by_a_bank_without_faces_and_never_exported_by_default(
    make_eraser, tmp_path
):
    photos = sdist_portraits(CACHE)
    eraser = make_eraser(banks={"kids": {"faces": True}}, start=False)
    (tmp_path / "obama.jpg").write_bytes(photos["obama"].data)
    refused = eraser_cli(
        eraser, "register", "--bank", "other", "--faces", str(tmp_path / "obama.jpg")
    )
    assert refused.returncode == 2
    assert "does not hold faces" in refused.stderr
    assert (
        eraser_cli(
            eraser, "register", "--bank", "kids", "--faces", str(tmp_path / "obama.jpg")
        ).returncode
        == 0
    )
    for fmt in ("hma", "csv", "json"):
        exported = eraser_cli(eraser, "export", "--bank", "kids", "--format", fmt)
        assert exported.returncode == 0 and "face" not in exported.stdout.replace("photo_md5", "")
    with_faces = eraser_cli(eraser, "export", "--bank", "kids", "--format", "json", "--with-faces")
    assert '"face": ' in with_faces.stdout and '"subject": ' in with_faces.stdout
    assert (
        eraser_cli(eraser, "export", "--bank", "kids", "--format", "csv", "--with-faces").returncode
        == 2
    )


def test_a_registered_face_is_found_in_a_video_and_named_with_when_it_was_shown(
    make_eraser, tmp_path
):
    photos = sdist_portraits(CACHE)
    eraser = make_eraser(banks=BANKS, env=VIDEO_ENV)
    (tmp_path / "obama.jpg").write_bytes(photos["obama"].data)
    registered = eraser_cli(
        eraser, "register", "--bank", "kids", "--faces", str(tmp_path / "obama.jpg")
    )
    assert registered.returncode == 0, registered.stderr
    faces = {line.split("\t")[0] for line in registered.stdout.splitlines() if line[-4:] == "face"}

    def shown(*names: str) -> bytes:  # 3 s per photograph, fitted into 16:9 with bars
        pictures = [Image.open(io.BytesIO(photos[name].data)).convert("RGB") for name in names]
        return encode(slideshow(pictures, 3.0, 10, "static", (854, 480)), 10)

    verdicts = _verdicts(
        eraser,
        {
            # another photograph of him, shown second: his face, never this photograph
            "with-him": shown("biden", "impostor_1", "person_a_2"),
            "without-him": shown("biden", "person_a_2", "person_b_2"),
        },
    )
    matches = verdicts["with-him"].matches
    assert {(m.signal, m.entry_id in faces) for m in matches} == {("face", True)}, matches
    assert all(3.0 <= t < 6.0 for m in matches for t in m.timestamps), "he is on at 3-6 s"
    assert all(m.face is not None and m.face.similarity >= 0.45 for m in matches)
    assert verdicts["without-him"].verdict == "clean", verdicts["without-him"].matches
    eraser.wait_for_actions(1, timeout_s=30)
    assert {(a.content_id, a.action) for a in eraser.actions} == {("with-him", "review")}
