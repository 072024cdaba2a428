"""The perceptual signals of one decoded image: for every upload (ingest) and every registration.

An upload gets PDQ of the image and of its 7 other rotations/flips; PDQ of the picture cut out
of what was added around it (padding, bars, frames, screenshot margins), as it is and mirrored,
for each such view; PDQ of each tile if the image is a collage (``tiles.py``); the image
embedding of the image, of each view and of each tile; the image's ORB keypoints; and the
embeddings of its largest faces. A registration gets PDQ of the image and of a few crops of it
(half crops too), so a cropped re-post still lands near one of them, and the image's embedding
and keypoints. The accuracy benchmark calls these same functions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, wait
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from services.ingest.embedding import Embedder
from services.ingest.faces import Face, FaceModels
from services.ingest.hashing import pdq, pdq_dihedral
from services.ingest.keypoints import KeypointExtractor
from services.ingest.tiles import collage_tiles
from services.ingest.trimming import content_views, grey
from services.shared.keypoints import Keypoints

T = TypeVar("T")

MIRRORED = 5  # the position of the left-right mirror in pdqhash's rotations/flips
# Large images are decoded at a reduced scale whose shorter side is at least this. PDQ of such a
# reduction stays within 10 bits of the whole image's (docs/benchmarks.md, `eraser bench pdq`);
# at 500, photographs 1000-1079 px on their shorter side, halved, drifted up to 22 bits.
DECODE_SIDE = 540
VIEW_SIDE = 640  # content views and embeddings are computed from at most this size
# Crops registered beside the whole image: (kept share of the width, of the height, anchor).
REFERENCE_CROPS = (
    (0.9, 0.9, "centre"),
    (0.8, 0.8, "centre"),
    (0.7, 0.7, "centre"),
    (0.8, 0.8, "top-left"),
    (0.8, 0.8, "top-right"),
    (0.8, 0.8, "bottom-left"),
    (0.8, 0.8, "bottom-right"),
    # Half crops (a re-post keeping one side of the picture): too far from any crop above.
    (0.55, 1.0, "left"),
    (0.55, 1.0, "right"),
)


@dataclass(frozen=True)
class SignalModels:
    """What computes the learned and local signals; any may be off (None)."""

    embedder: Embedder | None = None
    keypoints: KeypointExtractor | None = None
    faces: FaceModels | None = None
    max_faces: int = 5

    @classmethod
    def load(cls, embeddings: bool = True, keypoints: bool = True, faces: int = 0) -> SignalModels:
        """Build the models (about a second each); ``faces``: how many faces to embed, if any."""
        return cls(
            Embedder() if embeddings else None,
            KeypointExtractor() if keypoints else None,
            FaceModels() if faces else None,
            faces,
        )


@dataclass(frozen=True)
class ImageSignals:
    """PDQ hashes (8 per view), the image's PDQ quality, embeddings (one per view), keypoints.

    A collage's tiles add a PDQ hash and an embedding each, after the others.
    """

    pdq: tuple[str, ...]
    pdq_quality: int
    embeddings: np.ndarray  # views x 1280 float32; 0 x 0 without an embedder
    keypoints: Keypoints | None = None  # None without an extractor
    faces: tuple[Face, ...] = ()  # the largest faces, largest first; none without face models
    tiles: int = 0  # how many of the PDQ hashes and embeddings, the last ones, are of tiles


def thumbnail(pixels: np.ndarray, side: int = VIEW_SIDE) -> np.ndarray:
    """The image at most ``side`` pixels on its longer side."""
    if max(pixels.shape[:2]) <= side:
        return pixels
    image = Image.fromarray(pixels)
    image.thumbnail((side, side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(image)


def image_signals(
    pixels: np.ndarray,
    models: SignalModels,
    timings: dict[str, float] | None = None,
    stored_colours: np.ndarray | None = None,
    beside: Executor | None = None,
) -> ImageSignals:
    """The signals of an upload: the whole image, its content without borders, a collage's tiles.

    PDQ of the image's 8 rotations/flips, then (upright, mirrored) of each content view; views,
    tiles and embeddings come from the image at most ``VIEW_SIDE`` pixels a side.
    ``stored_colours``, a transparent image's colour channels as stored, add their PDQ: what a
    partner's hash list holds for the image.

    With ``beside`` (one worker thread), the embeddings, keypoints and faces are computed there
    while this thread computes the PDQ hashes: pdqhash holds the GIL, onnxruntime and OpenCV let
    it go, so an upload's scan takes about a quarter less time when a core is free, for a few
    percent more CPU (docs/benchmarks.md, "Fifth round").
    """
    clock = _Clock(timings)
    small = thumbnail(pixels)  # views and embeddings need no more detail than this
    shade = grey(small)  # trimming and collage detection look at brightness only
    views = [small, *content_views(small, shade)]
    cut = collage_tiles(small, shade)
    clock.lap("views and tiles")
    learned = (beside.submit if beside else _now)(
        _learned_and_faces, [*views, *cut], pixels, models, timings
    )
    clock.restart()  # without ``beside`` the learned signals were computed just now
    try:
        whole = pdq_dihedral(pixels)
        hashes = list(whole.dihedral)
        if stored_colours is not None:
            hashes += _upright_and_mirrored(stored_colours)
        for content in views[1:]:
            hashes += _upright_and_mirrored(content)
        tiles = [pdq(tile)[0] for tile in cut]
        clock.lap("pdq")
    finally:
        wait([learned])  # the models are never used by two uploads at once
    embeddings, keypoints, faces = learned.result()
    return ImageSignals(
        (*hashes, *tiles), whole.quality, embeddings, keypoints, tuple(faces), len(tiles)
    )


def _now(function: Callable[..., T], *args: Any) -> Future[T]:
    """``function(*args)`` called here, as a finished future."""
    done: Future[T] = Future()
    try:
        done.set_result(function(*args))
    except Exception as error:  # handed to whoever asks for the result, as an executor does
        done.set_exception(error)
    return done


def _learned_and_faces(
    views: list[np.ndarray],
    pixels: np.ndarray,
    models: SignalModels,
    timings: dict[str, float] | None,
) -> tuple[np.ndarray, Keypoints | None, list[Face]]:
    clock = _Clock(timings)
    embeddings, keypoints = learned_signals(views, models, clock)
    faces = models.faces.faces(pixels, models.max_faces) if models.faces is not None else []
    clock.lap("faces")
    return embeddings, keypoints, faces


def learned_signals(
    views: list[np.ndarray], models: SignalModels, clock: _Clock | None = None
) -> tuple[np.ndarray, Keypoints | None]:
    """Embeddings of the views (the whole image first) and keypoints of the whole image.

    Images and key frames of videos (``video_signals.py``) get these.
    """
    clock = clock or _Clock(None)
    embedder = models.embedder
    embeddings = (
        embedder.embed_many(views) if embedder is not None else np.empty((0, 0), dtype=np.float32)
    )
    clock.lap("embedding")
    keypoints = models.keypoints.extract(views[0]) if models.keypoints is not None else None
    clock.lap("keypoints")
    return embeddings, keypoints


def _upright_and_mirrored(pixels: np.ndarray) -> list[str]:
    """PDQ of a view as it is and mirrored.

    A picture cut out of a frame is upright or mirrored; its other turns are not worth a search
    (they would triple the matcher's work for a few rare cases).
    """
    dihedral = pdq_dihedral(pixels).dihedral
    return [dihedral[0], dihedral[MIRRORED]]


@dataclass(frozen=True)
class ReferenceSignals:
    """What a registration keeps of a protected image: hashes of it and of views of it."""

    pdq: list[str]  # the whole image first, then the crops
    pdq_quality: list[int]
    embeddings: np.ndarray  # views x 1280 float32; 0 x 1280 without an embedder
    keypoints: Keypoints | None = None  # None without an extractor


def reference_signals(
    pixels: np.ndarray, models: SignalModels, stored_colours: np.ndarray | None = None
) -> ReferenceSignals:
    """PDQ of a protected image and of its reference crops; its embedding and keypoints.

    A transparent image's first hash is that of its colour channels as stored (what partner hash
    lists and exports hold), then that of the image over white. Embeddings of crops and small
    rotations of the image were measured and dropped: keypoints catch those copies, and the extra
    embeddings cost 12 times the memory and let more unrelated photographs come close
    (docs/benchmarks.md).
    """
    crops = [_crop(pixels, width, height, anchor) for width, height, anchor in REFERENCE_CROPS]
    stored = [] if stored_colours is None else [stored_colours]
    hashed = [pdq(view) for view in (*stored, pixels, *crops)]
    small = thumbnail(pixels)
    embeddings = np.empty((0, 1280), dtype=np.float32)
    if models.embedder is not None:
        embeddings = models.embedder.embed_many([small])
    keypoints = models.keypoints.extract(small) if models.keypoints is not None else None
    return ReferenceSignals([h for h, _ in hashed], [q for _, q in hashed], embeddings, keypoints)


def _crop(pixels: np.ndarray, keep_width: float, keep_height: float, anchor: str) -> np.ndarray:
    height, width = pixels.shape[:2]
    h, w = round(height * keep_height), round(width * keep_width)
    top = (height - h) // 2 if anchor in ("centre", "left", "right") else 0
    top = height - h if anchor.startswith("bottom") else top
    left = (width - w) // 2 if anchor == "centre" else 0
    left = width - w if anchor.endswith("right") else left
    return np.ascontiguousarray(pixels[top : top + h, left : left + w])


class _Clock:
    def __init__(self, timings: dict[str, float] | None) -> None:
        self._timings = timings
        self._last = time.perf_counter()

    def restart(self) -> None:
        self._last = time.perf_counter()

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        if self._timings is not None:
            self._timings[step] = (now - self._last) * 1000
        self._last = now
