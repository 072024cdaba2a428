"""The perceptual signals of one decoded image: for every upload (ingest) and every registration.

An upload gets PDQ of the image and of its 7 other rotations/flips; PDQ of the picture cut out
of what was added around it (padding, bars, frames, screenshot margins), as it is and mirrored,
for each such view; and the image embedding of the image and of each view. A registration gets
PDQ and embeddings of the image and of a few crops of it, so a cropped re-post still lands near
one of them. The accuracy benchmark calls these same functions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from PIL import Image

from services.ingest.embedding import Embedder
from services.ingest.hashing import pdq, pdq_dihedral
from services.ingest.trimming import content_views

# Crops registered beside the whole image: (kept fraction of each side, anchor).
REFERENCE_ROTATIONS = (-12, -6, 6, 12)
MIRRORED = 5  # the position of the left-right mirror in pdqhash's rotations/flips
DECODE_SIDE = 500  # large images are decoded at a reduced scale no smaller than this
VIEW_SIDE = 640  # content views and embeddings are computed from at most this size
REFERENCE_CROPS = (
    (0.9, "centre"),
    (0.8, "centre"),
    (0.7, "centre"),
    (0.8, "top-left"),
    (0.8, "top-right"),
    (0.8, "bottom-left"),
    (0.8, "bottom-right"),
)


@dataclass(frozen=True)
class ImageSignals:
    """PDQ hashes (8 per view), the image's PDQ quality, and embeddings (one per view)."""

    pdq: tuple[str, ...]
    pdq_quality: int
    embeddings: np.ndarray  # views x 1280 float32; 0 x 0 without an embedder


def thumbnail(pixels: np.ndarray, side: int = VIEW_SIDE) -> np.ndarray:
    """The image at most ``side`` pixels on its longer side."""
    if max(pixels.shape[:2]) <= side:
        return pixels
    image = Image.fromarray(pixels)
    image.thumbnail((side, side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(image)


def image_signals(
    pixels: np.ndarray, embedder: Embedder | None, timings: dict[str, float] | None = None
) -> ImageSignals:
    """The signals of an upload: the whole image, and its content without borders."""
    clock = _Clock(timings)
    whole = pdq_dihedral(pixels)
    clock.lap("pdq")
    small = thumbnail(pixels)  # views and embeddings need no more detail than this
    views = [small, *content_views(small)]
    hashes = list(whole.dihedral)
    for content in views[1:]:
        # A picture cut out of a frame is upright or mirrored; its other turns are not worth a
        # search (they would triple the matcher's work for a few rare cases).
        dihedral = pdq_dihedral(content).dihedral
        hashes += [dihedral[0], dihedral[MIRRORED]]
    clock.lap("trimmed pdq")
    embeddings = (
        embedder.embed_many(views) if embedder is not None else np.empty((0, 0), dtype=np.float32)
    )
    clock.lap("embedding")
    return ImageSignals(pdq=tuple(hashes), pdq_quality=whole.quality, embeddings=embeddings)


@dataclass(frozen=True)
class ReferenceSignals:
    """What a registration keeps of a protected image: hashes of it and of views of it."""

    pdq: list[str]  # the whole image first, then the crops
    pdq_quality: list[int]
    embeddings: np.ndarray  # views x 1280 float32; 0 x 1280 without an embedder


def reference_signals(pixels: np.ndarray, embedder: Embedder | None) -> ReferenceSignals:
    """PDQ of a protected image and of its reference crops, and embeddings of those.

    Embeddings also of small rotations of the image (cropped to hide the corners), so rotated
    re-posts land near one of them.
    """
    crops = [_crop(pixels, keep, anchor) for keep, anchor in REFERENCE_CROPS]
    hashed = [pdq(view) for view in (pixels, *crops)]
    embeddings = np.empty((0, 1280), dtype=np.float32)
    if embedder is not None:
        small = thumbnail(pixels)
        rotations = [_rotated(small, degrees) for degrees in REFERENCE_ROTATIONS]
        small_crops = [_crop(small, keep, anchor) for keep, anchor in REFERENCE_CROPS]
        embeddings = embedder.embed_many([small, *small_crops, *rotations])
    return ReferenceSignals([h for h, _ in hashed], [q for _, q in hashed], embeddings)


def _rotated(pixels: np.ndarray, degrees: float) -> np.ndarray:
    image = Image.fromarray(pixels).rotate(degrees, resample=Image.Resampling.BICUBIC)
    return _crop(np.asarray(image), 0.8, "centre")


def _crop(pixels: np.ndarray, keep: float, anchor: str) -> np.ndarray:
    height, width = pixels.shape[:2]
    h, w = round(height * keep), round(width * keep)
    top = {"centre": (height - h) // 2, "top-left": 0, "top-right": 0}.get(anchor, height - h)
    left = {"centre": (width - w) // 2, "top-left": 0, "bottom-left": 0}.get(anchor, width - w)
    return np.ascontiguousarray(pixels[top : top + h, left : left + w])


class _Clock:
    def __init__(self, timings: dict[str, float] | None) -> None:
        self._timings = timings
        self._last = time.perf_counter()

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        if self._timings is not None:
            self._timings[step] = (now - self._last) * 1000
        self._last = now
