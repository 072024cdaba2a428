"""``eraser bench faces``, the report: recall and false matches by threshold, cost, scale.

The measurements are in ``faces.py``; this turns them into the tables, the targets' verdict and
the JSON result. False-match rates far below what the measured pairs can show are extrapolated
from a normal fit of the impostor cosines, and said to be.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.bench import faces as bench
from services.bench.dataset import prepare
from services.bench.report import table, write_json
from services.ingest.faces import FaceModels

Out = Callable[[str], None]


@dataclass(frozen=True)
class Report:
    """The thresholds table and whether the targets were met at the zero-false-match threshold."""

    headers: tuple[str, ...]
    rows: list[tuple[str, ...]]
    met: bool
    verdict: str
    scale_note: str


def thresholds(
    same: dict[str, list[float]],
    pasted: dict[str, list[float]],
    impostors: np.ndarray,
    agreement: tuple[list[float], np.ndarray],
) -> Report:
    """Recall and false matches at a few thresholds, including the lowest with no false match.

    The false-match rate far below what the pairs can show is extrapolated from a normal fit of
    the impostor cosines (their tail is what matters at scale: each upload's face is compared
    with every registered face).
    """
    zero_false = float(np.ceil((impostors.max() + 0.005) * 100) / 100)
    agreeing, agreeing_impostors = np.asarray(agreement[0]), agreement[1]
    headers = (
        "threshold",
        *(f"same person {k}" for k in same),
        *(f"pasted face ({k})" for k in pasted),
        "false matches",
        "fitted false-match rate",
        "false reviews / 10k uploads @ 10k faces",
        "@ 1M faces",
        "2 of 2 faces: same person",
        "2 of 2: false reviews @ 10k faces",
    )
    rows, at_zero = [], {}
    for threshold in sorted({0.40, 0.45, 0.50, 0.55, 0.60, zero_false}):
        recalls = {
            k: float(np.mean(np.asarray(v) >= threshold)) for k, v in {**same, **pasted}.items()
        }
        rate = _tail(impostors, threshold)
        reviews = [10_000 * 2 * faces * rate for faces in (10_000, 1_000_000)]
        # With two faces per subject and both required, 10,000 faces are 5,000 subjects.
        reviews_two = 10_000 * 2 * 5_000 * _tail(agreeing_impostors, threshold)
        false = int((impostors >= threshold).sum())
        rows.append(
            (
                f"{threshold:.2f}" + (" (no false match)" if threshold == zero_false else ""),
                *(f"{r:.3f}" for r in recalls.values()),
                f"{false} / {len(impostors):,}",
                f"{rate:.1e}",
                *(f"{r:.2g}" for r in reviews),
                f"{float(np.mean(agreeing >= threshold)):.3f}",
                f"{reviews_two:.2g}",
            )
        )
        if threshold == zero_false:
            at_zero = {**recalls, "reviews": reviews[0]}
    met = (
        min(at_zero[k] for k in same) >= 0.95
        and min(at_zero[k] for k in pasted) >= 0.85
        and at_zero["reviews"] <= 10
    )
    verdict = (
        f"at {zero_false:.2f}: same person >= 0.95, pasted >= 0.85, <= 10 false reviews per "
        "10,000 uploads against 10,000 faces"
    )
    note = (
        f"impostor cosines: mean {impostors.mean():.3f}, sd {impostors.std():.3f}, max "
        f"{impostors.max():.3f} over {len(impostors):,} pairs; fitted rate = normal tail at the "
        "threshold; false reviews = 10,000 uploads x 2 faces x registered faces x rate; 2 of 2: "
        f"the lower cosine to a subject's two faces ({len(agreeing)} probes, "
        f"{len(agreeing_impostors):,} other faces), fitted likewise"
    )
    return Report(headers, rows, met, verdict, note)


def _tail(cosines: np.ndarray, threshold: float) -> float:
    """The share of a normal fitted to ``cosines`` at or above ``threshold``."""
    mean, spread = float(cosines.mean()), float(cosines.std())
    return 0.5 * math.erfc((threshold - mean) / (spread * math.sqrt(2)))


def run(
    cache: Path, accuracy_cache: Path, index_sizes: list[int], json_path: Path, out: Out = print
) -> int:
    """Measure the face tier; 0 if every target was met."""
    models = FaceModels()
    pool = [Path(photo.path) for photo in prepare(accuracy_cache)]
    found = bench.gallery(models, cache, pool)
    registered = sum(len(p.registered) for p in found.people.values())
    probes = sum(len(p.probes) for p in found.people.values())
    out(
        f"{found.photos} photographs ({found.duplicates} duplicates left out): "
        f"{len(found.people)} people with {registered} registered faces and {probes} probe "
        f"photographs; {len(found.distractor_faces)} faces of other people; the models' cosine"
    )
    same = bench.probe_scores(models, found.people)
    pasted = bench.composite_scores(models, found.people, found.targets)
    impostors = bench.impostor_scores(found)
    report = thresholds(same, pasted, impostors, bench.agreement_scores(found))
    out(table(report.headers, report.rows))
    out(report.scale_note)
    costs = bench.cost_ms(models, *bench.cost_images(found, pool))
    out(table(("face work per image, one core", "ms"), [(k, f"{v:.1f}") for k, v in costs.items()]))
    scale = [bench.index_at_scale(size, same) for size in index_sizes]
    out(
        table(
            ("registered faces", "recall vs exact", "ms per face searched", "index build s"),
            [
                (
                    f"{s['faces']:,}",
                    f"{s['recall_vs_exact']:.4f}",
                    f"{s['ms_per_query']:.2f}",
                    f"{s['build_s']:.0f}",
                )
                for s in scale
            ],
        )
    )
    met = report.met and costs["image without faces"] <= 20 and costs["image with one face"] <= 45
    out(f"targets: {'met' if met else 'MISSED'} ({report.verdict})")
    write_json(
        json_path,
        "faces",
        {
            "people": len(found.people),
            "registered_faces": registered,
            "probes": probes,
            "distractor_faces": len(found.distractor_faces),
            "thresholds": [dict(zip(report.headers, row, strict=True)) for row in report.rows],
            "impostor_pairs": len(impostors),
            "impostor_max": float(impostors.max()),
            "cost_ms": costs,
            "scale": scale,
            "met": met,
        },
    )
    return 0 if met else 1
