"""The PDQ index: every registered PDQ hash, searchable by Hamming radius; FAISS stays in here.

Hashes are appended to a FAISS binary index and tagged with the integer key of the entry they
belong to. Withdrawing an entry marks its key dead (results for dead keys are dropped) instead of
rewriting the index; once dead hashes make up a quarter of it, a compacted index is built and
swapped in. Searches are exact (brute-force Hamming distance).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import faiss
import numpy as np

BITS = 256
CODE_BYTES = BITS // 8
_COMPACT_FRACTION = 0.25
_COMPACT_MINIMUM = 4096


@dataclass(frozen=True)
class Hit:
    """One indexed hash within range of a query."""

    query: int
    key: int
    distance: int


def codes_from_hex(hashes: list[str]) -> np.ndarray:
    """Hex PDQ hashes as an Nx32 uint8 array, the layout FAISS binary indexes take."""
    if not hashes:
        return np.empty((0, CODE_BYTES), dtype=np.uint8)
    return np.frombuffer(bytes.fromhex("".join(hashes)), dtype=np.uint8).reshape(-1, CODE_BYTES)


class PdqIndex:
    """Exact radius search over registered PDQ hashes, with adds and withdrawals while serving."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._index = faiss.IndexBinaryFlat(BITS)
        self._keys = np.empty(1024, dtype=np.int64)  # row → entry key; grows by doubling
        self._dead: set[int] = set()
        self._dead_rows = 0
        self._rows_of: dict[int, int] = {}

    def __len__(self) -> int:
        """Live hashes held."""
        return int(self._index.ntotal) - self._dead_rows

    def add(self, key: int, codes: np.ndarray) -> None:
        """Index ``codes`` (Nx32 uint8) under ``key``; a key is added once."""
        if len(codes) == 0:
            return
        with self._lock:
            start = self._index.ntotal
            self._index.add(np.ascontiguousarray(codes, dtype=np.uint8))
            if self._index.ntotal > len(self._keys):
                self._keys = np.resize(self._keys, max(2 * len(self._keys), self._index.ntotal))
            self._keys[start : self._index.ntotal] = key
            self._rows_of[key] = len(codes)

    def remove(self, key: int) -> None:
        """Stop returning the hashes of ``key``."""
        with self._lock:
            rows = self._rows_of.pop(key, 0)
            if rows:
                self._dead.add(key)
                self._dead_rows += rows
            if self._dead_rows > max(_COMPACT_MINIMUM, _COMPACT_FRACTION * self._index.ntotal):
                self._compact()

    def search(self, queries: np.ndarray, max_distance: int) -> list[Hit]:
        """Every live hash within ``max_distance`` (inclusive) of each query row."""
        if len(queries) == 0 or self._index.ntotal == 0:
            return []
        with self._lock:
            # FAISS range search returns distances strictly below the radius.
            limits, distances, rows = self._index.range_search(
                np.ascontiguousarray(queries, dtype=np.uint8), max_distance + 1
            )
            keys = self._keys[rows]
            dead = frozenset(self._dead)
        return [
            Hit(query, int(keys[at]), int(distances[at]))
            for query in range(len(queries))
            for at in range(limits[query], limits[query + 1])
            if int(keys[at]) not in dead
        ]

    def _compact(self) -> None:
        """Rebuild without dead rows (called with the lock held)."""
        total = self._index.ntotal
        keys = self._keys[:total]
        live = ~np.isin(keys, np.fromiter(self._dead, dtype=np.int64, count=len(self._dead)))
        codes = self._index.reconstruct_n(0, total)
        fresh = faiss.IndexBinaryFlat(BITS)
        fresh.add(np.ascontiguousarray(codes[live]))
        self._index, self._keys = fresh, keys[live].copy()
        self._dead.clear()
        self._dead_rows = 0


@dataclass(frozen=True)
class Similar:
    """One indexed vector at or above a cosine of a query."""

    query: int
    key: int
    cosine: float


class VectorIndex:
    """Exact inner-product search over L2-normalised embeddings, with withdrawals."""

    def __init__(self, dimensions: int) -> None:
        self._lock = threading.Lock()
        self._index = faiss.IndexFlatIP(dimensions)
        self._keys = np.empty(64, dtype=np.int64)  # row -> key; grows by doubling
        self._dead: set[int] = set()

    @property
    def rows(self) -> int:
        """Vectors held, withdrawn ones included."""
        return int(self._index.ntotal)

    def add(self, key: int, vectors: np.ndarray) -> None:
        """Index ``vectors`` (N x dimensions float32) under ``key``."""
        self.add_rows(np.full(len(vectors), key, dtype=np.int64), vectors)

    def add_rows(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Index each row of ``vectors`` under the key beside it."""
        if len(vectors) == 0:
            return
        with self._lock:
            start = self._index.ntotal
            self._index.add(np.ascontiguousarray(vectors, dtype=np.float32))
            if self._index.ntotal > len(self._keys):
                self._keys = np.resize(self._keys, max(2 * len(self._keys), self._index.ntotal))
            self._keys[start : self._index.ntotal] = keys

    def remove(self, key: int) -> None:
        """Stop returning the vectors of ``key``."""
        with self._lock:
            self._dead.add(key)

    def nearest(self, queries: np.ndarray, count: int) -> list[Similar]:
        """The ``count`` vectors nearest to each query (fewer if withdrawn or not there)."""
        if len(queries) == 0 or self._index.ntotal == 0:
            return []
        with self._lock:
            scores, rows = self._index.search(
                np.ascontiguousarray(queries, dtype=np.float32), min(count, self._index.ntotal)
            )
            keys, dead = self._keys[rows], frozenset(self._dead)
        return [
            Similar(query, int(key), float(score))
            for query in range(len(queries))
            for key, score, row in zip(keys[query], scores[query], rows[query], strict=True)
            if row >= 0 and int(key) not in dead
        ]

    def search(self, queries: np.ndarray, min_cosine: float) -> list[Similar]:
        """Every live vector with cosine >= ``min_cosine`` to a query."""
        if len(queries) == 0 or self._index.ntotal == 0:
            return []
        with self._lock:
            limits, scores, rows = self._index.range_search(
                np.ascontiguousarray(queries, dtype=np.float32), float(min_cosine) - 1e-6
            )
            keys, dead = self._keys[rows], frozenset(self._dead)
        return [
            Similar(query, int(keys[at]), float(scores[at]))
            for query in range(len(queries))
            for at in range(int(limits[query]), int(limits[query + 1]))
            if int(keys[at]) not in dead
        ]
