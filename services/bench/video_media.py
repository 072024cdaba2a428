"""Videos made in code for the video benchmark and the tests: slideshows, and edits of any video.

Everything is encoded with PyAV (libx264 in MP4 unless asked otherwise), offline. A slideshow shows
photographs in a 16:9 frame, each for a few seconds, fitted with bars (``static``), slowly zoomed
(``zoom``: 1.0 to 1.15 over the slide, bars kept), or filling the frame, cropped to it, and
panning slowly (``pan``: 12% of the frame over the slide). Edits re-decode a video frame by
frame and encode the result: lower bitrate, 480p, 25 fps, an excerpt, a watermark, letterbox
bars, a mirror image, 1.25x speed.
"""

from __future__ import annotations

import io
import itertools
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from av.container import OutputContainer
from av.video.stream import VideoStream
from PIL import Image, ImageDraw, ImageFont

Frames = Iterator[np.ndarray]


@dataclass(frozen=True)
class Clip:
    """Decoded frames (RGB), produced one at a time, and the frame rate they play at."""

    frames: Iterator[np.ndarray]
    fps: float


def encode(
    frames: Iterable[np.ndarray],
    fps: float,
    codec: str = "libx264",
    container: str = "mp4",
    bitrate: int | None = None,
) -> bytes:
    """Frames (H x W x 3 uint8, even sides) encoded as a video file's bytes."""
    with tempfile.TemporaryDirectory(prefix="eraser-video-") as folder:
        path = os.path.join(folder, f"video.{'mkv' if container == 'matroska' else container}")
        with av.open(path, "w", format=container) as out:
            stream: VideoStream | None = None
            for frame in frames:
                if stream is None:
                    stream = _stream(out, codec, fps, frame.shape, bitrate)
                out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            if stream is not None:
                out.mux(stream.encode(None))
        with open(path, "rb") as file:
            return file.read()


def _stream(
    out: OutputContainer, codec: str, fps: float, shape: tuple[int, ...], bitrate: int | None
) -> VideoStream:
    stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
    assert isinstance(stream, VideoStream)
    stream.height, stream.width = shape[0], shape[1]
    stream.pix_fmt = "yuv420p"
    stream.thread_count = 1
    if bitrate:
        stream.bit_rate = bitrate
    if codec == "libx264":
        # veryfast: what platforms transcode uploads with; medium took 4x longer here.
        stream.options = {"preset": "veryfast", **({} if bitrate else {"crf": "23"})}
    return stream


def decode(data: bytes) -> Clip:
    """Every frame of a video, in RGB, decoded as it is read, and its frame rate."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.base_rate or 25)
    return Clip(_frames(data), fps)


def _frames(data: bytes) -> Frames:
    with av.open(io.BytesIO(data), mode="r") as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


def fit(image: Image.Image, size: tuple[int, int], zoom: float = 1.0) -> np.ndarray:
    """``image`` scaled by ``zoom`` about its centre, fitted into ``size`` with black bars."""
    width, height = size
    scale = min(width / image.width, height / image.height)
    inner = (max(2, round(image.width * scale)), max(2, round(image.height * scale)))
    if zoom != 1.0:
        crop_w, crop_h = image.width / zoom, image.height / zoom
        left, top = (image.width - crop_w) / 2, (image.height - crop_h) / 2
        image = image.crop((round(left), round(top), round(left + crop_w), round(top + crop_h)))
    canvas = Image.new("RGB", size)
    canvas.paste(image.resize(inner, Image.Resampling.BILINEAR), _centred(inner, size))
    return np.asarray(canvas)


def pan(image: Image.Image, size: tuple[int, int]) -> Callable[[float], np.ndarray]:
    """A ``size`` window filled by ``image`` (cropped to its shape), moved slowly, as a function.

    As ``progress`` goes from 0 to 1 the window moves by 12% of its size at most, along the
    picture's overhang.
    """
    width, height = size
    scale = max(width / image.width, height / image.height) * 1.15  # room to move either way
    scaled = np.asarray(
        image.resize(
            (round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR
        )
    )
    spare_x, spare_y = scaled.shape[1] - width, scaled.shape[0] - height
    travel_x, travel_y = min(spare_x, round(0.12 * width)), min(spare_y, round(0.12 * height))

    def at(progress: float) -> np.ndarray:
        left = (spare_x - travel_x) // 2 + round(travel_x * progress)
        top = (spare_y - travel_y) // 2 + round(travel_y * progress)
        return np.ascontiguousarray(scaled[top : top + height, left : left + width])

    return at


def slideshow(
    photos: list[Image.Image],
    seconds: float,
    fps: float,
    motion: str = "static",
    size: tuple[int, int] = (1280, 720),
) -> Frames:
    """Each photo for ``seconds``: ``static``, ``zoom`` (1.0 to 1.15) or ``pan``."""
    count = max(1, round(seconds * fps))
    for image in photos:
        still = fit(image, size) if motion == "static" else None
        moving = pan(image, size) if motion == "pan" else None
        for at in range(count):
            progress = at / max(1, count - 1)
            if still is not None:
                yield still
            elif moving is not None:
                yield moving(progress)
            else:
                yield fit(image, size, 1.0 + 0.15 * progress)


def _centred(inner: tuple[int, int], outer: tuple[int, int]) -> tuple[int, int]:
    return (outer[0] - inner[0]) // 2, (outer[1] - inner[1]) // 2


Edit = Callable[[Clip], Clip]


def edited(data: bytes, *edits: Edit, bitrate: int | None = None) -> bytes:
    """The video decoded, changed by each edit in turn, and encoded again (at ``bitrate``)."""
    clip = decode(data)
    for edit in edits:
        clip = edit(clip)
    return encode(clip.frames, clip.fps, bitrate=bitrate)


def resized(height: int) -> Edit:
    """Scaled to ``height`` lines, the width to keep the shape (rounded to even)."""
    return each(lambda frame: _scaled(frame, height))


def retimed(fps: float, speed: float = 1.0) -> Edit:
    """Played ``speed`` times as fast, resampled to ``fps`` (frames dropped or repeated)."""

    def frames(clip: Clip) -> Frames:
        current, at = None, -1
        for shown in itertools.count():
            wanted = int(shown / fps * speed * clip.fps)
            while at < wanted:
                current, at = next(clip.frames, None), at + 1
                if current is None:
                    return
            assert current is not None
            yield current

    return lambda clip: Clip(frames(clip), fps)


def excerpt(start_s: float, length_s: float) -> Edit:
    """``length_s`` seconds from ``start_s``."""

    def apply(clip: Clip) -> Clip:
        first = round(start_s * clip.fps)
        return Clip(
            itertools.islice(clip.frames, first, first + round(length_s * clip.fps)), clip.fps
        )

    return apply


def each(change: Callable[[np.ndarray], np.ndarray]) -> Edit:
    """Every frame changed by ``change``."""
    return lambda clip: Clip(map(change, clip.frames), clip.fps)


def mirror(frame: np.ndarray) -> np.ndarray:
    """Left and right swapped."""
    return np.ascontiguousarray(frame[:, ::-1])


def letterbox(frame: np.ndarray, bars: float = 0.125) -> np.ndarray:
    """Scaled down into the same frame with black bars top and bottom (``bars`` each)."""
    height, width = frame.shape[:2]
    inner = _even(round(height * (1 - 2 * bars)))
    scaled = np.asarray(Image.fromarray(frame).resize((width, inner), Image.Resampling.BILINEAR))
    out = np.zeros_like(frame)
    top = (height - inner) // 2
    out[top : top + inner] = scaled
    return out


def watermark(frame: np.ndarray) -> np.ndarray:
    """A semi-transparent logo box and text in the bottom-right corner."""
    image = Image.fromarray(frame).convert("RGBA")
    layer = Image.new("RGBA", image.size)
    draw = ImageDraw.Draw(layer)
    width, height = image.size
    box = (round(width * 0.7), round(height * 0.82), round(width * 0.97), round(height * 0.95))
    draw.rectangle(box, fill=(255, 255, 255, 110))
    font = ImageFont.load_default(size=max(10, height // 20))
    draw.text((box[0] + 8, box[1] + 4), "@reposter", fill=(0, 0, 0, 200), font=font)
    return np.asarray(Image.alpha_composite(image, layer).convert("RGB"))


def _scaled(frame: np.ndarray, height: int) -> np.ndarray:
    width = _even(round(frame.shape[1] * height / frame.shape[0]))
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.BILINEAR))


def _even(value: int) -> int:
    return max(2, value - value % 2)
