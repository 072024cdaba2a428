"""``eraser bench accuracy``: recall and precision on real photographs, per edit class.

Originals are registered with the registrar's code (``hash_file``); every upload is decoded and
scanned with ingest's code (``corpus.py``). Two evaluations follow:

- each idea alone, vectorised over all uploads and originals (distance, cosine and agreeing
  keypoint matrices; keypoints checked, as in the matcher, for each upload's shortlist: the
  originals nearest by embedding), to measure what each signal adds;
- the final configuration through the matcher's own code, in process (``Registry`` and
  ``MatcherProcessor.process``: the same search and bank rules as the service; no broker).

The embedding threshold is set on a quarter of the distractors (calibration: just above the best
cosine any of them reaches, plus a margin); precision is measured on the other three quarters
plus every edited copy, so it is not fitted to the data it is reported on. Each verdict's actions
are decided by the action service's policy, to count wrong unreviewed actions and the review
load that distractors would make.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.bench import dataset, distractors
from services.bench.corpus import BANK, ORIGINALS, Corpus, Upload, build, scan
from services.bench.precision import FalseMatches, by_signal
from services.shared.keypoints import keypoints_from_text
from services.shared.schemas import BankPolicy, MediaHashed, embedding_to_text, new_event, now

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
    tiles: bool = False  # upload: PDQ of a collage's tiles
    keypoint_agreement: bool = False  # fewer keypoints agreeing, with a near embedding


IDEAS = (
    Idea("PDQ, rotations/flips at query time", False, False, False),
    Idea("+ PDQ of the upload without added borders", True, False, False),
    Idea("+ PDQ of registered crops", True, True, False),
    Idea("+ image embedding (the image, and the upload's content views)", True, True, True),
    Idea("+ two weaker signals agreeing", True, True, True, True),
    Idea("+ keypoints agreeing (shortlist by embedding)", True, True, True, True, True),
    Idea("+ PDQ of registered half crops", True, True, True, True, True, True),
    Idea("+ PDQ of a collage's tiles", True, True, True, True, True, True, True),
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
    recall_by_variant: dict[str, float]
    recall: float
    precision: float
    false_positives: int
    distractor_false_positives: int
    distractor_comparisons: int
    false_positive_pairs: list[str]
    false_matches: list[FalseMatches] = field(default_factory=list)  # per signal, test distractors
    wrong_actions: list[str] = field(default_factory=list)  # wrong matches acted on unreviewed
    review_rate: float = 0.0  # test distractors sent to review
    auto_by_class: dict[str, float] = field(default_factory=dict)  # copies acted on unreviewed


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
    by_variant: dict[str, list[bool]] = defaultdict(list)
    for upload, hit in zip(corpus.uploads, hits, strict=True):
        if upload.original >= 0:
            by_class[upload.edit_class].append(bool(hit))
            by_variant[f"{upload.edit_class}: {upload.name}"].append(bool(hit))
    true_positives = int(hits.sum())
    counted = copies | test
    wrong_pairs = [
        (int(row), int(original))
        for row, original in zip(*np.nonzero(matched), strict=True)
        if counted[row] and originals[row] != original
    ]
    test_rows = [int(row) for row in np.flatnonzero(test)]
    found = {pair: (signals or {}).get(pair, {"match"}) for pair in wrong_pairs}
    return Outcome(
        false_matches=by_signal(found, test_rows, len(corpus.originals)) if signals else [],
        false_positive_pairs=[
            _described(corpus.uploads[row], original, (signals or {}).get((row, original), set()))
            for row, original in wrong_pairs
        ],
        name=name,
        embedding_threshold=threshold,
        recall_by_class={k: float(np.mean(v)) for k, v in by_class.items()},
        recall_by_variant={k: float(np.mean(v)) for k, v in by_variant.items()},
        recall=float(hits[copies].mean()),
        precision=true_positives / max(1, true_positives + false_positives),
        false_positives=false_positives,
        distractor_false_positives=int(wrong[test].sum()),
        distractor_comparisons=int(test.sum()) * len(corpus.originals),
    )


# The final configuration, through the matcher's code.


def evaluate_pipeline(corpus: Corpus, threshold: float, calibration: np.ndarray) -> Outcome:
    """Run every upload through the matcher's code and decide each verdict's actions.

    The originals are registered in a real ``Registry``; actions come from the action service's
    policy.
    """
    from services.actions.policy import decide
    from services.matcher.handler import MatcherProcessor
    from services.matcher.registry import Registry
    from services.shared.banks import BankBook
    from services.shared.config import PolicySettings, TopicSettings
    from services.shared.metrics import MatcherMetrics
    from services.shared.schemas import VerdictIssued

    registry = Registry()
    for registration in corpus.registrations:
        registry.register(registration)
    original_of = {r.entry_id: int(r.labels["original"]) for r in corpus.registrations}
    book = BankBook(PolicySettings(banks={BANK: BankPolicy(embedding_threshold=threshold)}))
    processor = MatcherProcessor(TopicSettings(), book, registry, MatcherMetrics())
    matched = np.zeros((len(corpus.uploads), len(corpus.originals)), dtype=bool)
    signals: dict[tuple[int, int], set[str]] = defaultdict(set)
    actions: dict[tuple[int, int], str] = {}
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
            for action in decide(verdict, book, now()):
                actions[(start + n, original_of[action.entry_id])] = action.action
    outcome = score(
        corpus, "the pipeline's matcher (final)", matched, threshold, calibration, signals
    )
    return _with_actions(corpus, outcome, actions, signals, calibration)


def _with_actions(
    corpus: Corpus,
    outcome: Outcome,
    actions: dict[tuple[int, int], str],
    signals: dict[tuple[int, int], set[str]],
    calibration: np.ndarray,
) -> Outcome:
    """The outcome with what was acted on: wrong unreviewed actions, review load, auto share."""
    uploads = corpus.uploads
    test = [n for n, u in enumerate(uploads) if u.original < 0 and not calibration[n]]
    reviewed = {row for (row, _), action in actions.items() if action == "review"}
    auto: dict[str, list[bool]] = defaultdict(list)
    for row, upload in enumerate(uploads):
        if upload.original >= 0:
            action = actions.get((row, upload.original))
            auto[upload.edit_class].append(action is not None and action != "review")
    counted = set(test) | {n for n, u in enumerate(uploads) if u.original >= 0}
    wrong = [
        f"{_described(uploads[row], original, signals[(row, original)])}: {action}"
        for (row, original), action in sorted(actions.items())
        if row in counted and uploads[row].original != original and action != "review"
    ]
    outcome.wrong_actions = wrong
    outcome.review_rate = len(reviewed & set(test)) / max(1, len(test))
    outcome.auto_by_class = {k: float(np.mean(v)) for k, v in auto.items()}
    return outcome


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
        "corpus": corpus,
        "left_out_as_duplicates": duplicates,
        "distractor_pool": pool,
        "ideas": ideas,
        "final": final,
        "timings_ms": timings,
        "scan_seconds": scanned,
        "seconds": time.monotonic() - started,
    }
