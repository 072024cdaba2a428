"""``eraser bench accuracy``: recall and precision on real photographs, per edit class.

Originals are registered with the registrar's code (``hash_file``); every upload is decoded and
scanned with ingest's code (``decode``, ``image_signals``, ``digests``). Two evaluations follow:

- each idea alone, vectorised over all uploads and originals (distance and cosine matrices), to
  measure what each signal adds;
- the final configuration through the matcher's own code, in process (``Registry`` and
  ``MatcherProcessor.process``: the same search and bank rules as the service; no broker).

The embedding threshold is set on one half of the distractors (calibration: just above the best
cosine any of them reaches, plus a margin); precision is measured on the other half plus every
edited copy, so it is not fitted to the data it is reported on.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from services.bench import dataset
from services.bench.edits import variants
from services.ingest.decoding import decode
from services.ingest.hashing import digests
from services.ingest.signals import DECODE_SIDE, image_signals
from services.registrar import hash_file
from services.shared.schemas import (
    EntryRegistered,
    MediaHashed,
    embedding_to_text,
    new_event,
    now,
)

ORIGINALS = 80
MIN_DISTRACTORS = 2000
PDQ_THRESHOLD = 31
MARGIN = 0.02
BANK = "bench"


@dataclass
class Upload:
    """One scanned upload: what it is, and its signals."""

    edit_class: str  # "distractor" for unrelated photos
    name: str
    original: int  # -1 for distractors
    derived: bool = False
    pdq: list[str] = field(default_factory=list)
    quality: int = 0
    embeddings: np.ndarray | None = None
    sha256: str = ""
    md5: str = ""


@dataclass
class Corpus:
    """Originals, uploads and their bytes."""

    originals: list[bytes]
    uploads: list[Upload]
    data: list[bytes]
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


def build(cache: Path, seed: int = 2026) -> Corpus:
    """Pick originals, make edited copies, gather distractors (topped up with derived tiles)."""
    photos = dataset.prepare(cache)
    rng = random.Random(seed)
    rng.shuffle(photos)
    originals = [Image.open(p.path).convert("RGB") for p in photos[:ORIGINALS]]
    corpus = Corpus(originals=[_jpeg(im) for im in originals], uploads=[], data=[])
    for index, image in enumerate(originals):
        for variant in variants():
            corpus.uploads.append(Upload(variant.edit_class, variant.name, index))
            corpus.data.append(variant.apply(image))
    others = [Image.open(p.path).convert("RGB") for p in photos[ORIGINALS:]]
    for image in others:
        corpus.uploads.append(Upload("distractor", "photo", -1))
        corpus.data.append(_jpeg(image))
    corpus.distractor_photos = len(others)
    tiles = [tile for image in others for tile in _tiles(image)]
    rng.shuffle(tiles)
    for tile in tiles[: max(0, MIN_DISTRACTORS - len(others))]:
        corpus.uploads.append(Upload("distractor", "tile", -1, derived=True))
        corpus.data.append(_jpeg(tile))
        corpus.derived += 1
    return corpus


_EMBEDDER: Any = None


def _embedder() -> Any:
    global _EMBEDDER
    if _EMBEDDER is None:
        from services.ingest.embedding import Embedder

        _EMBEDDER = Embedder()
    return _EMBEDDER


def _register(item: tuple[int, bytes]) -> EntryRegistered:
    index, data = item
    return hash_file(data, BANK, 50, {"original": str(index)}, _embedder()).registration


def _scan(data: bytes) -> tuple[list[str], int, np.ndarray, str, str, dict[str, float]]:
    """Ingest's signals of one upload, and how many milliseconds each step took."""
    started = time.perf_counter()
    pixels = decode(data, 200_000_000, DECODE_SIDE).pixels
    timings = {"decode": (time.perf_counter() - started) * 1000}
    signals = image_signals(pixels, _embedder(), timings)
    files = digests(data)
    return (
        list(signals.pdq),
        signals.pdq_quality,
        signals.embeddings,
        files.sha256,
        files.md5,
        timings,
    )


def scan(corpus: Corpus, workers: int) -> dict[str, float]:
    """Register the originals and scan every upload with ``workers`` processes; mean timings."""
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        corpus.registrations = pool.map(_register, list(enumerate(corpus.originals)), chunksize=4)
        scanned = pool.map(_scan, corpus.data, chunksize=16)
    totals: dict[str, list[float]] = defaultdict(list)
    for upload, (pdq, quality, embeddings, sha256, md5, timings) in zip(
        corpus.uploads, scanned, strict=True
    ):
        upload.pdq, upload.quality, upload.embeddings = pdq, quality, embeddings
        upload.sha256, upload.md5 = sha256, md5
        for step, ms in timings.items():
            totals[step].append(ms)
    return {step: float(np.mean(values)) for step, values in totals.items()}


# Each idea alone, vectorised.


@dataclass(frozen=True)
class Idea:
    """Which signals a configuration uses."""

    name: str
    content_views: bool  # upload: PDQ (and embeddings) of the content without added borders
    crops: bool  # registration: PDQ and embeddings of reference crops
    embedding: bool
    rotations: bool = False  # registration: embeddings of small rotations
    agreement: bool = False  # PDQ and embedding both nearly close enough


IDEAS = (
    Idea("PDQ, rotations/flips at query time", False, False, False),
    Idea("+ PDQ of the upload without added borders", True, False, False),
    Idea("+ PDQ of registered crops", True, True, False),
    Idea("+ image embedding (whole, content, crops)", True, True, True),
    Idea("+ embeddings of small rotations at registration", True, True, True, True),
    Idea("+ two weaker signals agreeing", True, True, True, True, True),
)


def _codes(hashes: list[str]) -> np.ndarray:
    return np.frombuffer(bytes.fromhex("".join(hashes)), dtype="<u8").reshape(-1, 4)


def pdq_distances(corpus: Corpus, idea: Idea) -> np.ndarray:
    """Smallest PDQ distance from each upload to each original (uploads x originals)."""
    references = [
        _codes(r.signals.pdq if idea.crops else r.signals.pdq[:1])
        if r.signals.pdq
        else np.zeros((0, 4), np.uint64)
        for r in corpus.registrations
    ]
    codes = np.concatenate(references)
    owner = np.repeat(np.arange(len(references)), [len(r) for r in references])
    out = np.full((len(corpus.uploads), len(references)), 256, dtype=np.int32)
    for row, upload in enumerate(corpus.uploads):
        queries = _codes(upload.pdq if idea.content_views else upload.pdq[:8])
        distance = np.bitwise_count(queries[:, None, :] ^ codes[None]).sum(axis=2).min(axis=0)
        np.minimum.at(out[row], owner, distance.astype(np.int32))
    return out


def cosines(corpus: Corpus, idea: Idea) -> np.ndarray:
    """Largest embedding cosine from each upload to each original (uploads x originals)."""
    from services.matcher.registry import embeddings_of

    crops = 8  # whole + 7 crops come first; the rotations after them
    references = [embeddings_of(r.signals.embedding) for r in corpus.registrations]
    references = [
        r[: (len(r) if idea.rotations else crops) if idea.crops else 1] for r in references
    ]
    matrix = np.concatenate(references)
    owner = np.repeat(np.arange(len(references)), [len(r) for r in references])
    out = np.full((len(corpus.uploads), len(references)), -1.0, dtype=np.float32)
    for row, upload in enumerate(corpus.uploads):
        assert upload.embeddings is not None
        views = upload.embeddings if idea.content_views else upload.embeddings[:1]
        np.maximum.at(out[row], owner, (views @ matrix.T).max(axis=0))
    return out


@dataclass
class Outcome:
    """Recall per class, precision and false positives of one configuration."""

    name: str
    embedding_threshold: float | None
    recall_by_class: dict[str, float]
    recall: float
    precision: float
    false_positives: int
    distractor_false_positives: int
    distractor_comparisons: int


def embedding_threshold(cos: np.ndarray, calibration: np.ndarray) -> float:
    """Just above the best cosine a calibration distractor reaches, plus a margin."""
    return round(float(cos[calibration].max()) + MARGIN, 3)


def evaluate_idea(corpus: Corpus, idea: Idea, calibration: np.ndarray) -> Outcome:
    """Match everything under ``idea`` and score it."""
    pdq = pdq_distances(corpus, idea)
    quality = np.array([u.quality >= 50 for u in corpus.uploads])[:, None]
    matched = (pdq <= PDQ_THRESHOLD) & quality
    threshold = None
    if idea.embedding:
        cos = cosines(corpus, idea)
        threshold = embedding_threshold(cos, calibration)
        matched |= cos >= threshold
        if idea.agreement:
            matched |= (cos >= 0.80) & (pdq <= 64) & quality
    return score(corpus, idea.name, matched, threshold, calibration)


def score(
    corpus: Corpus, name: str, matched: np.ndarray, threshold: float | None, calibration: np.ndarray
) -> Outcome:
    """Recall per class, and precision on the edited copies and the test distractors."""
    originals = np.array([u.original for u in corpus.uploads])
    copies = originals >= 0
    hits = np.zeros(len(originals), dtype=bool)
    hits[copies] = matched[np.flatnonzero(copies), originals[copies]]
    wrong = matched.sum(axis=1) - hits
    test = ~copies & ~calibration
    false_positives = int(wrong[copies].sum() + wrong[test].sum())
    by_class: dict[str, list[bool]] = defaultdict(list)
    for upload, hit in zip(corpus.uploads, hits, strict=True):
        if upload.original >= 0:
            by_class[upload.edit_class].append(bool(hit))
    true_positives = int(hits.sum())
    return Outcome(
        name=name,
        embedding_threshold=threshold,
        recall_by_class={k: float(np.mean(v)) for k, v in by_class.items()},
        recall=float(hits[copies].mean()),
        precision=true_positives / max(1, true_positives + false_positives),
        false_positives=false_positives,
        distractor_false_positives=int(wrong[test].sum()),
        distractor_comparisons=int(test.sum()) * len(corpus.originals),
    )


# The final configuration, through the matcher's code.


def evaluate_pipeline(corpus: Corpus, threshold: float, calibration: np.ndarray) -> Outcome:
    """Register the originals in a real ``Registry`` and run every upload through the matcher."""
    from services.matcher.handler import MatcherProcessor
    from services.matcher.registry import Registry
    from services.shared.banks import BankBook
    from services.shared.config import PolicySettings, TopicSettings
    from services.shared.metrics import MatcherMetrics
    from services.shared.schemas import BankPolicy, VerdictIssued

    registry = Registry()
    for registration in corpus.registrations:
        registry.register(registration)
    original_of = {r.entry_id: int(r.labels["original"]) for r in corpus.registrations}
    policy = BankPolicy(embedding_threshold=threshold)
    processor = MatcherProcessor(
        TopicSettings(), BankBook(PolicySettings(banks={BANK: policy})), registry, MatcherMetrics()
    )
    matched = np.zeros((len(corpus.uploads), len(corpus.originals)), dtype=bool)
    for start in range(0, len(corpus.uploads), 64):
        batch = corpus.uploads[start : start + 64]
        events = [
            new_event(_hashed(start + n, upload), id=str(start + n), source="bench")
            for n, upload in enumerate(batch)
        ]
        for n, result in enumerate(processor.process(events)):
            assert not isinstance(result, Exception)
            verdict = VerdictIssued.model_validate(json.loads(result[0].value or b"")["data"])
            for match in verdict.matches:
                matched[start + n, original_of[match.entry_id]] = True
    return score(corpus, "the pipeline's matcher (final)", matched, threshold, calibration)


def _hashed(number: int, upload: Upload) -> MediaHashed:
    assert upload.embeddings is not None
    return MediaHashed(
        upload_id=str(number),
        content_id=str(number),
        uploaded_at=now(),
        sha256=upload.sha256,
        md5=upload.md5,
        pdq=upload.pdq,
        pdq_quality=upload.quality,
        embeddings=[embedding_to_text(v) for v in upload.embeddings],
        width=1,
        height=1,
        format="JPEG",
    )


def run(cache: Path, workers: int, out: Callable[[str], None]) -> dict[str, Any]:
    """Build the corpus, scan it, evaluate every idea and the final pipeline; the results."""
    started = time.monotonic()
    corpus = build(cache)
    copies = sum(u.original >= 0 for u in corpus.uploads)
    out(
        f"{len(corpus.originals)} originals, {copies} edited copies, "
        f"{corpus.distractor_photos} distractor photos + {corpus.derived} derived tiles"
    )
    timings = scan(corpus, workers)
    distractors = np.flatnonzero([u.original < 0 for u in corpus.uploads])
    calibration = np.zeros(len(corpus.uploads), dtype=bool)
    calibration[distractors[::2]] = True
    ideas = [evaluate_idea(corpus, idea, calibration) for idea in IDEAS]
    threshold = ideas[-1].embedding_threshold or 0.93
    final = evaluate_pipeline(corpus, threshold, calibration)
    return {
        "corpus": corpus,
        "ideas": ideas,
        "final": final,
        "timings_ms": timings,
        "seconds": time.monotonic() - started,
    }
