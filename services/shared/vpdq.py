"""vPDQ features: a video's frame hashes as they travel, are stored and are exchanged.

Meta's vPDQ hashes sampled frames of a video with PDQ. Two text forms of a hashed frame are in
use, and eraser reads and writes both: the vpdq tool's hash files, one
``frameNumber,quality,pdqhex,timestamp`` line per frame (timestamp in seconds, 3 decimals), and
python-threatexchange's vPDQ signal (what HMA stores and exchanges), a JSON list of
``pdqhex,quality,timestamp`` strings. Registrations keep the second form (``Signals.vpdq``), with
the timestamp written to 3 decimals; ingest computes them (``ingest/video.py``) and the matcher
indexes their hashes (``matcher/video.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

QUALITY_THRESHOLD = 50  # vPDQ drops frames under this quality before matching
MATCH_DISTANCE = 31  # vPDQ's frame match distance (inclusive in python-threatexchange)
QUERY_MATCH_PERCENT = 80.0  # python-threatexchange's default query match threshold


@dataclass(frozen=True)
class Feature:
    """One hashed frame: its PDQ (64 hex digits), PDQ quality (0-100) and time in seconds."""

    pdq: str
    quality: int
    timestamp: float

    def compact(self) -> str:
        """python-threatexchange's form, ``pdqhex,quality,timestamp``."""
        return f"{self.pdq},{self.quality},{self.timestamp:.3f}"


def parse_compact(text: str) -> Feature:
    """A feature from ``pdqhex,quality,timestamp``.

    Raises:
        ValueError: not three well-formed fields.
    """
    fields = text.strip().split(",")
    if len(fields) != 3:
        raise ValueError("a vPDQ feature is 'pdqhex,quality,timestamp'")
    return _checked(fields[0], fields[1], fields[2])


def tool_line(number: int, feature: Feature) -> str:
    """The vpdq tool's line for a frame: ``frameNumber,quality,pdqhex,timestamp``."""
    return f"{number},{feature.quality},{feature.pdq},{feature.timestamp:.3f}"


def parse_tool_line(text: str) -> tuple[int, Feature]:
    """The frame number and feature of a vpdq tool line.

    Raises:
        ValueError: not four well-formed fields.
    """
    fields = text.strip().split(",")
    if len(fields) != 4 or not fields[0].isdigit():
        raise ValueError("a vpdq hash line is 'frameNumber,quality,pdqhex,timestamp'")
    return int(fields[0]), _checked(fields[2], fields[1], fields[3])


def to_signal(features: list[Feature]) -> str:
    """python-threatexchange's vPDQ signal string: a JSON list of compact features."""
    return json.dumps([feature.compact() for feature in features], separators=(",", ":"))


def from_signal(text: str) -> list[Feature]:
    """The features of a python-threatexchange vPDQ signal string.

    Raises:
        ValueError: not a JSON list of compact features.
    """
    try:
        items = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError("a vPDQ signal is a JSON list of 'pdqhex,quality,timestamp'") from None
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise ValueError("a vPDQ signal is a JSON list of 'pdqhex,quality,timestamp'")
    return [parse_compact(item) for item in items]


def normalised(text: str) -> str:
    """A compact feature rewritten in eraser's form (lower-case hex, 3-decimal timestamp).

    python-threatexchange writes timestamps to 3 significant digits (``1.23e+02``); stored
    features are rewritten so that equal features are equal strings.

    Raises:
        ValueError: not a well-formed compact feature.
    """
    return parse_compact(text).compact()


def _checked(pdq: str, quality: str, timestamp: str) -> Feature:
    pdq = pdq.strip().lower()
    if len(pdq) != 64 or any(c not in "0123456789abcdef" for c in pdq):
        raise ValueError("a vPDQ hash is 64 hex digits")
    if not quality.strip().isdigit() or not 0 <= int(quality) <= 100:
        raise ValueError("a vPDQ quality is 0-100")
    seconds = float(timestamp)  # ValueError if not a number
    if not 0 <= seconds < 1e7:  # also refuses nan and inf
        raise ValueError("a vPDQ timestamp is a number of seconds, at least 0")
    return Feature(pdq, int(quality), round(seconds, 3))
