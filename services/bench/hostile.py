"""The hostile-input corpus, generated in code, and the check that eraser survives all of it.

Every case is published to the uploads topic followed by a valid "canary" upload with the same key
(so the same partition, right after it). Eraser passes a case when the hostile record gets the
expected outcome — an ``error`` verdict and a dead letter with a reason, or a normal verdict for
odd-but-valid images — the canary gets its normal verdict, and ingest is still the same process
with its peak memory under the limit. Behind ``eraser bench hostile`` and the integration test.
"""

from __future__ import annotations

import base64
import io
import json
import os
import threading
import time
import uuid
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from services.bench.deployment import Deployment
from services.samples import photo_bytes

Expect = Literal["error", "scanned", "dead-letter"]
ORIGIN_HOST = "127.0.0.2"  # the one loopback address the corpus deployment may fetch from
# Settings the corpus is designed for: a small byte cap and short fetch timeouts.
CORPUS_ENV = {
    "ERASER_FETCH_ALLOWED_NETWORKS": f"{ORIGIN_HOST}/32",
    "ERASER_MAX_MEDIA_BYTES": str(256 * 1024),
    "ERASER_FETCH_READ_TIMEOUT_S": "1",
    "ERASER_FETCH_ATTEMPTS": "2",
}


@dataclass(frozen=True)
class Case:
    """One hostile record and the outcome eraser owes it."""

    name: str
    expect: (
        Expect  # error: error verdict + dead letter; scanned: a normal verdict; dead-letter only
    )
    value: bytes | None
    upload_id: str | None


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
        """Whether the outcome is the one the case expects."""
        if not self.canary_ok:
            return False
        if self.case.expect == "error":
            return self.verdict == "error" and bool(self.reason) and bool(self.dead_letter)
        if self.case.expect == "dead-letter":
            return self.verdict == "" and bool(self.dead_letter)
        return self.verdict in ("clean", "match") and not self.dead_letter


class Origin:
    """A small web server on 127.0.0.2 that serves a photo, redirects, and stalls."""

    def __init__(self, photo: bytes) -> None:
        handler = type("Handler", (_OriginHandler,), {"photo": photo})
        self._server = _QuietServer((ORIGIN_HOST, 0), handler)
        self.port = int(self._server.server_address[1])
        self.url = f"http://{ORIGIN_HOST}:{self.port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        return None  # eraser hangs up on the stalling route on purpose


class _OriginHandler(BaseHTTPRequestHandler):
    photo = b""

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if path == "/photo.jpg":
            self._reply(200, self.photo)
        elif path == "/to":
            self.send_response(302)
            self.send_header("Location", query.removeprefix("u="))
            self.end_headers()
        elif path == "/slow":
            time.sleep(3)
            self._reply(200, self.photo)
        else:
            self._reply(404, b"")

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


def corpus(media_root: Path, origin: Origin, byte_cap: int) -> list[Case]:
    """Every hostile case: broken media, hostile events, and fetches that must be refused."""
    return [*_media_cases(media_root, byte_cap), *_event_cases(), *_fetch_cases(media_root, origin)]


def _media_cases(media_root: Path, byte_cap: int) -> Iterator[Case]:
    jpeg, png = _encode(_gradient(), "JPEG"), _encode(_gradient(), "PNG")
    broken = {
        "truncated JPEG": jpeg[: len(jpeg) // 3],
        "truncated PNG": png[:-60],
        "truncated WebP": _encode(_gradient(), "WEBP")[:80],
        "truncated GIF": _encode(_gradient(), "GIF")[:40],
        "zero-length upload": b"",
        "random bytes": os.urandom(20_000),
        "decompression bomb: 30000x30000 PNG of one colour": _png_bomb(30_000),
        "PNG header declaring 100000x100000": _png_declaring(100_000, 100_000),
        "JPEG header declaring 65000x65000": _jpeg_declaring(jpeg, 65_000, 65_000),
        "GIF header declaring 65535x65535": _gif_declaring(65_535, 65_535),
        "SVG posing as an image": b"<svg xmlns='http://www.w3.org/2000/svg'><script/></svg>",
        "HTML posing as an image": b"<!doctype html><html><body><img src=x></body></html>",
        "GIF/JavaScript polyglot": b"GIF89a/*\x00\x00" + os.urandom(64) + b"*/=alert(1);",
        "inline payload over the byte cap": os.urandom(byte_cap + 1),
    }
    for name, data in broken.items():
        yield _inline(name, "error", data)
    yield _by_file(
        name="file over the byte cap",
        expect="error",
        data=os.urandom(byte_cap + 1),
        media_root=media_root,
    )
    yield _by_file(name="zero-length file", expect="error", data=b"", media_root=media_root)
    valid = {
        "animated GIF with 2000 frames": _animated_gif(2000),
        "CMYK JPEG": _encode(_gradient().convert("CMYK"), "JPEG"),
        "16-bit greyscale PNG": _encode(Image.fromarray(_wide_gradient()), "PNG"),
        "palette PNG with transparency": _palette_with_transparency(),
        "LA (grey + alpha) PNG": _encode(_gradient().convert("LA"), "PNG"),
        "EXIF-rotated JPEG": _exif_rotated(),
        "JPEG/ZIP polyglot": jpeg + _zip_archive(),
    }
    for name, data in valid.items():
        yield _inline(name, "scanned", data)


def _event_cases() -> Iterator[Case]:
    yield Case("malformed JSON", "dead-letter", b'{"specversion": "1.0", "id": ', None)
    yield Case("JSON that is not an object", "dead-letter", b'["eraser.upload.v1"]', None)
    yield Case("null value", "dead-letter", None, None)
    yield Case("invalid UTF-8", "dead-letter", b"\xff\xfe\xfd", None)
    yield Case(
        "event without an id",
        "dead-letter",
        json.dumps(_envelope({"content_id": "x", "media_b64": "AA=="}, id=None)).encode(),
        None,
    )
    broken_events: dict[str, dict[str, Any]] = {
        "event missing content_id": {"data": {"media_b64": "AA=="}},
        "event with both media_url and media_b64": {
            "data": {"content_id": "x", "media_b64": "AA==", "media_url": "https://a.example/x"}
        },
        "event with an unknown field": {
            "data": {"content_id": "x", "media_b64": "AA==", "face_id": "someone"}
        },
        "event with an unknown type": {"type": "com.example.photo.v1"},
        "event with a wrong schema version": {"type": "eraser.upload.v9"},
        "event with a time without a zone": {"time": "2026-11-25T10:00:00"},
        "event with invalid base64": {"data": {"content_id": "x", "media_b64": "***"}},
    }
    for name, override in broken_events.items():
        document = _envelope({"content_id": "x", "media_b64": "AA=="})
        document.update({k: v for k, v in override.items()})
        yield Case(name, "error", json.dumps(document).encode(), document["id"])


def _fetch_cases(media_root: Path, origin: Origin) -> Iterator[Case]:
    port = origin.port
    escape = media_root / "escape.jpg"
    if not escape.is_symlink():
        escape.symlink_to("/etc/passwd")
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
        "redirect to 127.0.0.1": f"{origin.url}/to?u=http://127.0.0.1:{port}/photo.jpg",
        "redirect to 169.254.169.254": f"{origin.url}/to?u=http://169.254.169.254/latest/",
        "redirect to 10.0.0.1": f"{origin.url}/to?u=http://10.0.0.1/a.jpg",
        "redirect to file:///etc/passwd": f"{origin.url}/to?u=file:///etc/passwd",
        "origin that stalls past the timeout": f"{origin.url}/slow",
        "origin answering 404": f"{origin.url}/missing.jpg",
    }
    for name, url in refused.items():
        yield _by_url(name, "error", url)
    yield _by_url("allowed origin (control)", "scanned", f"{origin.url}/photo.jpg")


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


def _inline(name: str, expect: Expect, data: bytes) -> Case:
    document = _envelope(
        {"content_id": f"hostile:{name}", "media_b64": base64.b64encode(data).decode()}
    )
    return Case(name, expect, json.dumps(document).encode(), document["id"])


def _by_url(name: str, expect: Expect, url: str) -> Case:
    document = _envelope({"content_id": f"hostile:{name}", "media_url": url})
    return Case(name, expect, json.dumps(document).encode(), document["id"])


def _by_file(*, name: str, expect: Expect, data: bytes, media_root: Path) -> Case:
    path = media_root / f"{uuid.uuid4().hex}.bin"
    path.write_bytes(data)
    return _by_url(name, expect, path.as_uri())


def _canary(key: str, data: bytes) -> Any:
    from services.shared.schemas import UploadReceived

    return UploadReceived(content_id=key, media_b64=base64.b64encode(data).decode())


# Building the media.


def _gradient(width: int = 160, height: int = 120) -> Image.Image:
    x = np.linspace(0, 255, width)
    y = np.linspace(0, 255, height)[:, None]
    rgb = np.dstack([np.tile(x, (height, 1)), np.tile(y, (1, width)), (x * y / 255) % 255])
    return Image.fromarray(rgb.astype(np.uint8))


def _wide_gradient() -> np.ndarray:
    return np.linspace(0, 65_535, 160 * 120).reshape(120, 160).astype(np.uint16)


def _encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body)
    return len(body).to_bytes(4, "big") + kind + body + crc.to_bytes(4, "big")


def _png(width: int, height: int, depth: int, colour: int, idat: bytes) -> bytes:
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([depth, colour, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _png_bomb(side: int) -> bytes:
    """A real 1-bit PNG of side x side pixels of one colour: ~100 KB that inflates to ~110 MB."""
    row = b"\x00" * (1 + (side + 7) // 8)
    compressor = zlib.compressobj(9)
    block = row * 1000
    chunks = [compressor.compress(block) for _ in range(side // 1000)]
    chunks += [compressor.compress(row * (side % 1000)), compressor.flush()]
    return _png(side, side, 1, 0, b"".join(chunks))


def _png_declaring(width: int, height: int) -> bytes:
    return _png(width, height, 8, 2, zlib.compress(b"\x00" * 64))


def _jpeg_declaring(jpeg: bytes, width: int, height: int) -> bytes:
    at = jpeg.index(b"\xff\xc0")  # start of frame: length(2) precision(1) height(2) width(2)
    return jpeg[: at + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + jpeg[at + 9 :]


def _gif_declaring(width: int, height: int) -> bytes:
    gif = _encode(_gradient(16, 16).convert("P"), "GIF")
    return gif[:6] + width.to_bytes(2, "little") + height.to_bytes(2, "little") + gif[10:]


def _animated_gif(frames: int) -> bytes:
    images = [Image.new("P", (16, 16), n % 2) for n in range(frames)]
    for image in images:
        image.putpalette([0, 0, 0, 255, 255, 255] + [0, 0, 0] * 254)
    return _encode(images[0], "GIF", save_all=True, append_images=images[1:], duration=20)


def _palette_with_transparency() -> bytes:
    image = _gradient().convert("P")
    return _encode(image, "PNG", transparency=0)


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encode(_gradient(), "JPEG", exif=exif.tobytes())


def _zip_archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("payload.html", "<script>x()</script>")
    return buffer.getvalue()


def default_canary() -> bytes:
    """The canary: a re-encoded copy of the registered photo."""
    image = Image.open(io.BytesIO(photo_bytes("coffee.png"))).convert("RGB")
    return _encode(image, "JPEG", quality=80)
