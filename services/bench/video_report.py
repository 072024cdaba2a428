"""The video benchmark's tables (stdout) and JSON, and whether its targets were met."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from services.bench.report import table
from services.bench.video import Results

Out = Callable[[str], None]
VIDEO_TARGETS = {
    "re-encode (250 kbps)": 0.95,
    "480p": 0.95,
    "excerpt (5-30 s)": 0.95,
    "watermark": 0.95,
    "letterbox": 0.95,
    "mirrored": 0.95,
}
PHOTO_TARGETS = {"zoom": 0.80}
CONFORMANCE_BITS = 6


def report(found: Results, out: Out) -> bool:
    """Print every table; whether every target was met."""
    out(", ".join(f"{count} {what}" for what, count in found.sizes.items()))
    met = [conformance(found, out)]
    met.append(recall(found.video_recall, VIDEO_TARGETS, "video -> video: edit", out))
    shares = {e: statistics.median(p) for e, p in sorted(found.match_percent.items()) if p}
    out(
        "median share of a copy's frames matched: "
        + ", ".join(f"{e} {p:.0f}%" for e, p in shares.items())
    )
    met.append(recall(found.photo_recall, PHOTO_TARGETS, "photo -> video: slides", out))
    for motion, signals in sorted(found.photo_signals.items()):
        out(f"  {motion}: found by " + ", ".join(f"{s} {n}" for s, n in sorted(signals.items())))
    met.append(false_matches(found, out))
    for what, names in sorted(found.missed.items()):
        out(f"  missed, {what}: {', '.join(names)}")
    if found.closest_unrelated:
        closest = sorted(found.closest_unrelated)
        out(
            f"closest frame of an unrelated upload to a registered video's: {closest[0]} bits "
            f"(median over {len(closest)} uploads {statistics.median(closest):.0f}; match: <= 31)"
        )
    rows = [
        (
            r["registration"],
            f"{r['hashes_per_minute']:.0f}",
            f"{r['cpu_seconds_per_minute']:.1f}",
            f"{r['recall']:.3f}",
        )
        for r in found.densities
    ]
    headers = ("registered video: hashes kept", "hashes/min", "CPU s/min", "recall, all copies")
    out(table(headers, rows))
    cost = [
        (kind, f"{60 * cpu / max(seconds, 1e-9):.1f}", f"{seconds / 60:.1f}")
        for kind, (cpu, seconds) in sorted(found.cpu.items())
    ]
    out(table(("CPU per minute of video (one core)", "CPU s/min", "minutes"), cost))
    out(f"matcher: {found.matcher_ms:.1f} ms CPU per upload (both registries, in process)")
    out(f"largest hashed-media record: {found.largest_record / 1024:.0f} KiB")
    return all(met)


def conformance(found: Results, out: Out) -> bool:
    """The conformance table; whether every sample video is within the bits allowed."""
    rows = [
        (
            r["video"],
            f"{r['frames']}/{r['expected_frames']}",
            f"{r['identical']:.1%}",
            f"{r['within_6']:.1%}",
            r["max_bits_quality_50"],
            r["max_bits"],
            "same" if r["same_timestamps"] else "DIFFER",
        )
        for r in found.conformance
    ]
    if not rows:
        out("conformance: ThreatExchange's sample videos were not found (see docs/benchmarks.md)")
        return False
    headers = ("vpdq sample video", "frames", "identical", "within 6 bits", "max q>=50", "max")
    out(table((*headers, "timestamps"), rows))
    return all(
        r["max_bits_quality_50"] <= CONFORMANCE_BITS and r["same_timestamps"]
        for r in found.conformance
    )


def recall(hits_by: dict[str, list[bool]], targets: dict[str, float], title: str, out: Out) -> bool:
    """A recall table; whether every target in it was met."""
    rows, met = [], True
    for name, hits in sorted(hits_by.items()):
        share = sum(hits) / len(hits)
        target = targets.get(name)
        verdict = "" if target is None else "met" if share >= target else "MISSED"
        met = met and verdict != "MISSED"
        rows.append((name, len(hits), f"{share:.3f}", f">= {target}" if target else "", verdict))
    out(table((title, "uploads", "recall", "target", ""), rows))
    return met


def false_matches(found: Results, out: Out) -> bool:
    """The false-match table, with the first few of each kind named; whether there were none."""
    rows = [
        (kind, found.comparisons.get(kind, 0), len(items))
        for kind, items in sorted(found.false_matches.items())
    ]
    out(table(("false matches: uploads", "uploads", "false matches"), rows))
    for kind, items in sorted(found.false_matches.items()):
        for item in items[:10]:
            out(f"  {kind}: {item}")
    return all(count == 0 for _, _, count in rows)


def as_json(found: Results) -> dict[str, Any]:
    """The same numbers for results/video.json."""
    return {
        "sizes": found.sizes,
        "conformance": found.conformance,
        "video_recall": {k: sum(v) / len(v) for k, v in found.video_recall.items()},
        "photo_recall": {k: sum(v) / len(v) for k, v in found.photo_recall.items()},
        "photo_signals": found.photo_signals,
        "false_matches": found.false_matches,
        "uploads_compared": found.comparisons,
        "densities": found.densities,
        "cpu_seconds_per_minute": {
            kind: 60 * cpu / max(seconds, 1e-9) for kind, (cpu, seconds) in found.cpu.items()
        },
        "matcher_ms_per_upload": found.matcher_ms,
        "largest_record_bytes": found.largest_record,
        "missed": found.missed,
        "closest_unrelated_bits": found.closest_unrelated,
    }
