"""vPDQ conformance: eraser's frame hashes against those the vpdq tool publishes for Meta's videos.

ThreatExchange ships sample videos (``tmk/sample-videos``) and the vpdq tool's hashes of every
frame of each (``vpdq/sample-hashes``); ``eraser bench video`` reads them from a folder they were
fetched into (facebook/ThreatExchange, never committed but for the one video in tests/data/vpdq).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.ingest.hashing import distance
from services.ingest.video import VideoDecoder, VideoLimits, container_of, features
from services.shared.vpdq import parse_tool_line

_LIMITS = VideoLimits(max_duration_s=3600, max_frames=10**6, max_scan_s=3600)


def measure(folder: Path) -> list[dict[str, Any]]:
    """Each ThreatExchange sample video's frames against the vpdq tool's published hashes."""
    rows = []
    for expected in sorted((folder / "vpdq" / "sample-hashes").glob("*.txt")):
        if expected.stem.endswith("128x128"):
            continue  # hashed downscaled to 128 x 128; eraser hashes at native size
        path = folder / "tmk" / "sample-videos" / f"{expected.stem}.mp4"
        if not path.is_file() or not path.stat().st_size:
            continue
        theirs = [parse_tool_line(line) for line in expected.read_text().split()]
        data = path.read_bytes()
        decoder = VideoDecoder(data, container_of(data) or _no_container(path), _LIMITS)
        ours = list(features(decoder, 0.0))
        bits = [distance(a.pdq, b.pdq) for (_, a), (_, b) in zip(ours, theirs, strict=False)]
        good = [d for (_, b), d in zip(theirs, bits, strict=False) if b.quality >= 50]
        rows.append(
            {
                "video": expected.stem,
                "frames": len(ours),
                "expected_frames": len(theirs),
                "identical": sum(d == 0 for d in bits) / max(1, len(bits)),
                "within_6": sum(d <= 6 for d in bits) / max(1, len(bits)),
                "max_bits": max(bits, default=0),
                "max_bits_quality_50": max(good, default=0),
                "same_timestamps": all(
                    a.timestamp == b.timestamp for (_, a), (_, b) in zip(ours, theirs, strict=False)
                ),
            }
        )
    return rows


def _no_container(path: Path) -> Any:
    raise ValueError(f"{path} is not an MP4 or Matroska file")
