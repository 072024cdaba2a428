"""Distractors' signals, kept under ``<cache>/signals`` so a rerun need not rescan 10k photos.

Keyed by the code that produced them: a digest of ingest's source and the shared keypoint format.
Any change there is a new version and a full rescan; an old version's files are left for a person
to delete. Nothing here is committed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

_CODE = ("services/ingest", "services/shared/keypoints.py")


def code_version() -> str:
    """A short digest of the source files that compute an upload's signals."""
    root = Path(__file__).resolve().parents[2]
    digest = hashlib.sha256()
    for part in _CODE:
        path = root / part
        for source in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(source.relative_to(root).as_posix().encode())
            digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def load(cache: Path) -> dict[str, dict[str, Any]]:
    """The kept signals of the current code version, by upload key; empty if none are kept.

    Each is a dict of ``pdq``, ``quality``, ``sha256``, ``md5``, ``keypoints``, ``embeddings``.
    """
    meta, vectors = _paths(cache)
    if not meta.exists() or not vectors.exists():
        return {}
    records = json.loads(meta.read_text())
    stacked = np.load(vectors)
    out = {}
    for key, record in records.items():
        start, stop = record.pop("rows")
        out[key] = record | {"embeddings": stacked[start:stop]}
    return out


def save(cache: Path, signals: dict[str, dict[str, Any]]) -> None:
    """Keep ``signals`` (as ``load`` returns them) for the current code version."""
    meta, vectors = _paths(cache)
    meta.parent.mkdir(parents=True, exist_ok=True)
    records, blocks, row = {}, [], 0
    for key, record in signals.items():
        embeddings = record["embeddings"]
        records[key] = {k: v for k, v in record.items() if k != "embeddings"}
        records[key]["rows"] = [row, row + len(embeddings)]
        blocks.append(embeddings)
        row += len(embeddings)
    np.save(vectors, np.concatenate(blocks) if blocks else np.empty((0, 1280), np.float32))
    meta.write_text(json.dumps(records))


def _paths(cache: Path) -> tuple[Path, Path]:
    folder = cache.resolve() / "signals"
    version = code_version()
    return folder / f"{version}.json", folder / f"{version}-embeddings.npy"
