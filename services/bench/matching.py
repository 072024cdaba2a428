"""The accuracy benchmark's final configuration, through the matcher's own code, in process.

The originals are registered in a real ``Registry``; every upload goes through
``MatcherProcessor.process`` (the service's search and bank rules, no broker), and each verdict's
actions are decided by the action service's policy.
"""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np

from services.bench.corpus import BANK, Corpus, Upload
from services.bench.scoring import Outcome, describe, score
from services.shared.schemas import BankPolicy, MediaHashed, embedding_to_text, new_event, now


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
        f"{describe(uploads[row], original, signals[(row, original)])}: {action}"
        for (row, original), action in sorted(actions.items())
        if row in counted and uploads[row].original != original and action != "review"
    ]
    outcome.wrong_actions = wrong
    outcome.review_rate = len(reviewed & set(test)) / max(1, len(test))
    outcome.auto_by_class = {k: float(np.mean(v)) for k, v in auto.items()}
    return outcome


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
