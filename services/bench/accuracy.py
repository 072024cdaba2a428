"""``eraser bench accuracy``: recall and precision on real photographs, per edit class.

Originals are registered with the registrar's code (``hash_file``); every upload is decoded and
scanned with ingest's code (``corpus.py``). Two evaluations follow:

- each idea alone, vectorised over all uploads and originals (distance, cosine and agreeing
  keypoint matrices; keypoints checked, as in the matcher, for each upload's shortlist: the
  originals nearest by embedding), to measure what each signal adds;
- the final configuration through the matcher's own code, in process (``matching.py``).

The embedding threshold is set on a quarter of the distractors (calibration: just above the best
cosine any of them reaches, plus a margin); precision is measured on the other three quarters
plus every edited copy, so it is not fitted to the data it is reported on. ``shortlist.py``
checks how often keypoints get to run at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.bench import dataset, distractors, shortlist
from services.bench.corpus import ORIGINALS, Corpus, build, scan
from services.bench.matching import evaluate_pipeline
from services.bench.scoring import Outcome, score
from services.shared.keypoints import keypoints_from_text
from services.shared.schemas import BankPolicy

PDQ_THRESHOLD = 31
MARGIN = 0.02
CALIBRATION_EVERY = 4  # one distractor in 4 sets the embedding threshold; the rest test it


# Each idea alone, vectorised.


@dataclass(frozen=True)
class Idea:
    """Which signals a configuration uses."""

    name: str
    content_views: bool  # upload: PDQ (and embeddings) of the content without added borders
    crops: bool  # registration: PDQ of reference crops
    embedding: bool
    agreement: bool = False  # PDQ and embedding both nearly close enough
    keypoints: bool = False  # keypoints of the shortlisted originals agree
    half_crops: bool = False  # registration: PDQ of the left and right 55%
    tiles: bool = False  # upload: PDQ and embeddings of a collage's tiles
    keypoint_agreement: bool = False  # fewer keypoints agreeing, with a near embedding


IDEAS = (
    Idea("PDQ, rotations/flips at query time", False, False, False),
    Idea("+ PDQ of the upload without added borders", True, False, False),
    Idea("+ PDQ of registered crops", True, True, False),
    Idea("+ image embedding (the image, and the upload's content views)", True, True, True),
    Idea("+ two weaker signals agreeing", True, True, True, True),
    Idea("+ keypoints agreeing (shortlist by embedding)", True, True, True, True, True),
    Idea("+ PDQ of registered half crops", True, True, True, True, True, True),
    Idea("+ PDQ and embeddings of a collage's tiles", True, True, True, True, True, True, True),
    Idea("+ fewer keypoints agreeing with the embedding", *(True,) * 8),
)
_CROPS = 8  # the whole image and the crops registered before half crops


def _codes(hashes: list[str]) -> np.ndarray:
    return np.frombuffer(bytes.fromhex("".join(hashes)), dtype="<u8").reshape(-1, 4)


def pdq_distances(corpus: Corpus, idea: Idea) -> np.ndarray:
    """Smallest PDQ distance from each upload to each original (uploads x originals)."""
    kept = None if idea.half_crops else _CROPS if idea.crops else 1
    references = [
        _codes(r.signals.pdq[:kept]) if r.signals.pdq else np.zeros((0, 4), np.uint64)
        for r in corpus.registrations
    ]
    codes = np.concatenate(references)
    owner = np.repeat(np.arange(len(references)), [len(r) for r in references])
    out = np.full((len(corpus.uploads), len(references)), 256, dtype=np.int32)
    for row, upload in enumerate(corpus.uploads):
        whole = len(upload.pdq) - (0 if idea.tiles else upload.tiles)
        queries = _codes(upload.pdq[:whole] if idea.content_views else upload.pdq[:8])
        distance = np.bitwise_count(queries[:, None, :] ^ codes[None]).sum(axis=2).min(axis=0)
        np.minimum.at(out[row], owner, distance.astype(np.int32))
    return out


def cosines(corpus: Corpus, idea: Idea) -> np.ndarray:
    """Largest embedding cosine from each upload to each original (uploads x originals)."""
    from services.matcher.delta import embeddings_of

    references = [embeddings_of(r.signals.embedding) for r in corpus.registrations]
    matrix = np.concatenate(references)
    owner = np.repeat(np.arange(len(references)), [len(r) for r in references])
    out = np.full((len(corpus.uploads), len(references)), -1.0, dtype=np.float32)
    for row, upload in enumerate(corpus.uploads):
        assert upload.embeddings is not None
        whole = len(upload.embeddings) - (0 if idea.tiles else upload.tiles)
        views = upload.embeddings[:whole] if idea.content_views else upload.embeddings[:1]
        np.maximum.at(out[row], owner, (views @ matrix.T).max(axis=0))
    return out


def agreeing(corpus: Corpus, cos: np.ndarray) -> np.ndarray:
    """Keypoints agreeing between each upload and its shortlisted originals (else 0)."""
    from services.matcher.handler import Shortlist
    from services.matcher.verification import agreeing_keypoints

    shortlist = Shortlist()
    references = [
        keypoints_from_text(r.signals.keypoints) if r.signals.keypoints else None
        for r in corpus.registrations
    ]
    out = np.zeros(cos.shape, dtype=np.int32)
    for row, upload in enumerate(corpus.uploads):
        if upload.keypoints is None:
            continue
        keypoints = keypoints_from_text(upload.keypoints)
        for original in np.argsort(-cos[row])[: shortlist.entries]:
            reference = references[original]
            if cos[row, original] >= shortlist.min_cosine and reference is not None:
                out[row, original] = agreeing_keypoints(keypoints, reference)
    return out


def embedding_threshold(cos: np.ndarray, calibration: np.ndarray) -> float:
    """Just above the best cosine a calibration distractor reaches, plus a margin."""
    return round(float(cos[calibration].max()) + MARGIN, 3)


def evaluate_idea(
    corpus: Corpus, idea: Idea, calibration: np.ndarray, kept: dict[str, np.ndarray]
) -> Outcome:
    """Match everything under ``idea`` and score it (``kept``: keypoint counts, computed once)."""
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
        if idea.keypoints:
            if "agreeing" not in kept:  # the same for every idea with content views
                kept["agreeing"] = agreeing(corpus, cos)
            policy, counts = BankPolicy(), kept["agreeing"]
            matched |= counts >= policy.keypoint_threshold
            if idea.keypoint_agreement:
                weaker = counts >= policy.agreement_keypoint_threshold
                matched |= weaker & (cos >= policy.agreement_embedding_threshold)
    return score(corpus, idea.name, matched, threshold, calibration)


def run(
    cache: Path,
    workers: int,
    out: Callable[[str], None],
    originals: int = ORIGINALS,
    pool_limit: int | None = None,
) -> dict[str, Any]:
    """Build the corpus, scan it, evaluate every idea and the final pipeline; the results.

    ``originals`` and ``pool_limit`` take a subset, for development.
    """
    import faiss

    faiss.omp_set_num_threads(1)  # as in the services: OpenMP threads on shared cores cost more
    started = time.monotonic()
    corpus = build(cache, originals=originals, pool_limit=pool_limit)
    copies = sum(u.original >= 0 for u in corpus.uploads)
    out(
        f"{len(corpus.originals)} originals, {copies} edited copies, "
        f"{corpus.distractor_photos} distractor photos + {corpus.derived} derived tiles"
    )
    duplicates = dataset.dropped_duplicates(cache)
    for left in duplicates:
        out(f"left out of the pool: {left['photo']} = {left['same picture as']} ({left['by']})")
    pool = distractors.summary(cache)
    out(f"left out of the distractor pool as the same picture as another: {len(pool['dropped'])}")
    scanning = time.monotonic()
    timings = scan(corpus, workers, cache)
    scanned = time.monotonic() - scanning
    rows = np.flatnonzero([u.original < 0 for u in corpus.uploads])
    calibration = np.zeros(len(corpus.uploads), dtype=bool)
    calibration[rows[::CALIBRATION_EVERY]] = True
    kept: dict[str, np.ndarray] = {}
    ideas = [evaluate_idea(corpus, idea, calibration, kept) for idea in IDEAS]
    threshold = ideas[-1].embedding_threshold or 0.93
    final = evaluate_pipeline(corpus, threshold, calibration)
    return {
        "shortlist": shortlist.reach(corpus),
        "corpus": corpus,
        "left_out_as_duplicates": duplicates,
        "distractor_pool": pool,
        "ideas": ideas,
        "final": final,
        "timings_ms": timings,
        "scan_seconds": scanned,
        "seconds": time.monotonic() - started,
    }
