"""How ``eraser bench accuracy`` reports its results, as a table on stdout and as JSON.

Recall per edit class, false matches per signal with their 95% bounds, wrong actions and the
review load, the distractors' sources, and the cost of each step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from services.bench.hard_edits import CLASSES, TARGET
from services.bench.precision import DAILY_UPLOADS
from services.bench.report import table, write_json

Out = Callable[[str], None]
OLD_TARGET = 0.95
MAX_REVIEW_RATE = 0.005


def report(results: dict[str, Any], json_path: Path, out: Out) -> bool:
    """Print the tables and write the JSON; whether every target was met."""
    final, ideas = results["final"], results["ideas"]
    out("matching: the matcher's own code (Registry, MatcherProcessor), in process, no broker")
    out("actions: the action service's policy (unreviewed = the bank's remove/hide)")
    out(table(("edit class", "recall", "unreviewed", "target", ""), _class_rows(final)))
    test = final.false_matches[-1].distractors if final.false_matches else 0
    out(
        f"overall recall {final.recall:.4f}; false matches {final.false_positives} "
        f"({final.distractor_false_positives} on {final.distractor_comparisons:,} comparisons of "
        f"{test:,} test distractors); embedding threshold {final.embedding_threshold}"
    )
    out(
        f"wrong unreviewed actions: {len(final.wrong_actions)} (target 0); distractors sent to "
        f"review: {final.review_rate:.3%} (target <= {MAX_REVIEW_RATE:.1%})"
    )
    for line in final.wrong_actions:
        out(f"wrong action: {line}")
    for pair in final.false_positive_pairs:
        out(f"false match: {pair}")
    out(table(_FALSE_HEADERS, [_false_row(f) for f in final.false_matches]))
    reach = [(k, f"{a:.3f}", f"{b:.3f}") for k, (a, b) in results["shortlist"].items()]
    out(table(("keypoints checked: original shortlisted", "80 entries", "+ distractors"), reach))
    out(
        table(
            ("idea (cumulative)", "recall", "precision", "false positives"),
            [(o.name, f"{o.recall:.4f}", f"{o.precision:.5f}", o.false_positives) for o in ideas],
        )
    )
    out(table(("step", "ms per image (mean, one core)"), _timing_rows(results)))
    pool = results["distractor_pool"]["sources"]
    out(table(("distractor source", "licence", "files", "photos", "kept"), _source_rows(pool)))
    out(f"wall time {results['seconds']:.0f} s (scanning {results['scan_seconds']:.0f} s)")
    write_json(json_path, "accuracy", _document(results))
    return _met(final)


def _class_rows(final: Any) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for name, recall in sorted(final.recall_by_class.items()):
        target = TARGET if name in CLASSES else OLD_TARGET
        auto = final.auto_by_class.get(name, 0.0)
        verdict = "met" if recall >= target else f"MISSED by {target - recall:.3f}"
        rows.append((name, f"{recall:.3f}", f"{auto:.3f}", f">= {target:.2f}", verdict))
    return rows


_FALSE_HEADERS = (
    "signal",
    "false pairs",
    "uploads",
    "pair rate <= (95%)",
    "upload rate <= (95%)",
    f"a day at {DAILY_UPLOADS:,} uploads, 80 entries <=",
)


def _false_row(found: Any) -> tuple[str, ...]:
    return (
        found.signal,
        str(found.pairs),
        str(found.uploads),
        f"{found.pair_bound:.2e}",
        f"{found.upload_bound:.2e}",
        f"{found.per_day(found.originals):,.0f}",
    )


def _timing_rows(results: dict[str, Any]) -> list[tuple[str, str]]:
    return [(step, f"{ms:.1f}") for step, ms in results["timings_ms"].items()]


def _source_rows(sources: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    rows = [
        (s["source"], s["licence"], str(s["files"]), str(s["photographs"]), str(s["kept"]))
        for s in sources
    ]
    total = sum(int(s["kept"]) for s in sources)
    return [*rows, ("total", "", "", "", str(total))]


def _document(results: dict[str, Any]) -> dict[str, Any]:
    corpus, final = results["corpus"], results["final"]
    outcome = vars(final) | {"false_matches": [_false_json(f) for f in final.false_matches]}
    return {
        "originals": len(corpus.originals),
        "distractor_photos": corpus.distractor_photos,
        "derived_tiles": corpus.derived,
        "edited_copies": sum(u.original >= 0 for u in corpus.uploads),
        "matching": "in process, the matcher's code; actions by the action service's policy",
        "left_out_as_duplicates": results["left_out_as_duplicates"],
        "distractor_pool": results["distractor_pool"],
        "final": outcome,
        "ideas": [vars(o) | {"false_matches": []} for o in results["ideas"]],
        "shortlisted": results["shortlist"],
        "timings_ms": results["timings_ms"],
        "scan_seconds": results["scan_seconds"],
        "seconds": results["seconds"],
    }


def _false_json(found: Any) -> dict[str, Any]:
    return asdict(found) | {
        "comparisons": found.comparisons,
        "pair_bound_95": found.pair_bound,
        "upload_bound_95": found.upload_bound,
    }


def _met(final: Any) -> bool:
    recall = all(
        r >= (TARGET if name in CLASSES else OLD_TARGET)
        for name, r in final.recall_by_class.items()
    )
    return recall and not final.wrong_actions and final.review_rate <= MAX_REVIEW_RATE
