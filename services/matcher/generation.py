"""One generation of the registry: the bulk of the entries, as flat arrays, immutable once built.

The matcher serves from a generation plus a small mutable delta (``registry.py``). Compaction
folds the delta into a new generation, written straight to a folder of .npy files and memory-mapped
back: the snapshot a restarted matcher loads before replaying only the registry topic's tail.
Everything is arrays, not Python objects, so ten million entries fit in well under a gigabyte:
per entry its id, bank and digests; per PDQ hash its 32 bytes and its entry; and the
multi-index-hash tables. (Digests are fixed-width bytes with all-zero meaning "none": a real
all-zero SHA-256 or MD5 has odds of 2^-128 or less.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.matcher.bloom import bloom_has, id_hashes
from services.matcher.columns import Column
from services.matcher.index import VectorIndex
from services.matcher.mih import CHUNKS, MultiIndexHash
from services.shared.keypoints import RECORD
from services.shared.schemas import Signal

FORMAT_VERSION = 4  # 3: keypoints; 4: faces and subjects
DIMENSIONS = 1280
FACE_DIMENSIONS = 128
# Past this many faces a generation searches them through an inverted file, re-checked exactly
# (a flat scan costs about 10 ms per face here, growing with the count).
APPROXIMATE_FACES = 200_000
# Per-entry arrays read a row at a time (see columns.py); the rest is memory-mapped.
SPARSE = (
    "ids",
    "id_order",
    "bank",
    "pdq_key",
    "sha256_key",
    "sha256_value",
    "md5_key",
    "md5_value",
    "kp",
    "kp_length",
    "kp_key",
    "subject_key",
    "subject_value",
)
DIGESTS = (("sha256", 32), ("md5", 16))


@dataclass(frozen=True)
class Entry:
    """A registered entry, as a match reports it."""

    entry_id: str
    bank: str


@dataclass(frozen=True)
class Member:
    """An entry with its signals.

    PDQ hashes as N x 4 uint64 words, exact digests (hex), embeddings, and keypoints (packed
    records, ``shared/keypoints.py``).
    """

    entry: Entry
    codes: np.ndarray
    sha256: str | None = None
    md5: str | None = None
    embeddings: np.ndarray = field(default_factory=lambda: np.empty((0, DIMENSIONS), np.float32))
    keypoints: bytes = b""
    faces: np.ndarray = field(default_factory=lambda: np.empty((0, FACE_DIMENSIONS), np.float32))
    subject: str | None = None


class Generation:
    """Entries 0..N-1 as arrays, with lookups by id and digest, and the PDQ index."""

    def __init__(
        self, folder: Path | None, arrays: dict[str, np.ndarray | Column], meta: dict[str, Any]
    ) -> None:
        self.folder = folder
        self.meta = meta
        self.banks: list[str] = list(meta["banks"])
        self.offsets: dict[int, int] = {int(k): int(v) for k, v in meta["offsets"].items()}
        self._columns = {name: _column(arrays[name]) for name in SPARSE}
        self._bloom = np.asarray(arrays["bloom"])
        tables = "offsets00" in arrays
        self.pdq = MultiIndexHash(
            np.asarray(arrays["codes"]),
            [np.asarray(arrays[f"offsets{c:02d}"]) for c in range(CHUNKS)] if tables else [],
            [np.asarray(arrays[f"rows{c:02d}"]) for c in range(CHUNKS)] if tables else [],
        )
        # Embeddings are searched in memory (float32: 5 KB each); they are only for entries
        # registered from images, far fewer than hash-list entries.
        self.vectors = VectorIndex(DIMENSIONS)
        self.vectors.add_rows(np.asarray(arrays["emb_key"]), np.asarray(arrays["emb"]))
        # Faces likewise: 128 numbers each, for the photographs registered with faces.
        self.faces = VectorIndex(FACE_DIMENSIONS, approximate_above=APPROXIMATE_FACES)
        self.faces.add_rows(np.asarray(arrays["face_key"]), np.asarray(arrays["face"]))
        self._dense = {name: arrays[name] for name in ("emb", "emb_key", "face", "face_key")}

    def __len__(self) -> int:
        return len(self._columns["ids"])

    @property
    def pdq_count(self) -> int:
        """How many PDQ hashes the generation holds."""
        return len(self.pdq)

    def digest_count(self, signal: Signal) -> int:
        """How many entries have this exact digest."""
        return len(self._columns[f"{signal}_value"])

    def full(self, name: str) -> np.ndarray:
        """A whole per-entry or per-hash array, for compaction."""
        if name == "codes":
            return self.pdq.codes
        if name in self._columns:
            return self._columns[name].full()
        return np.asarray(self._dense[name])

    def entry(self, key: int) -> Entry:
        """Entry number ``key`` (reads its id and bank only)."""
        ids, bank = self._columns["ids"], self._columns["bank"]
        return Entry(bytes(ids.at(key)).decode(), self.banks[int(bank.at(key))])

    def key_of(self, entry_id: str) -> int | None:
        """The number of the entry with this id, if it is in this generation.

        A Bloom filter answers "not here" for almost every new id without reading the ids, so
        registering new entries costs no disk reads.
        """
        ids, order = self._columns["ids"], self._columns["id_order"]
        encoded = entry_id.encode()
        if len(order) == 0 or len(encoded) > ids.dtype.itemsize:
            return None
        if not bloom_has(self._bloom, id_hashes(np.array([encoded], dtype=ids.dtype)))[0]:
            return None
        at = _bisect(ids, encoded, order)
        if at < len(order) and bytes(ids.at(int(order.at(at)))) == encoded:
            return int(order.at(at))
        return None

    def with_digest(self, signal: Signal, digest: str) -> list[int]:
        """The numbers of the entries with this exact SHA-256 or MD5."""
        values, keys = self._columns[f"{signal}_value"], self._columns[f"{signal}_key"]
        wanted = bytes.fromhex(digest).rstrip(b"\0")  # fixed-width bytes drop trailing zeros
        found = []
        at = _bisect(values, wanted)
        while at < len(values) and bytes(values.at(at)) == wanted:
            found.append(int(keys.at(at)))
            at += 1
        return found

    def codes_of(self, key: int) -> np.ndarray:
        """The PDQ hashes of entry ``key`` (its rows are contiguous: keys are in row order)."""
        owners = self._columns["pdq_key"]
        low, high = _first_at_least(owners, key), _first_at_least(owners, key + 1)
        return np.asarray(self.pdq.codes[low:high])

    def keypoints_of(self, key: int) -> bytes:
        """The packed keypoints of entry ``key`` (empty if it has none): two small reads."""
        keys = self._columns["kp_key"]
        at = _first_at_least(keys, key)
        if at == len(keys) or int(keys.at(at)) != key:
            return b""
        length = int(self._columns["kp_length"].at(at)) * RECORD.itemsize
        return bytes(self._columns["kp"].at(at)[:length])

    def subject_of(self, key: int) -> str | None:
        """The subject entry ``key`` is of, if it names one: two small reads."""
        keys = self._columns["subject_key"]
        at = _first_at_least(keys, key)
        if at == len(keys) or int(keys.at(at)) != key:
            return None
        return bytes(self._columns["subject_value"].at(at)).decode()

    def pdq_owner(self, rows: np.ndarray) -> np.ndarray:
        """The entry number of each PDQ row."""
        return self._columns["pdq_key"].take(rows).astype(np.int64)

    def members(self, dead: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The live entries' numbers, and the live PDQ rows (for compaction)."""
        live = np.flatnonzero(~dead)
        owners = self.full("pdq_key")
        rows = np.flatnonzero(~dead[owners]) if len(owners) else np.empty(0, dtype=np.int64)
        return live, rows


def _bisect(values: Column, wanted: bytes, order: Column | None = None) -> int:
    """The first position (in ``order``, else in ``values``) whose value is not below ``wanted``.

    Reads log N rows.
    """
    low, high = 0, len(order if order is not None else values)
    while low < high:
        middle = (low + high) // 2
        row = int(order.at(middle)) if order is not None else middle
        if bytes(values.at(row)) < wanted:
            low = middle + 1
        else:
            high = middle
    return low


def _first_at_least(column: Column, value: int) -> int:
    low, high = 0, len(column)
    while low < high:
        middle = (low + high) // 2
        if int(column.at(middle)) < value:
            low = middle + 1
        else:
            high = middle
    return low


def _column(array: np.ndarray | Column) -> Column:
    return array if isinstance(array, Column) else Column(array)
