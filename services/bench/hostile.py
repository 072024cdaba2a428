"""The hostile-input corpus, generated in code, and the check that eraser survives all of it.

Every case is published to the uploads topic followed by a valid "canary" upload with the same key
(so the same partition, right after it). Eraser passes a case when the hostile record gets the
expected outcome — an ``error`` verdict and a dead letter of the expected error class, or a normal
verdict for odd-but-valid images — the canary gets its normal verdict, and ingest is still the
same process with its peak memory under the limit. Behind ``eraser bench hostile`` and the
integration test.
"""

from __future__ import annotations

import base64
import io
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from services.bench import hostile_media as media
from services.bench import hostile_video
from services.bench.deployment import Deployment
from services.bench.origin import ORIGIN_HOST, Origin
from services.samples import photo_bytes
from services.shared.errors import (
    FetchFailedError,
    MalformedEventError,
    MediaRejectedError,
    MediaUndecodableError,
    UnsupportedEventError,
)
from services.shared.schemas import UploadReceived

Expect = Literal["error", "scanned", "dead-letter"]
MAX_PIXELS = 64_000_000
# Settings the corpus is designed for: a small byte cap, the default pixel limit, a 1 s fetch
# deadline, and one upload per batch, so that even a batch holding an image at the pixel limit
# stays well inside the 3 s poll interval of test deployments.
CORPUS_ENV = {
    "ERASER_FETCH_ALLOWED_NETWORKS": f"{ORIGIN_HOST}/32",
    "ERASER_MAX_MEDIA_BYTES": str(256 * 1024),
    "ERASER_MAX_PIXELS": str(MAX_PIXELS),
    "ERASER_FETCH_DEADLINE_S": "1",
    "ERASER_FETCH_ATTEMPTS": "2",
    "ERASER_INGEST_BATCH_SIZE": "1",
    **hostile_video.VIDEO_ENV,
}
_REJECTED, _UNDECODABLE = MediaRejectedError.__name__, MediaUndecodableError.__name__
_FAILED, _MALFORMED = FetchFailedError.__name__, MalformedEventError.__name__


@dataclass(frozen=True)
class Case:
    """One hostile record and the outcome eraser owes it."""

    name: str
    # error: an error verdict and a dead letter; dead-letter: only that; scanned: a normal verdict
    expect: Expect
    value: bytes | None
    upload_id: str | None
    error: str = ""  # the dead letter's error class, for "error" and "dead-letter"

    @property
    def expected(self) -> str:
        """The expected outcome, with the error class."""
        return f"{self.expect}: {self.error}" if self.error else self.expect


@dataclass(frozen=True)
class Outcome:
    """What eraser did with one case."""

    case: Case
    verdict: str
    reason: str
    dead_letter: str
    canary_ok: bool

    @property
    def passed(self) -> bool:
        """Whether the outcome is the one the case expects, down to the error class."""
        if not self.canary_ok:
            return False
        if self.case.expect == "error":
            return (
                self.verdict == "error"
                and bool(self.reason)
                and self.dead_letter == self.case.error
            )
        if self.case.expect == "dead-letter":
            return self.verdict == "" and self.dead_letter == self.case.error
        return self.verdict in ("clean", "match") and not self.dead_letter


def corpus(media_root: Path, origin: Origin, byte_cap: int) -> list[Case]:
    """Every hostile case: broken media, hostile events, and fetches that must be refused."""
    return [
        *_media_cases(media_root, byte_cap),
        *_event_cases(),
        *_fetch_cases(media_root, origin, byte_cap),
    ]


def _media_cases(media_root: Path, byte_cap: int) -> Iterator[Case]:
    jpeg, png = media.encode(media.gradient(), "JPEG"), media.encode(media.gradient(), "PNG")
    undecodable = {
        "truncated JPEG": jpeg[: len(jpeg) // 3],
        "truncated PNG": png[:-60],
        "truncated WebP": media.encode(media.gradient(), "WEBP")[:80],
        "truncated GIF": media.encode(media.gradient(), "GIF")[:40],
        "zero-length upload": b"",
        "random bytes": os.urandom(20_000),
        "decompression bomb: 30000x30000 PNG of one colour": media.png_bomb(30_000),
        "PNG header declaring 100000x100000": media.png_declaring(100_000, 100_000),
        "JPEG header declaring 65000x65000": media.jpeg_declaring(jpeg, 65_000, 65_000),
        "GIF header declaring 65535x65535": media.gif_declaring(65_535, 65_535),
        "SVG posing as an image": b"<svg xmlns='http://www.w3.org/2000/svg'><script/></svg>",
        "HTML posing as an image": b"<!doctype html><html><body><img src=x></body></html>",
        "GIF/JavaScript polyglot": b"GIF89a/*\x00\x00" + os.urandom(64) + b"*/=alert(1);",
    }
    for name, data in undecodable.items():
        yield _inline(name, data, _UNDECODABLE)
    yield _inline("inline payload over the byte cap", os.urandom(byte_cap + 1), _REJECTED)
    yield _by_file("file over the byte cap", os.urandom(byte_cap + 1), media_root, _REJECTED)
    yield _by_file("zero-length file", b"", media_root, _UNDECODABLE)
    valid = {
        "animated GIF with 2000 frames": media.animated_gif(2000),
        "CMYK JPEG": media.encode(media.gradient().convert("CMYK"), "JPEG"),
        "16-bit greyscale PNG": media.encode(Image.fromarray(media.wide_gradient()), "PNG"),
        "palette PNG with transparency": media.palette_with_transparency(),
        "LA (grey + alpha) PNG": media.encode(media.gradient().convert("LA"), "PNG"),
        "EXIF-rotated JPEG": media.exif_rotated(),
        "JPEG/ZIP polyglot": jpeg + media.zip_archive(),
        "16-bit PNG at the pixel limit (8000x8000)": media.sixteen_bit_at(MAX_PIXELS),
        "palette PNG with transparency at the pixel limit": media.palette_at(MAX_PIXELS),
        "long thin 16-bit PNG at the pixel limit (999x64064)": media.sixteen_bit_at(
            MAX_PIXELS, width=999
        ),
    }
    for name, data in valid.items():
        yield _inline(name, data)
    for name, (data, refused) in hostile_video.cases().items():
        yield _inline(name, data, _UNDECODABLE if refused else "")


def _event_cases() -> Iterator[Case]:
    unreadable = {
        "malformed JSON": b'{"specversion": "1.0", "id": ',
        "JSON that is not an object": b'["eraser.upload.v1"]',
        "null value": None,
        "invalid UTF-8": b"\xff\xfe\xfd",
        "event without an id": json.dumps(
            _envelope({"content_id": "x", "media_b64": "AA=="}, id=None)
        ).encode(),
    }
    for name, value in unreadable.items():
        yield Case(name, "dead-letter", value, None, _MALFORMED)
    unsupported = UnsupportedEventError.__name__
    broken_events: dict[str, tuple[dict[str, Any], str]] = {
        "event missing content_id": ({"data": {"media_b64": "AA=="}}, _MALFORMED),
        "event with both media_url and media_b64": (
            {"data": {"content_id": "x", "media_b64": "AA==", "media_url": "https://a.example/x"}},
            _MALFORMED,
        ),
        "event with an unknown field": (
            {"data": {"content_id": "x", "media_b64": "AA==", "face_id": "someone"}},
            _MALFORMED,
        ),
        "event with an unknown type": ({"type": "com.example.photo.v1"}, unsupported),
        "event with a wrong schema version": ({"type": "eraser.upload.v9"}, unsupported),
        "event with a time without a zone": ({"time": "2026-11-25T10:00:00"}, _MALFORMED),
        "event with invalid base64": ({"data": {"content_id": "x", "media_b64": "***"}}, _REJECTED),
    }
    for name, (override, error) in broken_events.items():
        document = _envelope({"content_id": "x", "media_b64": "AA=="}) | override
        yield Case(name, "error", json.dumps(document).encode(), document["id"], error)


def _fetch_cases(media_root: Path, origin: Origin, byte_cap: int) -> Iterator[Case]:
    escape = media_root / "escape.jpg"
    if not escape.is_symlink():
        escape.symlink_to("/etc/passwd")
    port, to, over = origin.port, f"{origin.url}/to?u=", byte_cap + 1
    refused = {
        "file:///etc/passwd": "file:///etc/passwd",
        "file:// with ../ out of the media root": f"{media_root.as_uri()}/../../../etc/passwd",
        "file:// symlink out of the media root": escape.as_uri(),
        "ftp:// URL": "ftp://files.example/a.jpg",
        "http://127.0.0.1": f"http://127.0.0.1:{port}/photo.jpg",
        "http://[::1]": f"http://[::1]:{port}/photo.jpg",
        "http://169.254.169.254 (cloud metadata)": "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1 (10/8)": "http://10.0.0.1/a.jpg",
        "http://172.16.0.1 (172.16/12)": "http://172.16.0.1/a.jpg",
        "http://192.168.0.1 (192.168/16)": "http://192.168.0.1/a.jpg",
        "http://0x7f000001 (loopback in hex)": f"http://0x7f000001:{port}/photo.jpg",
        "hostname resolving to loopback": f"http://localhost:{port}/photo.jpg",
        "redirect to 127.0.0.1": f"{to}http://127.0.0.1:{port}/photo.jpg",
        "redirect to [::1]": f"{to}http://[::1]:{port}/photo.jpg",
        "redirect to 169.254.169.254": f"{to}http://169.254.169.254/latest/",
        "redirect to 10.0.0.1": f"{to}http://10.0.0.1/a.jpg",
        "redirect to 172.16.0.1": f"{to}http://172.16.0.1/a.jpg",
        "redirect to 192.168.0.1": f"{to}http://192.168.0.1/a.jpg",
        "redirect to file:///etc/passwd": f"{to}file:///etc/passwd",
        "http payload over the byte cap, no Content-Length": f"{origin.url}/unsized?n={over}",
    }
    for name, url in refused.items():
        yield _by_url(name, url, _REJECTED)
    failed = {
        "origin that stalls past the deadline": f"{origin.url}/slow",
        "origin dripping its body a byte at a time": f"{origin.url}/drip",
        "origin dripping its headers a byte at a time": f"{origin.url}/drip-headers",
        "origin answering 404": f"{origin.url}/missing.jpg",
    }
    for name, url in failed.items():
        yield _by_url(name, url, _FAILED)
    # Only the declared 1 KiB is read, so what is scanned is 1 KiB of random bytes.
    understated = f"{origin.url}/understated?n={over}"
    yield _by_url("http payload over the byte cap, declaring 1 KiB", understated, _UNDECODABLE)
    yield _by_url("allowed origin (control)", f"{origin.url}/photo.jpg")


def run_corpus(
    deployment: Deployment, cases: list[Case], canary: bytes
) -> tuple[list[Outcome], int]:
    """Publish every case and its canary; the outcomes and ingest's peak memory in bytes."""
    ingest_pid = deployment.pipeline.processes["ingest"].pid
    published = []
    for number, case in enumerate(cases):
        key = f"hostile-{number:03d}".encode()
        deployment.send_raw(case.value, key)
        canary_id = deployment.upload_event(_canary(key.decode(), canary))
        published.append((case, key, canary_id))
    deployment.wait_for_verdicts(
        [c for _, _, c in published] + [case.upload_id for case in cases if case.upload_id],
        timeout_s=120,
    )
    dead = {r.key: dict(r.headers) for r in deployment.dead_letters(deployment.topics.ingest_dlq)}
    outcomes = [
        _outcome(deployment, case, key, canary_id, dead) for case, key, canary_id in published
    ]
    if deployment.pipeline.processes["ingest"].pid != ingest_pid or deployment.pipeline.exited():
        raise RuntimeError(f"a service exited: {deployment.pipeline.exited()}")
    return outcomes, _peak_rss(ingest_pid)


def _outcome(
    deployment: Deployment,
    case: Case,
    key: bytes,
    canary_id: str,
    dead: dict[bytes, dict[str, bytes]],
) -> Outcome:
    verdicts = deployment.verdicts.get(case.upload_id or "", [])
    canary = deployment.verdicts.get(canary_id, [])
    letter = dead.get(key, {})
    return Outcome(
        case=case,
        verdict=verdicts[0].verdict if verdicts else "",
        reason=(verdicts[0].error or "")
        if verdicts
        else letter.get("eraser-error-reason", b"").decode(),
        dead_letter=letter.get("eraser-error-class", b"").decode(),
        canary_ok=len(canary) == 1 and canary[0].verdict == "match",
    )


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


# Building the records.


def _envelope(data: dict[str, Any], id: str | None = "auto", **attributes: Any) -> dict[str, Any]:
    document = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()) if id == "auto" else id,
        "source": "urn:eraser:hostile",
        "type": "eraser.upload.v1",
        "time": "2026-11-25T10:00:00Z",
        "datacontenttype": "application/json",
        "data": data,
        **attributes,
    }
    return {k: v for k, v in document.items() if v is not None}


def _inline(name: str, data: bytes, error: str = "") -> Case:
    """An upload of ``data`` inline: an error case if ``error`` names a class, else scanned."""
    document = _envelope(
        {"content_id": f"hostile:{name}", "media_b64": base64.b64encode(data).decode()}
    )
    return _upload_case(name, document, error)


def _by_url(name: str, url: str, error: str = "") -> Case:
    return _upload_case(name, _envelope({"content_id": f"hostile:{name}", "media_url": url}), error)


def _by_file(name: str, data: bytes, media_root: Path, error: str) -> Case:
    path = media_root / f"{uuid.uuid4().hex}.bin"
    path.write_bytes(data)
    return _by_url(name, path.as_uri(), error)


def _upload_case(name: str, document: dict[str, Any], error: str) -> Case:
    expect: Expect = "error" if error else "scanned"
    return Case(name, expect, json.dumps(document).encode(), document["id"], error)


def _canary(key: str, data: bytes) -> UploadReceived:
    return UploadReceived(content_id=key, media_b64=base64.b64encode(data).decode())


def default_canary() -> bytes:
    """The canary: a re-encoded copy of the registered photo."""
    image = Image.open(io.BytesIO(photo_bytes("coffee.png"))).convert("RGB")
    return media.encode(image, "JPEG", quality=80)
