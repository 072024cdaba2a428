"""``eraser bench accuracy``: recall and precision on real photographs, per edit class.

Originals are registered with the registrar's code (``hash_file``); every upload is decoded and
scanned with ingest's code (``corpus.py``). Two evaluations follow:

- each idea alone, vectorised over all uploads and originals (distance, cosine and agreeing
  keypoint matrices; keypoints checked, as in the matcher, for each upload's shortlist: the
  originals nearest by embedding), to measure what each signal adds;
- the final configuration through the matcher's own code, in process (``Registry`` and
  ``MatcherProcessor.process``: the same search and bank rules as the service; no broker).

The embedding threshold is set on one half of the distractors (calibration: just above the best
cosine any of them reaches, plus a margin); precision is measured on the other half plus every
edited copy, so it is not fitted to the data it is reported on.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.bench import dataset
from services.bench.corpus import BANK, Corpus, Upload, build, scan
from services.shared.keypoints import keypoints_from_text
from services.shared.schemas import BankPolicy, MediaHashed, embedding_to_text, new_event, now

PDQ_THRESHOLD = 31
MARGIN = 0.02


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


IDEAS = (
    Idea("PDQ, rotations/flips at query time", False, False, False),
    Idea("+ PDQ of the upload without added borders", True, False, False),
    Idea("+ PDQ of registered crops", True, True, False),
    Idea("+ image embedding (the image, and the upload's content views)", True, True, True),
    Idea("+ two weaker signals agreeing", True, True, True, True),
    Idea("+ keypoints agreeing (shortlist by embedding)", True, True, True, True, True),
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
    from services.matcher.delta import embeddings_of

    references = [embeddings_of(r.signals.embedding) for r in corpus.registrations]
    matrix = np.concatenate(references)
    owner = np.repeat(np.arange(len(references)), [len(r) for r in references])
    out = np.full((len(corpus.uploads), len(references)), -1.0, dtype=np.float32)
    for row, upload in enumerate(corpus.uploads):
        assert upload.embeddings is not None
        views = upload.embeddings if idea.content_views else upload.embeddings[:1]
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
    false_positive_pairs: list[str]


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
        if idea.keypoints:
            matched |= agreeing(corpus, cos) >= BankPolicy().keypoint_threshold
    return score(corpus, idea.name, matched, threshold, calibration)


def score(
    corpus: Corpus,
    name: str,
    matched: np.ndarray,
    threshold: float | None,
    calibration: np.ndarray,
    signals: dict[tuple[int, int], set[str]] | None = None,
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
    counted = copies | test
    wrong_pairs = [
        (int(row), int(original))
        for row, original in zip(*np.nonzero(matched), strict=True)
        if counted[row] and originals[row] != original
    ]
    return Outcome(
        false_positive_pairs=[
            _described(corpus.uploads[row], original, (signals or {}).get((row, original), set()))
            for row, original in wrong_pairs
        ],
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
    signals: dict[tuple[int, int], set[str]] = defaultdict(set)
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
                signals[(start + n, original_of[match.entry_id])].add(match.signal)
    name = "the pipeline's matcher (final)"
    return score(corpus, name, matched, threshold, calibration, signals)


def _described(upload: Upload, original: int, signals: set[str]) -> str:
    """A false positive in words: which upload matched which original, by which signals."""
    what = f"{upload.edit_class} '{upload.name}'"
    what += f" of original {upload.original}" if upload.original >= 0 else ""
    by = f" by {'+'.join(sorted(signals))}" if signals else ""
    return f"{what} matched original {original}{by}"


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
        keypoints=upload.keypoints,
        width=1,
        height=1,
        format="JPEG",
    )


def run(cache: Path, workers: int, out: Callable[[str], None]) -> dict[str, Any]:
    """Build the corpus, scan it, evaluate every idea and the final pipeline; the results."""
    import faiss

    faiss.omp_set_num_threads(1)  # as in the services: OpenMP threads on shared cores cost more
    started = time.monotonic()
    corpus = build(cache)
    copies = sum(u.original >= 0 for u in corpus.uploads)
    out(
        f"{len(corpus.originals)} originals, {copies} edited copies, "
        f"{corpus.distractor_photos} distractor photos + {corpus.derived} derived tiles"
    )
    duplicates = dataset.dropped_duplicates(cache)
    for left in duplicates:
        out(f"left out of the pool: {left['photo']} = {left['same picture as']} ({left['by']})")
    timings = scan(corpus, workers)
    distractors = np.flatnonzero([u.original < 0 for u in corpus.uploads])
    calibration = np.zeros(len(corpus.uploads), dtype=bool)
    calibration[distractors[::2]] = True
    ideas = [evaluate_idea(corpus, idea, calibration) for idea in IDEAS]
    threshold = ideas[-1].embedding_threshold or 0.93
    final = evaluate_pipeline(corpus, threshold, calibration)
    return {
        "corpus": corpus,
        "left_out_as_duplicates": duplicates,
        "ideas": ideas,
        "final": final,
        "timings_ms": timings,
        "seconds": time.monotonic() - started,
    }
