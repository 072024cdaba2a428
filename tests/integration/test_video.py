"""Videos through the real broker: registered videos and photos found in uploaded videos, hostile
videos refused with the services alive, and vPDQ lists moved in and out."""

from __future__ import annotations

from pathlib import Path

from services.bench import hostile_video
from services.bench.video_media import edited, encode, excerpt, resized, slideshow
from services.shared.vpdq import parse_tool_line
from tests.images import photo, photo_bytes
from tests.integration.test_registry_admin import eraser_cli
from tests.videos import clip

VECTORS = Path(__file__).parents[1] / "data" / "vpdq"
# One upload per batch, a poll interval with room for a video's scan (half of 8 s), and the
# limits the hostile videos are made for.
VIDEO_ENV = {
    "KAFKA_MAX_POLL_INTERVAL_MS": "8000",
    "ERASER_INGEST_BATCH_SIZE": "1",
    **hostile_video.VIDEO_ENV,
}


def _original() -> bytes:
    """An 8 s 720p video: a slow pan across one photograph, then across another."""
    pictures = [photo("astronaut.png"), photo("rocket.jpg")]
    return encode(slideshow(pictures, 4.0, 15, "pan", (1280, 720)), 15)


def _slideshow_with(name: str) -> bytes:
    """Three photographs, 3 s each, fitted into 16:9 with bars; ``name`` is the second."""
    pictures = [photo("chelsea.png"), photo(name), photo("hubble_deep_field.jpg")]
    return encode(slideshow(pictures, 3.0, 10, "static", (854, 480)), 10)


def test_copies_in_videos_match_with_timestamps_and_hostile_videos_are_refused(make_eraser):
    eraser = make_eraser(env=VIDEO_ENV)
    original = _original()
    entries = eraser.register("kids", {"video": original, "coffee": photo_bytes("coffee.png")})
    names = {entry_id: name for name, entry_id in entries.items()}
    uploads = {
        "excerpt-480p": edited(original, excerpt(2.0, 5.0), resized(480)),
        "slideshow": _slideshow_with("coffee.png"),
        "unrelated": _slideshow_with("camera.png"),
    }
    hostile = {name: data for name, (data, refused) in hostile_video.cases().items() if refused}
    ids = {eraser.upload(name, data, by_file=True): name for name, data in uploads.items()}
    ids |= {eraser.upload(f"hostile {name}", data): name for name, data in hostile.items()}
    after = eraser.upload("after the hostile ones", uploads["slideshow"], by_file=True)
    verdicts = eraser.wait_for_verdicts([*ids, after], timeout_s=120)
    by_name = {ids.get(upload_id, "after"): v for upload_id, v in verdicts.items()}

    excerpt_match = by_name["excerpt-480p"].matches
    assert [(names[m.entry_id], m.signal) for m in excerpt_match] == [("video", "vpdq")]
    assert excerpt_match[0].match_percent >= 80
    assert excerpt_match[0].timestamps[:3] == [0.0, 1.0, 2.0]  # seconds into the upload
    shown = by_name["slideshow"].matches
    assert {names[m.entry_id] for m in shown} == {"coffee"}
    assert all(3.0 <= t < 6.0 for m in shown for t in m.timestamps), "the photo is on at 3-6 s"
    assert by_name["unrelated"].verdict == "clean"
    for name in hostile:
        assert by_name[name].verdict == "error", name
    assert by_name["after"].verdict == "match", "ingest still scans after the hostile videos"

    eraser.wait_for_actions(3)
    actions = {(a.content_id, names[a.entry_id], a.action) for a in eraser.actions}
    assert {("excerpt-480p", "video", "remove"), ("slideshow", "coffee", "remove")} <= actions
    assert all("in the video at" in a.reason for a in eraser.actions)
    assert eraser.close() == {"ingest": 0, "matcher": 0, "actions": 0}


def test_vpdq_hash_files_and_hma_lists_move_videos_in_and_out(make_eraser, tmp_path):
    eraser = make_eraser(start=False)
    sample = VECTORS / "doorknob-hd-no-bar.txt"
    imported = eraser_cli(eraser, "import", str(sample), "--bank", "partner", "--format", "vpdq")
    assert imported.returncode == 0, imported.stderr
    assert "imported 1 entries into partner" in imported.stdout

    out = tmp_path / "exported"
    exported = eraser_cli(
        eraser, "export", "--bank", "partner", "--format", "vpdq", "--out", str(out)
    )
    assert exported.returncode == 0, exported.stderr
    (written,) = out.glob("*.txt")
    # Every frame of the sample is listed, numbered from 0, so the file comes back as it was.
    assert written.read_text() == sample.read_text()
    assert [parse_tool_line(line)[0] for line in written.read_text().split()] == list(range(120))

    # As an HMA list (python-threatexchange's vpdq signal), without eraser's ids: another bank.
    hma = eraser_cli(eraser, "export", "--bank", "partner", "--format", "hma").stdout
    assert hma.startswith('vpdq ["') and hma.count("\n") == 1
    (tmp_path / "list.txt").write_text(" ".join(hma.split(" ")[:2]) + "\n")
    moved = eraser_cli(
        eraser, "import", str(tmp_path / "list.txt"), "--bank", "other", "--format", "hma"
    )
    assert moved.returncode == 0, moved.stderr
    back = tmp_path / "back"
    eraser_cli(eraser, "export", "--bank", "other", "--format", "vpdq", "--out", str(back))
    (again,) = back.glob("*.txt")
    assert again.read_text() == sample.read_text()


def test_eraser_register_takes_videos_and_exports_their_frames(make_eraser, tmp_path):
    eraser = make_eraser(start=False)
    folder = tmp_path / "protected"
    folder.mkdir()
    (folder / "clip.mp4").write_bytes(clip(seconds=3))
    (folder / "photo.png").write_bytes(photo_bytes("coffee.png"))
    registered = eraser_cli(eraser, "register", "--bank", "kids", str(folder))
    assert registered.returncode == 0, registered.stderr
    assert len(registered.stdout.splitlines()) == 2
    out = tmp_path / "out"
    exported = eraser_cli(eraser, "export", "--bank", "kids", "--format", "vpdq", "--out", str(out))
    assert "photo entries are left out" in exported.stderr
    (written,) = out.glob("*.txt")
    lines = written.read_text().split()
    assert len(lines) > 5  # 5 frames a second, repeats pruned
    assert all(0 <= parse_tool_line(line)[1].timestamp < 3.0 for line in lines)
