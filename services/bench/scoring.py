"""How the accuracy benchmark scores a configuration: recall per class, and false matches.

Shared by the vectorised ideas and the final run through the matcher's code (``accuracy.py``,
``matching.py``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from services.bench.corpus import Corpus, Upload
from services.bench.precision import FalseMatches, by_signal


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
            describe(corpus.uploads[row], original, (signals or {}).get((row, original), set()))
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


def describe(upload: Upload, original: int, signals: set[str]) -> str:
    """A false positive in words: which upload matched which original, by which signals."""
    what = f"{upload.edit_class} '{upload.name}'"
    what += f" of original {upload.original}" if upload.original >= 0 else ""
    by = f" by {'+'.join(sorted(signals))}" if signals else ""
    return f"{what} matched original {original}{by}"
