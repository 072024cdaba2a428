"""Registry snapshots on the matcher's local volume, and when one is too old to start from.

A restarting matcher loads its newest snapshot and replays only the registry topic after the
offsets the snapshot reflects. That is safe only while every tombstone in that tail is still on
the topic: log compaction deletes tombstones ``delete.retention.ms`` after writing them (24 h by
Kafka's default), and a withdrawal whose tombstone is gone would silently match again. So a
snapshot is trusted only if it was known to reflect the whole registry less than ``max_age_s``
ago — when it was written, or later, when the matcher saw it still current with nothing pending
(``current.json`` beside it). Older snapshots are skipped and the registry is replayed in full.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from services.matcher import storage
from services.matcher.generation import Generation

log = logging.getLogger(__name__)
MAX_AGE_S = 12 * 3600.0  # half of Kafka's default delete.retention.ms
_CURRENT = "current.json"


def load_latest(folder: Path | None, max_age_s: float = MAX_AGE_S) -> Generation | None:
    """The newest readable snapshot in ``folder`` young enough to start from, or None."""
    if folder is None or not folder.is_dir():
        return None
    for candidate in sorted(folder.glob("generation-*"), reverse=True):
        if not candidate.is_dir() or candidate.name.endswith(".partial"):
            continue
        try:
            loaded = storage.load(candidate)
        except (OSError, ValueError) as error:
            _skipped(candidate, type(error).__name__)
            continue
        age = time.time() - current_at(loaded)
        if age > max_age_s:
            # Newer snapshots were tried first, so every remaining one is older still.
            _skipped(candidate, f"older than {max_age_s:.0f} s ({age:.0f} s): full replay")
            return None
        return loaded
    return None


def current_at(snapshot: Generation) -> float:
    """When ``snapshot`` was last known to reflect the whole registry (Unix time)."""
    written = float(snapshot.meta.get("written_at", 0.0))
    if snapshot.folder is None:
        return written
    try:
        marked = json.loads((snapshot.folder / _CURRENT).read_text())["current_at"]
    except (OSError, ValueError, KeyError, TypeError):
        return written
    return max(written, float(marked))


def mark_current(snapshot: Generation) -> None:
    """Record that ``snapshot`` still reflects the whole registry, as of now."""
    if snapshot.folder is None:
        return
    staging = snapshot.folder / f"{_CURRENT}.partial"
    staging.write_text(json.dumps({"current_at": time.time()}))
    staging.replace(snapshot.folder / _CURRENT)  # atomic: a reader sees the old or the new


def next_folder(folder: Path | None) -> Path | None:
    """Where to write the next snapshot (None when snapshots are off)."""
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"generation-{time.time_ns()}"


def prune(folder: Path | None, keep: Path | None) -> None:
    """Delete every snapshot older than ``keep``."""
    if folder is None or keep is None:
        return
    for old in folder.glob("generation-*"):
        if old.is_dir() and old.name < keep.name:
            shutil.rmtree(old, ignore_errors=True)


def _skipped(snapshot: Path, reason: str) -> None:
    log.warning("skipped a snapshot", extra={"fields": {"snapshot": str(snapshot), "why": reason}})
