"""The perceptual signals of one decoded image: for every upload (ingest) and every registration.

An upload gets PDQ of the image and of its 7 other rotations/flips; PDQ of the picture cut out
of what was added around it (padding, bars, frames, screenshot margins), as it is and mirrored,
for each such view; the image embedding of the image and of each view; and the image's ORB
keypoints. A registration gets PDQ of the image and of a few crops of it, so a cropped re-post
still lands near one of them, and the image's embedding and keypoints. The accuracy benchmark
calls these same functions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from PIL import Image

from services.ingest.embedding import Embedder
from services.ingest.hashing import pdq, pdq_dihedral
from services.ingest.keypoints import KeypointExtractor
from services.ingest.trimming import content_views
from services.shared.keypoints import Keypoints

# Crops registered beside the whole image: (kept fraction of each side, anchor).
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
class SignalModels:
    """What computes the learned and local signals; either may be off (None)."""

    embedder: Embedder | None = None
    keypoints: KeypointExtractor | None = None

    @classmethod
    def load(cls, embeddings: bool = True, keypoints: bool = True) -> SignalModels:
        """Build the models (the embedder takes about a second)."""
        return cls(Embedder() if embeddings else None, KeypointExtractor() if keypoints else None)


@dataclass(frozen=True)
class ImageSignals:
    """PDQ hashes (8 per view), the image's PDQ quality, embeddings (one per view), keypoints."""

    pdq: tuple[str, ...]
    pdq_quality: int
    embeddings: np.ndarray  # views x 1280 float32; 0 x 0 without an embedder
    keypoints: Keypoints | None = None  # None without an extractor


def thumbnail(pixels: np.ndarray, side: int = VIEW_SIDE) -> np.ndarray:
    """The image at most ``side`` pixels on its longer side."""
    if max(pixels.shape[:2]) <= side:
        return pixels
    image = Image.fromarray(pixels)
    image.thumbnail((side, side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(image)


def image_signals(
    pixels: np.ndarray, models: SignalModels, timings: dict[str, float] | None = None
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
    embedder = models.embedder
    embeddings = (
        embedder.embed_many(views) if embedder is not None else np.empty((0, 0), dtype=np.float32)
    )
    clock.lap("embedding")
    keypoints = models.keypoints.extract(small) if models.keypoints is not None else None
    clock.lap("keypoints")
    return ImageSignals(tuple(hashes), whole.quality, embeddings, keypoints)


@dataclass(frozen=True)
class ReferenceSignals:
    """What a registration keeps of a protected image: hashes of it and of views of it."""

    pdq: list[str]  # the whole image first, then the crops
    pdq_quality: list[int]
    embeddings: np.ndarray  # views x 1280 float32; 0 x 1280 without an embedder
    keypoints: Keypoints | None = None  # None without an extractor


def reference_signals(pixels: np.ndarray, models: SignalModels) -> ReferenceSignals:
    """PDQ of a protected image and of its reference crops; its embedding and keypoints.

    Embeddings of crops and small rotations of the image were measured and dropped: keypoints
    catch those copies, and the extra embeddings cost 12 times the memory and let more unrelated
    photographs come close (docs/benchmarks.md).
    """
    crops = [_crop(pixels, keep, anchor) for keep, anchor in REFERENCE_CROPS]
    hashed = [pdq(view) for view in (pixels, *crops)]
    small = thumbnail(pixels)
    embeddings = np.empty((0, 1280), dtype=np.float32)
    if models.embedder is not None:
        embeddings = models.embedder.embed_many([small])
    keypoints = models.keypoints.extract(small) if models.keypoints is not None else None
    return ReferenceSignals([h for h, _ in hashed], [q for _, q in hashed], embeddings, keypoints)


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
