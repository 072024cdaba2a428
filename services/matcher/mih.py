"""Exact Hamming-radius search over millions of PDQ hashes: multi-index hashing.

The 256 bits are cut into 12 chunks of 21 bits (4 bits are left out of the chunks, not of the
distance). If two hashes are within 35 bits, then by the pigeonhole principle at least one of the
12 chunks differs in at most 2 bits. So, per chunk, a table maps each 21-bit value to the rows that
have it; a query looks up its own chunk values and every value within 2 bits of them (232 per
chunk), and only those candidates are checked against the full 256 bits. Nothing within the radius
can be missed, and a query touches about 14,000 of 10 million hashes instead of all of them.

Below 35 fewer probes suffice. Write the radius as 12 q + a (a < 12): if the first a + 1 chunks
each differed in more than q bits and the others in more than q - 1, the chunks alone would differ
in at least 12 q + a + 1 bits. So the first a + 1 chunks are probed within q bits and the rest
within q - 1 (Norouzi, Punjani and Fleet's multi-index hashing): at the default radius 31, 8
chunks within 2 bits and 4 within 1, 30% fewer candidates than probing all 12 within 2.

Tables are CSR arrays (offsets per chunk value, rows sorted by value, each row number in 3 bytes
while there are fewer than 16.7 million codes), built once and then only read, so they can be
saved as .npy files and memory-mapped back. The probing and comparing is compiled (``_mih.c``):
each candidate is a 32-byte read at random from the codes, and the C loop overlaps those reads,
which numpy, one indexing pass at a time, could not. Below a quarter of a million hashes the
tables (96 MB of offsets) do not pay: a FAISS brute-force scan is used instead.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator

import faiss
import numpy as np

from services.matcher import _mih

CHUNKS = 12
CHUNK_BITS = 21
MAX_RADIUS = CHUNKS * 3 - 1  # 35: some chunk is then within 2 bits
_FLIPS = 2
FLAT_BELOW = 1 << 18


def chunk_values(codes: np.ndarray, chunks: range = range(CHUNKS)) -> np.ndarray:
    """Chunk values of each code (codes as N x 4 little-endian uint64 words), one column each."""
    out = np.empty((len(codes), len(chunks)), dtype=np.uint32)
    mask = np.uint64((1 << CHUNK_BITS) - 1)
    for column, chunk in enumerate(chunks):
        word, shift = divmod(chunk * CHUNK_BITS, 64)
        value = codes[:, word] >> np.uint64(shift)
        if shift + CHUNK_BITS > 64:  # the chunk straddles two words
            value = value | (codes[:, word + 1] << np.uint64(64 - shift))
        out[:, column] = (value & mask).astype(np.uint32)
    return out


def _flip_masks() -> np.ndarray:
    masks = [0]
    for flips in range(1, _FLIPS + 1):
        masks += [
            sum(1 << b for b in bits) for bits in itertools.combinations(range(CHUNK_BITS), flips)
        ]
    return np.array(masks, dtype=np.uint32)


_MASKS = _flip_masks()  # by number of bits flipped: the masks within d bits are a prefix
_WITHIN = [sum(math.comb(CHUNK_BITS, f) for f in range(d + 1)) for d in range(_FLIPS + 1)]


def probe_masks(radius: int) -> list[np.ndarray]:
    """For each chunk, the flips to probe so that nothing within ``radius`` is missed."""
    quotient, remainder = divmod(radius, CHUNKS)
    flips = [quotient if chunk <= remainder else quotient - 1 for chunk in range(CHUNKS)]
    return [_MASKS[: _WITHIN[f]] if f >= 0 else _MASKS[:0] for f in flips]


class MultiIndexHash:
    """An immutable, exact radius index over ``codes`` (row numbers are positions in ``codes``)."""

    def __init__(self, codes: np.ndarray, offsets: list[np.ndarray], rows: list[np.ndarray]):
        # The compiled search reads these in place: C order, no copies.
        self.codes = np.ascontiguousarray(codes)
        self.offsets = [np.ascontiguousarray(table) for table in offsets]
        self.rows = [np.ascontiguousarray(table) for table in rows]
        self._flat: faiss.IndexBinaryFlat | None = None
        if not offsets:  # small: scan everything
            self._flat = faiss.IndexBinaryFlat(256)
            self._flat.add(np.ascontiguousarray(codes).view(np.uint8).reshape(-1, 32))

    def __len__(self) -> int:
        return len(self.codes)

    @classmethod
    def build(cls, codes: np.ndarray) -> MultiIndexHash:
        """Index ``codes`` (N x 4 uint64)."""
        tables = dict(build_tables(lambda: iter([codes]), len(codes)))
        return cls(
            codes,
            [tables[f"offsets{c:02d}"] for c in range(CHUNKS)] if tables else [],
            [tables[f"rows{c:02d}"] for c in range(CHUNKS)] if tables else [],
        )

    def search(self, queries: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(query, row, distance) for every indexed code within ``radius`` of a query."""
        if not 0 <= radius <= MAX_RADIUS:
            raise ValueError(f"radius must be 0..{MAX_RADIUS}")
        if self._flat is not None:
            return self._scan(queries, radius)
        if len(self.codes) == 0 or len(queries) == 0:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty, empty
        queries = np.ascontiguousarray(queries, dtype=np.uint64)
        found = _mih.search(
            self.codes,
            self.offsets,
            self.rows,
            self.rows[0].shape[1],
            probe_masks(radius),
            chunk_values(queries),
            queries,
            radius,
        )
        query, row, distance = np.frombuffer(found, dtype=np.int64).reshape(-1, 3).T
        # A code near in several chunks is a candidate several times: report it once.
        unique = np.unique(np.stack([query, row]), axis=1, return_index=True)[1]
        return query[unique], row[unique], distance[unique]

    def _scan(self, queries: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        assert self._flat is not None
        if self._flat.ntotal == 0 or len(queries) == 0:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty, empty
        # FAISS returns distances strictly below the radius it is given.
        limits, distances, rows = self._flat.range_search(
            np.ascontiguousarray(queries).view(np.uint8).reshape(-1, 32), radius + 1
        )
        query = np.repeat(np.arange(len(queries)), np.diff(limits).astype(np.int64))
        return query, rows.astype(np.int64), distances.astype(np.int64)

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays to save, by file name."""
        named = {"codes": self.codes}
        for chunk, (offsets, rows) in enumerate(zip(self.offsets, self.rows, strict=True)):
            named[f"offsets{chunk:02d}"], named[f"rows{chunk:02d}"] = offsets, rows
        return named


def build_tables(
    read: Callable[[], Iterator[np.ndarray]], count: int
) -> Iterator[tuple[str, np.ndarray]]:
    """The tables for ``count`` codes, one array at a time, as (file name, array).

    ``read`` gives the codes again for each chunk, in pieces, so the codes need not be in memory:
    the working set is one chunk's values, its sort order and its table.
    """
    if count < FLAT_BELOW:
        return
    for chunk in range(CHUNKS):
        column = np.concatenate(
            [chunk_values(piece, range(chunk, chunk + 1))[:, 0] for piece in read()]
        )
        counts = np.bincount(column, minlength=1 << CHUNK_BITS)
        offsets = np.zeros(len(counts) + 1, dtype=np.uint32)
        np.cumsum(counts, out=offsets[1:])
        yield f"offsets{chunk:02d}", offsets
        yield f"rows{chunk:02d}", _packed(np.argsort(column, kind="stable"), count)


def _packed(rows: np.ndarray, count: int) -> np.ndarray:
    """Row numbers as little-endian bytes, 3 per row below 2**24 rows (else 4): N x width uint8."""
    width = 3 if count < 1 << 24 else 4
    return np.ascontiguousarray(rows.astype("<u4").view(np.uint8).reshape(-1, 4)[:, :width])
