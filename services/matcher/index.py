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
    """Inner-product search over L2-normalised vectors, with withdrawals.

    Exact (a flat scan) unless built with more than ``approximate_above`` rows at once: a flat
    scan reads every vector for every query (50 ms per face at a million faces), so a large
    generation gets an inverted file of 8-bit codes instead, searched a little wider than asked
    and every candidate re-checked exactly against the rows it was built from.
    """

    def __init__(self, dimensions: int, approximate_above: int | None = None) -> None:
        self._lock = threading.Lock()
        self._dimensions = dimensions
        self._index: faiss.Index = faiss.IndexFlatIP(dimensions)
        self._keys = np.empty(64, dtype=np.int64)  # row -> key; grows by doubling
        self._dead: set[int] = set()
        self._approximate_above = approximate_above
        self._exact: np.ndarray | None = None  # the rows an approximate index re-checks with

    @property
    def rows(self) -> int:
        """Vectors held, withdrawn ones included."""
        return int(self._index.ntotal)

    @property
    def approximate(self) -> bool:
        """Whether searches go through the inverted file (and are re-checked exactly)."""
        return self._exact is not None

    def add(self, key: int, vectors: np.ndarray) -> None:
        """Index ``vectors`` (N x dimensions float32) under ``key``."""
        self.add_rows(np.full(len(vectors), key, dtype=np.int64), vectors)

    def add_rows(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Index each row of ``vectors`` under the key beside it."""
        if len(vectors) == 0:
            return
        with self._lock:
            start = self._index.ntotal
            limit = self._approximate_above
            if start == 0 and limit is not None and len(vectors) > limit:
                self._index, self._exact = _inverted_file(vectors), vectors
            for piece in range(0, len(vectors), _PIECE_ROWS):  # float32 copies a piece at a time
                chunk = np.asarray(vectors[piece : piece + _PIECE_ROWS], dtype=np.float32)
                self._index.add(np.ascontiguousarray(chunk))
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
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        wider = count * (_WIDER if self.approximate else 1)
        with self._lock:
            scores, rows = self._index.search(queries, min(wider, self._index.ntotal))
            keys, dead = self._keys, frozenset(self._dead)
        found = []
        for query in range(len(queries)):
            kept = rows[query] >= 0
            candidates, cosines = self._checked(
                queries[query], rows[query][kept], scores[query][kept]
            )
            best = np.argsort(-cosines, kind="stable")[:count]
            found += [
                Similar(query, int(keys[candidates[at]]), float(cosines[at]))
                for at in best
                if int(keys[candidates[at]]) not in dead
            ]
        return found

    def search(self, queries: np.ndarray, min_cosine: float) -> list[Similar]:
        """Every live vector with cosine >= ``min_cosine`` to a query."""
        if len(queries) == 0 or self._index.ntotal == 0:
            return []
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        margin = _CODE_ERROR if self.approximate else 1e-6
        with self._lock:
            limits, scores, rows = self._index.range_search(queries, float(min_cosine) - margin)
            keys, dead = self._keys, frozenset(self._dead)
        found = []
        for query in range(len(queries)):
            span = slice(int(limits[query]), int(limits[query + 1]))
            candidates, cosines = self._checked(queries[query], rows[span], scores[span])
            found += [
                Similar(query, int(keys[row]), float(cosine))
                for row, cosine in zip(candidates, cosines, strict=True)
                if cosine >= min_cosine - 1e-6 and int(keys[row]) not in dead
            ]
        return found

    def _checked(
        self, query: np.ndarray, rows: np.ndarray, scores: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The candidates and their cosines: exact already, or re-computed from the rows."""
        if self._exact is None or len(rows) == 0:
            return rows, scores
        return rows, np.asarray(self._exact[rows], dtype=np.float32) @ query


# An inverted file's cells: about 4 x sqrt(rows); a query visits 1 in 16 of them. Measured on a
# million random unit vectors against exact search: recall 0.94 (1.0 for cosines of 0.65 and up,
# where faces of the same person lie), 1.7 ms a query (docs/benchmarks.md).
_PROBED = 16
_WIDER = 4  # nearest(): re-rank this many times the candidates asked for
_CODE_ERROR = 0.05  # 8-bit codes move a cosine by less than this
_PIECE_ROWS = 1 << 20


def _inverted_file(vectors: np.ndarray) -> faiss.Index:
    """An inverted file of 8-bit codes, its cells trained on a sample of ``vectors``."""
    rows, dimensions = vectors.shape
    cells = int(min(65536, max(64, 4 * np.sqrt(rows))))
    sample = np.random.default_rng(0).choice(rows, size=min(rows, 40 * cells), replace=False)
    quantiser = faiss.IndexFlatIP(dimensions)
    index = faiss.IndexIVFScalarQuantizer(
        quantiser, dimensions, cells, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )
    index.train(np.ascontiguousarray(vectors[np.sort(sample)], dtype=np.float32))
    index.nprobe = max(1, cells // _PROBED)
    return index
