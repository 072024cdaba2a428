"""``eraser demo``: the whole pipeline on the embedded broker, with real photographs.

Three photographs bundled with scikit-image stand in for a child's protected photos. They are
registered (hashes only), then uploads arrive: exact copies, re-encoded, resized, mirrored and
rotated copies, copies under stickers, tilted or inside a phone screenshot, unrelated photographs
and a file that is not an image. The demo prints each
upload's verdict and the actions the removal services would receive.
"""

from __future__ import annotations

import base64
import io
import secrets
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

from services.admin.publishing import Publisher
from services.ingest.signals import SignalModels
from services.pipeline import Pipeline
from services.registrar import hash_file
from services.samples import photo_bytes as photo
from services.shared.broker import EmbeddedBroker
from services.shared.config import KafkaSettings, TopicSettings
from services.shared.schemas import ActionDecided, Match, UploadReceived, VerdictIssued
from services.shared.topics import ensure_topics
from services.streams import EventReader, UploadPublisher

PROTECTED = ("astronaut.png", "coffee.png", "chelsea.png")
UNRELATED = (
    "rocket.jpg",
    "camera.png",
    "coins.png",
    "moon.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
)


@dataclass(frozen=True)
class DemoUpload:
    """One upload of the scenario and the protected photo it copies (None: unrelated or broken)."""

    content_id: str
    description: str
    data: bytes
    copies: str | None


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


EDITS: dict[str, Callable[[Image.Image, bytes], bytes]] = {
    "exact copy": lambda image, data: data,
    "JPEG quality 50": lambda image, data: _encode(image, "JPEG", quality=50),
    "resized to 50%": lambda image, data: _encode(
        image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS),
        "JPEG",
        quality=90,
    ),
    "mirrored": lambda image, data: _encode(ImageOps.mirror(image), "JPEG", quality=90),
    "rotated 90°": lambda image, data: _encode(image.rotate(90, expand=True), "PNG"),
    "PNG re-encode": lambda image, data: _encode(image, "PNG", optimize=True),
    "under stickers": lambda image, data: _encode(_stickered(image), "JPEG", quality=85),
    "rotated 8°, cropped": lambda image, data: _encode(_tilted(image), "JPEG", quality=85),
    "in a phone screenshot": lambda image, data: _encode(_screenshot(image), "PNG"),
}


def _stickered(image: Image.Image) -> Image.Image:
    """Two opaque stickers over about a sixth of the picture."""
    covered = image.copy()
    draw = ImageDraw.Draw(covered)
    w, h = image.size
    draw.ellipse((w // 8, h // 6, w // 8 + w // 3, h // 6 + h // 3), fill=(255, 205, 0))
    draw.rectangle((w // 2, h * 3 // 5, w // 2 + w // 4, h * 3 // 5 + h // 5), fill=(230, 40, 90))
    return covered


def _tilted(image: Image.Image) -> Image.Image:
    turned = image.rotate(8, resample=Image.Resampling.BICUBIC)
    w, h = image.size
    return turned.crop((w // 10, h // 10, w - w // 10, h - h // 10))


def _screenshot(image: Image.Image) -> Image.Image:
    """The picture across a phone-sized frame, with a status bar and caption lines."""
    canvas = Image.new("RGB", (720, 1480), (250, 250, 250))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, 720, 60), fill=(30, 30, 30))
    for line in range(4):
        draw.rectangle((40, 1100 + 60 * line, 680 - 90 * line, 1130 + 60 * line), fill=(90, 90, 90))
    picture = image.resize((680, round(680 * image.height / image.width)))
    canvas.paste(picture, (20, 140))
    return canvas


def scenario() -> list[DemoUpload]:
    """Every upload of the demo: three edits of each protected photo, unrelated photos, junk."""
    uploads: list[DemoUpload] = []
    edit_names = list(EDITS)
    for index, name in enumerate(PROTECTED):
        data = photo(name)
        image = Image.open(io.BytesIO(data)).convert("RGB")
        for edit in edit_names[index :: len(PROTECTED)]:
            uploads.append(
                DemoUpload(
                    f"post-{len(uploads) + 1:02d}",
                    f"{name}: {edit}",
                    EDITS[edit](image, data),
                    name,
                )
            )
    for name in UNRELATED:
        uploads.append(
            DemoUpload(
                f"post-{len(uploads) + 1:02d}", f"{name}: unrelated photo", photo(name), None
            )
        )
    uploads.append(
        DemoUpload(
            f"post-{len(uploads) + 1:02d}", "random bytes named .jpg", uuid.uuid4().bytes * 64, None
        )
    )
    return uploads


def upload_event(upload: DemoUpload, media_root: Path, inline: bool) -> UploadReceived:
    """The upload event: media inline, or written under the media root and sent by file:// URL."""
    if inline:
        return UploadReceived(
            content_id=upload.content_id,
            media_b64=base64.b64encode(upload.data).decode(),
            platform="demo",
        )
    path = media_root / f"{upload.content_id}.bin"
    path.write_bytes(upload.data)
    return UploadReceived(content_id=upload.content_id, media_url=path.as_uri(), platform="demo")


def run_demo(out: Callable[[str], None] = print) -> int:
    """Run the demo end to end and print its table; the exit code."""
    with tempfile.TemporaryDirectory(prefix="eraser-demo-") as folder, EmbeddedBroker() as broker:
        root = Path(folder)
        out(f"embedded Kafka-compatible broker (Tansu) at {broker.bootstrap_servers}")
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers)
        topics = TopicSettings()
        ensure_topics(kafka, topics)
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "KAFKA_MAX_POLL_INTERVAL_MS": "3000",
            "ERASER_MEDIA_ROOT": folder,
            "ERASER_INGEST_HTTP_PORT": "0",
            "ERASER_MATCHER_HTTP_PORT": "0",
            "ERASER_ACTIONS_HTTP_PORT": "0",
            "ERASER_ACTIONS_SIGNING_KEY": secrets.token_hex(32),
        }
        with Pipeline(env, log_dir=root):
            entries = _register(kafka, topics, out)
            uploads = scenario()
            reader = EventReader(kafka, [topics.verdicts, topics.actions])
            sent = _publish(kafka, topics, uploads, root)
            verdicts, actions = _collect(reader, topics, set(sent))
            reader.close()
        _print_table(out, uploads, sent, verdicts, actions, entries)
        problems = _shortfall(sent, verdicts, actions)
        for problem in problems:
            out(problem)
        if problems:
            _print_log_tails(out, root)
            return 1
        return 0


def _shortfall(
    sent: dict[str, DemoUpload], verdicts: dict[str, VerdictIssued], actions: list[ActionDecided]
) -> list[str]:
    """What the pipeline left undone: uploads without a verdict, matches without an action."""
    problems = []
    missing = set(sent) - set(verdicts)
    if missing:
        problems.append(f"{len(missing)} uploads got no verdict")
    unacted = _unacted(verdicts, actions)
    if unacted:
        problems.append(f"{len(unacted)} match verdicts got no action")
    return problems


def _unacted(verdicts: dict[str, VerdictIssued], actions: list[ActionDecided]) -> set[str]:
    """Content ids with a match verdict and no action yet (no bank of the demo vetoes one)."""
    acted = {action.content_id for action in actions}
    matched = {v.content_id for v in verdicts.values() if v.verdict == "match"}
    return matched - acted


def _print_log_tails(out: Callable[[str], None], root: Path, lines: int = 15) -> None:
    """The end of each service's log (ids and outcomes, never media), before the folder goes."""
    for log in sorted(root.glob("*.log")):
        out(f"--- last lines of {log.name}")
        for line in log.read_text(errors="replace").splitlines()[-lines:]:
            out(line)


def _register(
    kafka: KafkaSettings, topics: TopicSettings, out: Callable[[str], None]
) -> dict[str, str]:
    publisher = Publisher(kafka, topics)
    models = SignalModels.load()
    registrations = [
        hash_file(photo(name), "demo", quality_floor=50, models=models).registration
        for name in PROTECTED
    ]
    publisher.register(registrations)
    publisher.close()
    for name, registration in zip(PROTECTED, registrations, strict=True):
        out(f"registered {name} as {registration.entry_id} (bank 'demo', hashes only)")
    return {r.entry_id: name for name, r in zip(PROTECTED, registrations, strict=True)}


def _publish(
    kafka: KafkaSettings, topics: TopicSettings, uploads: list[DemoUpload], root: Path
) -> dict[str, DemoUpload]:
    publisher = UploadPublisher(kafka, topics.uploads)
    sent = {}
    for index, upload in enumerate(uploads):
        sent[publisher.publish(upload_event(upload, root, inline=index % 2 == 0))] = upload
    publisher.close()
    return sent


def _collect(
    reader: EventReader, topics: TopicSettings, upload_ids: set[str], timeout_s: float = 60.0
) -> tuple[dict[str, VerdictIssued], list[ActionDecided]]:
    verdicts: dict[str, VerdictIssued] = {}
    actions: list[ActionDecided] = []
    deadline = time.monotonic() + timeout_s
    settle_until = None
    while time.monotonic() < deadline and (settle_until is None or time.monotonic() < settle_until):
        for topic, event, _ in reader.read(timeout_ms=200):
            if topic == topics.verdicts and isinstance(event.data, VerdictIssued):
                verdicts[event.data.upload_id] = event.data
            elif isinstance(event.data, ActionDecided):
                actions.append(event.data)
        # Every verdict in and every match acted on; a moment more for any second action.
        if settle_until is None and upload_ids <= set(verdicts) and not _unacted(verdicts, actions):
            settle_until = time.monotonic() + 0.5
    return verdicts, actions


def _print_table(
    out: Callable[[str], None],
    uploads: list[DemoUpload],
    sent: dict[str, DemoUpload],
    verdicts: dict[str, VerdictIssued],
    actions: list[ActionDecided],
    entries: dict[str, str],
) -> None:
    by_content = {action.content_id: action for action in actions}
    rows = [("content", "upload", "verdict", "matched", "signals", "action")]
    for upload_id, upload in sent.items():
        verdict = verdicts.get(upload_id)
        match = verdict.matches[0] if verdict and verdict.matches else None
        action = by_content.get(upload.content_id)
        rows.append(
            (
                upload.content_id,
                upload.description,
                verdict.verdict if verdict else "(none)",
                entries.get(match.entry_id, "?")
                if match
                else (verdict.error or "")
                if verdict
                else "",
                ", ".join(_signal(m) for m in verdict.matches) if verdict else "",
                action.action if action else "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for number, row in enumerate(rows):
        out("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if number == 0:
            out("  ".join("-" * width for width in widths))
    out(f"{len(verdicts)} verdicts for {len(uploads)} uploads, {len(actions)} actions")


def _signal(match: Match) -> str:
    """A match's signal and how close, in the signal's own terms."""
    if match.signal == "pdq":
        return f"pdq {match.distance} bits"
    if match.signal == "embedding":
        return f"embedding cosine {1 - match.distance / 100:.2f}"
    if match.signal == "keypoints":
        return f"{256 - match.distance} keypoints agree"
    return f"{match.signal} equal"
