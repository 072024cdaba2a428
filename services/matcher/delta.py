"""The registry's small mutable part: entries registered since the generation was built.

A new registration is searchable as soon as its record is read: it goes into the delta (a FAISS
flat index and dictionaries), not into the generation, which only compaction rewrites.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from services.matcher.generation import DIMENSIONS, FACE_DIMENSIONS, Entry, Member
from services.matcher.index import PdqIndex, VectorIndex
from services.shared.schemas import embedding_from_text

_DELTA_KEYS = 1 << 40  # delta entry keys live above every generation key


def embeddings_of(texts: list[str]) -> np.ndarray:
    """Wire-form embeddings as N x 1280 float32."""
    if not texts:
        return np.empty((0, DIMENSIONS), dtype=np.float32)
    return np.stack([embedding_from_text(text) for text in texts])


def faces_of(texts: list[str]) -> np.ndarray:
    """Wire-form face embeddings as N x 128 float32."""
    if not texts:
        return np.empty((0, FACE_DIMENSIONS), dtype=np.float32)
    return np.stack([embedding_from_text(text) for text in texts])


def codes_of(hashes: list[str]) -> np.ndarray:
    """Hex PDQ hashes as N x 4 uint64 words (the layout both indexes use)."""
    if not hashes:
        return np.empty((0, 4), dtype=np.uint64)
    return np.frombuffer(bytes.fromhex("".join(hashes)), dtype="<u8").reshape(-1, 4).copy()


@dataclass
class Delta:
    """Entries registered since the generation was built: small, mutable."""

    next_key: int = _DELTA_KEYS
    members: dict[str, tuple[int, Member]] = field(default_factory=dict)
    by_key: dict[int, Entry] = field(default_factory=dict)
    exact: dict[str, defaultdict[str, set[int]]] = field(
        default_factory=lambda: {"sha256": defaultdict(set), "md5": defaultdict(set)}
    )
    pdq: PdqIndex = field(default_factory=PdqIndex)
    vectors: VectorIndex = field(default_factory=lambda: VectorIndex(DIMENSIONS))
    faces: VectorIndex = field(default_factory=lambda: VectorIndex(FACE_DIMENSIONS))

    def add(self, member: Member) -> None:
        """Add an entry (its id must not be in the delta)."""
        key, self.next_key = self.next_key, self.next_key + 1
        self.members[member.entry.entry_id] = (key, member)
        self.by_key[key] = member.entry
        for signal in ("sha256", "md5"):
            digest = getattr(member, signal)
            if digest:
                self.exact[signal][digest].add(key)
        self.pdq.add(key, member.codes.view(np.uint8).reshape(-1, 32))
        self.vectors.add(key, member.embeddings)
        self.faces.add(key, member.faces)

    def remove(self, entry_id: str) -> bool:
        """Remove an entry; False if it is not in the delta."""
        found = self.members.pop(entry_id, None)
        if found is None:
            return False
        key, member = found
        del self.by_key[key]
        for signal in ("sha256", "md5"):
            digest = getattr(member, signal)
            if digest:
                self.exact[signal][digest].discard(key)
        self.pdq.remove(key)
        self.vectors.remove(key)
        self.faces.remove(key)
        return True
