"""The videos of the hostile-input corpus, made in code: lying headers, endless, cut and bombs.

Used by :mod:`services.bench.hostile`. Real encodes come from PyAV; the forged ones are Matroska
files written element by element (EBML), so a header can declare what its frames are not, and a
frame can be a zlib bomb that Matroska's content compression would inflate.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from services.bench.video_media import encode, slideshow
from services.samples import photo_bytes

# Settings the video cases are designed for (added to the corpus's).
VIDEO_ENV = {"ERASER_VIDEO_MAX_DURATION_S": "60", "ERASER_VIDEO_MAX_FRAMES": "3000"}


def cases() -> dict[str, tuple[bytes, bool]]:
    """Each case's bytes, and whether it must be refused (True) or scanned (False)."""
    valid = _pan(seconds=3, fps=10)
    return {
        "video header declaring 16000x16000": (_forged(16_000, 16_000, b"\0" * 64), True),
        "video frame that is a 100 MB zlib bomb": (_forged(320, 240, _zlib_bomb(), True), True),
        "endless video: 5000 frames, no duration": (_endless(5000), True),
        "video over the duration limit (120 s)": (_tiny(frames=240, fps=2), True),
        "truncated MP4 (half)": (valid[: len(valid) // 2], True),
        "truncated WebM (half)": (_half(_pan(3, 10, "libvpx-vp9", "webm")), True),
        "MP4 header and random bytes": (b"\0\0\0\x18ftypisom" + np.random.bytes(20_000), True),
        "MPEG-2 video (codec not allowed)": (_tiny(frames=10, fps=10, codec="mpeg2video"), True),
        "valid H.264 video (control)": (valid, False),
    }


def _pan(seconds: float, fps: float, codec: str = "libx264", container: str = "mp4") -> bytes:
    image = Image.open(io.BytesIO(photo_bytes("astronaut.png"))).convert("RGB")
    frames = slideshow([image], seconds, fps, "pan", (320, 180))
    return encode(frames, fps, codec=codec, container=container)


def _tiny(frames: int, fps: float, codec: str = "libx264") -> bytes:
    """``frames`` small frames, each different, in MP4 (Matroska for other codecs)."""
    rng = np.random.default_rng(7)
    pictures = (rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) for _ in range(frames))
    return encode(pictures, fps, codec=codec, container="mp4" if codec == "libx264" else "matroska")


def _endless(frames: int) -> bytes:
    """A live-style WebM: no duration in its header, frames as long as the bytes go on."""
    pictures = (np.full((16, 16, 3), n % 200, dtype=np.uint8) for n in range(frames))
    return _without_duration(encode(pictures, 100, codec="libvpx-vp9", container="webm"))


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


# Matroska, element by element.


def _element(element_id: int, payload: bytes) -> bytes:
    return (
        element_id.to_bytes((element_id.bit_length() + 7) // 8, "big")
        + _size(len(payload))
        + payload
    )


def _size(value: int) -> bytes:
    return (value | 1 << 56).to_bytes(8, "big")  # always the 8-byte form: simple and valid


def _uint(element_id: int, value: int) -> bytes:
    return _element(element_id, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def _forged(width: int, height: int, frame: bytes, compressed: bool = False) -> bytes:
    """A Matroska file with one VP9 track declaring ``width`` x ``height`` and one frame."""
    header = _element(
        0x1A45DFA3,
        _uint(0x4286, 1)
        + _uint(0x42F7, 1)
        + _uint(0x42F2, 4)
        + _uint(0x42F3, 8)
        + _element(0x4282, b"matroska")
        + _uint(0x4287, 4)
        + _uint(0x4285, 2),
    )
    info = _element(
        0x1549A966, _uint(0x2AD7B1, 1_000_000) + _element(0x4489, struct.pack(">d", 1000.0))
    )
    encodings = b""
    if compressed:
        compression = _element(0x5034, _uint(0x4254, 0))  # ContentCompAlgo 0: zlib
        encoding = _uint(0x5031, 0) + _uint(0x5032, 1) + _uint(0x5033, 0) + compression
        encodings = _element(0x6D80, _element(0x6240, encoding))
    video = _element(0xE0, _uint(0xB0, width) + _uint(0xBA, height))
    track = _element(
        0xAE,
        _uint(0xD7, 1)
        + _uint(0x73C5, 1)
        + _uint(0x83, 1)
        + _element(0x86, b"V_VP9")
        + video
        + encodings,
    )
    block = _element(0xA3, b"\x81\x00\x00\x80" + frame)  # track 1, time 0, key frame
    cluster = _element(0x1F43B675, _uint(0xE7, 0) + block)
    segment = _element(0x18538067, info + _element(0x1654AE6B, track) + cluster)
    return header + segment


def _zlib_bomb() -> bytes:
    """100 MB of zeros, deflated to about 100 KB."""
    compressor = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    return b"".join(compressor.compress(chunk) for _ in range(100)) + compressor.flush()


def _without_duration(webm: bytes) -> bytes:
    """The WebM with its Duration element turned into a Void element of the same size.

    A live stream's header carries no duration; only the frames say how long it runs.
    """
    at = webm.find(b"\x44\x89\x88")  # Duration, 8 bytes: as FFmpeg's muxer writes it
    if at < 0:
        raise ValueError("no 8-byte Duration element to remove")
    # Void (0xEC) whose 1-byte size 0x89 (9) covers the old size byte and the 8-byte value.
    return webm[:at] + b"\xec" + webm[at + 1 :]
