"""The accuracy benchmark's data: originals, their edited copies, distractors, and their signals.

Originals are registered with the registrar's code (``hash_file``); every upload is decoded and
scanned with ingest's code (``decode``, ``image_signals``, ``digests``), in worker processes.
Distractors are the photo pool's other photographs and the large distractor pool
(``distractors.py``); their signals are kept between runs (``signal_cache.py``).
"""

from __future__ import annotations

import io
import multiprocessing
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from services.bench import dataset, distractors, signal_cache
from services.bench.edits import variants
from services.ingest.decoding import decode
from services.ingest.hashing import digests
from services.ingest.signals import DECODE_SIDE, SignalModels, image_signals
from services.registrar import hash_file
from services.shared.keypoints import keypoints_to_text
from services.shared.schemas import EntryRegistered

ORIGINALS = 80
MIN_DISTRACTORS = 2000
FILLERS = 8  # distractor photos that fill collages' other tiles
BANK = "bench"


@dataclass
class Upload:
    """One scanned upload: what it is, and its signals."""

    edit_class: str  # "distractor" for unrelated photos
    name: str
    original: int  # -1 for distractors
    derived: bool = False
    key: str = ""  # a pool distractor's file, relative to the cache: its signals are kept
    pdq: list[str] = field(default_factory=list)
    quality: int = 0
    embeddings: np.ndarray | None = None
    sha256: str = ""
    md5: str = ""
    keypoints: str | None = None  # wire form
    tiles: int = 0  # the last PDQ hashes that are of collage tiles


@dataclass
class Corpus:
    """Originals, uploads and their bytes."""

    originals: list[bytes]
    uploads: list[Upload]
    data: list[bytes | Path]  # what is uploaded, or the file holding it
    distractor_photos: int = 0
    derived: int = 0
    registrations: list[EntryRegistered] = field(default_factory=list)


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def _tiles(image: Image.Image) -> list[Image.Image]:
    """Non-overlapping tiles of a distractor photograph (2x2, 3x3, 4x4 grids, >= 160 px)."""
    out = []
    for grid in (2, 3, 4):
        w, h = image.width // grid, image.height // grid
        if min(w, h) < 160:
            break
        out += [
            image.crop((x * w, y * h, (x + 1) * w, (y + 1) * h))
            for y in range(grid)
            for x in range(grid)
        ]
    return out


def build(
    cache: Path, seed: int = 2026, originals: int = ORIGINALS, pool_limit: int | None = None
) -> Corpus:
    """Pick originals, make edited copies, gather distractors (topped up with derived tiles).

    ``pool_limit`` takes only that many of the distractor pool's photographs (for development).
    """
    photos = dataset.prepare(cache)
    rng = random.Random(seed)
    rng.shuffle(photos)
    chosen = [Image.open(p.path).convert("RGB") for p in photos[:originals]]
    others = [Image.open(p.path).convert("RGB") for p in photos[ORIGINALS:]]
    corpus = Corpus(originals=[_jpeg(im) for im in chosen], uploads=[], data=[])
    edits = variants(others[:FILLERS])
    for index, image in enumerate(chosen):
        for variant in edits:
            corpus.uploads.append(Upload(variant.edit_class, variant.name, index))
            corpus.data.append(variant.apply(image))
    for image in others:
        corpus.uploads.append(Upload("distractor", "photo", -1))
        corpus.data.append(_jpeg(image))
    pool = distractors.prepare(cache)
    random.Random(seed).shuffle(pool)
    for photo in pool[:pool_limit]:
        key = str(Path(photo.path).relative_to(cache.resolve()))
        corpus.uploads.append(Upload("distractor", photo.source, -1, key=key))
        corpus.data.append(Path(photo.path))
    corpus.distractor_photos = len(others) + len(pool[:pool_limit])
    tiles = [tile for image in others for tile in _tiles(image)]
    rng.shuffle(tiles)
    for tile in tiles[: max(0, MIN_DISTRACTORS - corpus.distractor_photos)]:
        corpus.uploads.append(Upload("distractor", "tile", -1, derived=True))
        corpus.data.append(_jpeg(tile))
        corpus.derived += 1
    return corpus


_MODELS: SignalModels | None = None  # one per worker process, built on first use


def _models() -> SignalModels:
    global _MODELS
    if _MODELS is None:
        _MODELS = SignalModels.load()
    return _MODELS


def _register(item: tuple[int, bytes]) -> EntryRegistered:
    index, data = item
    return hash_file(data, BANK, 50, {"original": str(index)}, _models()).registration


def _scan(data: bytes | Path) -> tuple[Upload, dict[str, float]]:
    """Ingest's signals of one upload, and how many milliseconds each step took."""
    if isinstance(data, Path):
        data = data.read_bytes()
    started = time.perf_counter()
    pixels = decode(data, 200_000_000, DECODE_SIDE).pixels
    timings = {"decode": (time.perf_counter() - started) * 1000}
    signals = image_signals(pixels, _models(), timings)
    files = digests(data)
    scanned = Upload(
        "",
        "",
        -1,
        pdq=list(signals.pdq),
        quality=signals.pdq_quality,
        embeddings=signals.embeddings,
        sha256=files.sha256,
        md5=files.md5,
        keypoints=keypoints_to_text(signals.keypoints) if signals.keypoints else None,
        tiles=signals.tiles,
    )
    return scanned, timings


_SIGNALS = ("pdq", "quality", "embeddings", "sha256", "md5", "keypoints", "tiles")


def scan(corpus: Corpus, workers: int, cache: Path) -> dict[str, float]:
    """Register the originals and scan every upload with ``workers`` processes; mean timings.

    Pool distractors scanned by the same code before are taken from the signal cache; the
    timings are those of the uploads scanned in this run.
    """
    kept = signal_cache.load(cache)
    todo = [n for n, u in enumerate(corpus.uploads) if not u.key or u.key not in kept]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        corpus.registrations = pool.map(_register, list(enumerate(corpus.originals)), chunksize=4)
        scanned = pool.map(_scan, [corpus.data[n] for n in todo], chunksize=16)
    totals: dict[str, list[float]] = defaultdict(list)
    for n, (signals, timings) in zip(todo, scanned, strict=True):
        upload = corpus.uploads[n]
        for name in _SIGNALS:
            setattr(upload, name, getattr(signals, name))
        if upload.key:
            kept[upload.key] = {name: getattr(signals, name) for name in _SIGNALS}
        for step, ms in timings.items():
            totals[step].append(ms)
    for upload in corpus.uploads:
        if upload.key and upload.embeddings is None:
            for name in _SIGNALS:
                setattr(upload, name, kept[upload.key][name])
    if any(corpus.uploads[n].key for n in todo):
        signal_cache.save(cache, kept)
    return {step: float(np.mean(values)) for step, values in totals.items()}
