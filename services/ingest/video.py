"""Turns untrusted video bytes into frames sampled as Meta's vPDQ samples them, within hard limits.

Ingest sends an upload here instead of to ``decoding.py`` when its bytes start like an MP4/MOV or
a Matroska/WebM file (``container_of``); the registrar does the same for protected videos. Only
those two demuxers and the H.264, H.265, VP8, VP9, AV1 and MPEG-4 decoders are used, and the
bytes are read from memory (no temporary file, no protocol FFmpeg could follow). Limits are
checked from the header before any frame is decoded (dimensions, duration, frame count, frame
rate) and again on every decoded frame, with a wall-clock deadline; a video that breaks one, is
corrupt or truncated raises :class:`MediaUndecodableError`. Frames are decoded sequentially,
never by seeking (measured twice as cheap), and only sampled frames are converted to RGB.

Sampling is vPDQ's: ``frameMod = int(seconds_per_hash x average frame rate)`` (at least 1);
frame i (counted in presentation order) is hashed when ``i % frameMod == 0``, as RGB24 at its
native size, converted as FFmpeg's swscale does with ``SWS_AREA | SWS_ACCURATE_RND`` (exactly
Meta's published sample hashes on 94-100% of frames; without accurate rounding up to 22 bits
off); its timestamp is i / frame rate in single precision, as the vpdq tool computes it.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
from av.video.reformatter import Interpolation

from services.ingest.hashing import pdq
from services.shared.errors import MediaUndecodableError
from services.shared.vpdq import Feature

CODECS = frozenset({"h264", "hevc", "vp8", "vp9", "av1", "mpeg4"})
# ISO base media files that hold still images (HEIF, AVIF) are left to the image path.
_IMAGE_BRANDS = frozenset({b"avif", b"avis", b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1"})
_QUICKTIME_ATOMS = frozenset({b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"})
_RGB = Interpolation.AREA | Interpolation.ACCURATE_RND
_MAX_FRAME_RATE = 1000.0
# Header parsing reads at most this much before the first frame (FFmpeg's own default is 5 MB).
_OPEN_OPTIONS = {"probesize": "5000000", "analyzeduration": "5000000"}


@dataclass(frozen=True)
class Container:
    """A container eraser opens: FFmpeg's demuxer name, and the name verdicts report."""

    demuxer: str
    label: str


@dataclass(frozen=True)
class VideoLimits:
    """Hard limits on one video: pixels per frame, seconds, frames decoded, wall time."""

    max_pixels: int = 4096 * 2160
    max_duration_s: float = 600.0
    max_frames: int = 36_000
    max_scan_s: float = 60.0


@dataclass(frozen=True)
class Sampled:
    """A frame chosen for hashing: its number, its vPDQ timestamp and its RGB pixels."""

    number: int
    timestamp: float
    pixels: np.ndarray


def container_of(data: bytes) -> Container | None:
    """The container ``data`` starts like, if it is one eraser opens as a video."""
    head = data[:12]
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _IMAGE_BRANDS:
            return None
        return Container("mov", "MOV" if brand == b"qt  " else "MP4")
    if head[4:8] in _QUICKTIME_ATOMS:
        return Container("mov", "MOV")
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return Container("matroska", "MATROSKA")
    return None


class VideoDecoder:
    """One video opened under limits; :meth:`sampled` decodes it once, front to back."""

    def __init__(self, data: bytes, container: Container, limits: VideoLimits) -> None:
        """Open the video and check its header.

        Raises:
            MediaUndecodableError: no video stream, a codec not allowed, or a limit broken.
        """
        self._limits = limits
        self._deadline = time.monotonic() + limits.max_scan_s
        self.label = container.label
        self.decoded = 0
        try:
            self._file: Any = av.open(
                io.BytesIO(data), format=container.demuxer, options=_OPEN_OPTIONS
            )
        except av.FFmpegError as error:
            raise MediaUndecodableError(f"unreadable video ({type(error).__name__})") from None
        try:
            self._stream = self._video_stream()
            # Read now: the header's fields are gone once the file is closed.
            self.width = int(self._stream.codec_context.width)
            self.height = int(self._stream.codec_context.height)
            self.declared_frames = int(self._stream.frames or 0)
            self.declared_s = self._declared_s()
            self.frame_rate = self._checked_header()
        except BaseException:
            self._file.close()
            raise

    def frame_mod(self, seconds_per_hash: float) -> int:
        """The sampling step of vPDQ: hash every ``frame_mod``-th frame."""
        return max(1, int(seconds_per_hash * self.frame_rate))

    def sampled(self, frame_mod: int) -> Iterator[Sampled]:
        """Every ``frame_mod``-th frame from the first, in RGB; the rest decoded and dropped.

        Raises:
            MediaUndecodableError: corrupt or truncated data, or a limit broken while decoding.
        """
        fps = np.float32(self.frame_rate)
        try:
            for frame in self._file.decode(self._stream):
                number = self.decoded
                self._count(frame)
                if number % frame_mod == 0:
                    pixels = frame.reformat(format="rgb24", interpolation=_RGB, threads=1)
                    yield Sampled(number, float(np.float32(number) / fps), pixels.to_ndarray())
        except av.FFmpegError as error:
            raise MediaUndecodableError(f"corrupt video data ({type(error).__name__})") from None
        finally:
            self._file.close()
        self._check_complete()

    def check_time(self) -> None:
        """Raise if the wall-clock budget is spent (hashing calls this between frames too).

        Raises:
            MediaUndecodableError: the scan took longer than its limit.
        """
        if time.monotonic() > self._deadline:
            raise MediaUndecodableError(
                f"video took longer than its {self._limits.max_scan_s:g} s limit to scan"
            )

    def _video_stream(self) -> Any:
        streams = self._file.streams.video
        if not streams:
            raise MediaUndecodableError("no video stream")
        stream = streams[0]  # the first, as vPDQ takes it
        codec = stream.codec_context.codec.canonical_name
        if codec not in CODECS:
            raise MediaUndecodableError(f"video codec {codec[:16]!r} is not supported")
        # One thread: ingest runs one process per core, and other uploads wait for this one.
        stream.codec_context.thread_count = 1
        return stream

    def _declared_s(self) -> float | None:
        """The duration the header declares, if it declares one."""
        stream = self._stream
        if stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
        return self._file.duration / 1e6 if self._file.duration else None

    def _checked_header(self) -> float:
        """The frame rate, once the header passes every limit."""
        limits = self._limits
        if self.width <= 0 or self.height <= 0:
            raise MediaUndecodableError("video has no pixels")
        if self.width * self.height > limits.max_pixels:
            raise MediaUndecodableError(f"video is {self.width}x{self.height}, over the limit")
        if self.declared_frames > limits.max_frames:
            raise MediaUndecodableError(f"video declares {self.declared_frames} frames, too many")
        declared = self.declared_s
        if declared is not None and declared > limits.max_duration_s:
            raise MediaUndecodableError(f"video declares {declared:.0f} s, over the limit")
        stream = self._stream
        rate = stream.average_rate or stream.base_rate  # vPDQ's order: average, then r_frame_rate
        fps = float(rate) if rate else 0.0
        if not 0 < fps <= _MAX_FRAME_RATE or not math.isfinite(fps):
            raise MediaUndecodableError("video has no usable frame rate")
        return fps

    def _count(self, frame: Any) -> None:
        self.decoded += 1
        limits = self._limits
        if frame.width * frame.height > limits.max_pixels:
            raise MediaUndecodableError(f"a frame is {frame.width}x{frame.height}, over the limit")
        if self.decoded > limits.max_frames:
            raise MediaUndecodableError(f"video has more than {limits.max_frames} frames")
        if self.decoded / self.frame_rate > limits.max_duration_s:
            raise MediaUndecodableError(f"video runs over {limits.max_duration_s:g} s")
        self.check_time()

    def _check_complete(self) -> None:
        """Refuse a video that ended early: fewer frames or seconds than its header declares."""
        if self.decoded == 0:
            raise MediaUndecodableError("video has no decodable frame")
        declared_frames = self.declared_frames
        # A frame or two may be dropped by an edit list (encoder priming): not a truncation.
        if declared_frames and self.decoded < 0.99 * declared_frames - 2:
            raise MediaUndecodableError(
                f"video is truncated: {self.decoded} of {declared_frames} frames"
            )
        declared = self.declared_s
        shown = self.decoded / self.frame_rate
        if declared is not None and shown < declared - max(0.5, 0.05 * declared):
            raise MediaUndecodableError(f"video is truncated: {shown:.1f} of {declared:.1f} s")


def features(decoder: VideoDecoder, seconds_per_hash: float) -> Iterator[tuple[int, Feature]]:
    """The vPDQ of a video: (frame number, feature) per sampled frame, as the vpdq tool gives.

    Raises:
        MediaUndecodableError: as :meth:`VideoDecoder.sampled`.
    """
    for frame in decoder.sampled(decoder.frame_mod(seconds_per_hash)):
        code, quality = pdq(frame.pixels)
        yield frame.number, Feature(code, quality, round(frame.timestamp, 3))
        decoder.check_time()
