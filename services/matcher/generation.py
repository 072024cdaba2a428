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

import json
import mmap
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.matcher.columns import Column
from services.matcher.index import VectorIndex
from services.matcher.mih import CHUNKS, MultiIndexHash, build_tables
from services.shared.schemas import Signal

FORMAT_VERSION = 2
DIMENSIONS = 1280
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
)
DIGESTS = (("sha256", 32), ("md5", 16))


@dataclass(frozen=True)
class Entry:
    """A registered entry, as a match reports it."""

    entry_id: str
    bank: str


@dataclass(frozen=True)
class Member:
    """An entry with its signals: PDQ hashes as N x 4 uint64 words, and exact digests (hex)."""

    entry: Entry
    codes: np.ndarray
    sha256: str | None = None
    md5: str | None = None
    embeddings: np.ndarray = field(default_factory=lambda: np.empty((0, DIMENSIONS), np.float32))


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
        self._dense = {name: arrays[name] for name in ("emb", "emb_key")}

    @classmethod
    def empty(cls) -> Generation:
        """A generation with no entries."""
        return _write(None, [], {}, Path())

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
        if not _bloom_has(self._bloom, id_hashes(np.array([encoded], dtype=ids.dtype)))[0]:
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

    def pdq_owner(self, rows: np.ndarray) -> np.ndarray:
        """The entry number of each PDQ row."""
        return self._columns["pdq_key"].take(rows).astype(np.int64)

    def members(self, dead: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The live entries' numbers, and the live PDQ rows (for compaction)."""
        live = np.flatnonzero(~dead)
        owners = self.full("pdq_key")
        rows = np.flatnonzero(~dead[owners]) if len(owners) else np.empty(0, dtype=np.int64)
        return live, rows

    def compacted(
        self, dead: np.ndarray, added: Sequence[Member], offsets: dict[int, int], folder: Path
    ) -> Generation:
        """This generation without the ``dead`` entries, plus ``added``, saved in ``folder``."""
        return _write(self, added, offsets, folder, dead)


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


def _write(
    old: Generation | None,
    added: Sequence[Member],
    offsets: dict[int, int],
    folder: Path,
    dead: np.ndarray | None = None,
) -> Generation:
    """Build a generation from ``old`` (minus ``dead``) and ``added``; save it unless no folder."""
    empty = np.empty(0, dtype=np.int64)
    live, rows = old.members(dead) if old is not None and dead is not None else (empty, empty)
    banks = sorted({*(old.banks if old else []), *(m.entry.bank for m in added)})
    arrays = {
        "ids": _joined(
            old.full("ids")[live] if old else None, [m.entry.entry_id.encode() for m in added]
        ),
        "bank": _bank_numbers(old, live, added, banks),
        "pdq_key": _pdq_keys(old, live, rows, added),
    }
    renumber = np.full(len(old) if old else 0, -1, dtype=np.int64)
    renumber[live] = np.arange(len(live))
    for signal, width in DIGESTS:
        kept_keys = renumber[old.full(f"{signal}_key")] if old else empty
        alive = kept_keys >= 0
        new = [
            (len(live) + n, bytes.fromhex(d))
            for n, m in enumerate(added)
            if (d := getattr(m, signal))
        ]
        arrays[f"{signal}_key"] = np.concatenate([kept_keys[alive], [k for k, _ in new]])
        arrays[f"{signal}_value"] = _joined(
            old.full(f"{signal}_value")[alive] if old else None, [v for _, v in new], width
        )
    kept_keys = renumber[old.full("emb_key")] if old else empty
    alive = kept_keys >= 0
    arrays["emb_key"] = np.concatenate(
        [
            kept_keys[alive],
            np.repeat(
                np.arange(len(live), len(live) + len(added)), [len(m.embeddings) for m in added]
            ),
        ]
    )
    arrays["emb"] = np.concatenate(
        [
            old.full("emb")[alive] if old else np.empty((0, DIMENSIONS), np.float16),
            *(m.embeddings.astype(np.float16) for m in added),
        ]
    ).reshape(-1, DIMENSIONS)
    parts = [Rows(old.full("codes"), rows)] if old else []
    parts += [Rows(m.codes) for m in added]
    return bulk(arrays, parts, banks, offsets, folder)


class Rows:
    """Some rows of an array (all of them without ``indices``), read a slice at a time."""

    def __init__(self, array: np.ndarray, indices: np.ndarray | None = None) -> None:
        self.array, self.indices = array, indices

    def __len__(self) -> int:
        return len(self.array) if self.indices is None else len(self.indices)

    def pieces(self, size: int = 1 << 20) -> Iterator[np.ndarray]:
        """The rows, ``size`` at a time."""
        for start in range(0, len(self), size):
            if self.indices is None:
                yield np.asarray(self.array[start : start + size], dtype=np.uint64)
            else:
                yield np.asarray(self.array[self.indices[start : start + size]], dtype=np.uint64)


def bulk(
    arrays: dict[str, np.ndarray],
    codes: np.ndarray | list[Rows],
    banks: list[str],
    offsets: dict[int, int],
    folder: Path,
) -> Generation:
    """A generation from arrays; saved in ``folder`` unless it is ``Path()``.

    Per entry: ``ids`` (fixed-width bytes) and ``bank`` (numbers into ``banks``). Per PDQ hash:
    its ``codes`` row and ``pdq_key``, the number of its entry. Per exact digest: ``sha256_key``
    and ``sha256_value`` (likewise ``md5_``), the entry number and the digest bytes, in any order;
    entries without digests cost nothing. ``arrays`` is taken over: it is emptied as the arrays
    are written, so their memory is freed before the index tables are built.
    """
    arrays["id_order"] = np.argsort(arrays["ids"], kind="stable").astype(np.uint32)
    arrays["bloom"] = _bloom(id_hashes(arrays["ids"]))
    for signal, width in DIGESTS:
        values = np.asarray(arrays.get(f"{signal}_value", np.empty(0)), dtype=f"S{width}")
        keys = np.asarray(arrays.get(f"{signal}_key", np.empty(0)), dtype=np.uint32)
        order = np.argsort(values, kind="stable")
        arrays[f"{signal}_value"], arrays[f"{signal}_key"] = values[order], keys[order]
    arrays.setdefault("emb", np.empty((0, DIMENSIONS), dtype=np.float16))
    arrays["emb_key"] = np.asarray(arrays.get("emb_key", np.empty(0)), dtype=np.uint32)
    parts = [Rows(codes)] if isinstance(codes, np.ndarray) else codes
    meta = {
        "version": FORMAT_VERSION,
        "banks": banks,
        "offsets": offsets,
        "written_at": time.time(),
    }
    if folder == Path():
        index = MultiIndexHash.build(
            np.concatenate([np.empty((0, 4), np.uint64), *(p for r in parts for p in r.pieces())])
        )
        return Generation(None, {**arrays, **index.arrays()}, meta)
    return _save(folder, arrays, parts, meta)


def _joined(old: np.ndarray | None, new: list[bytes], width: int | None = None) -> np.ndarray:
    """Fixed-width byte strings: the old ones, then the new ones."""
    old = old if old is not None else np.empty(0, dtype="S1")
    width = width or max([1, old.dtype.itemsize, *(len(value) for value in new)])
    return np.concatenate([old.astype(f"S{width}"), np.array(new, dtype=f"S{width}")])


def _bank_numbers(
    old: Generation | None, live: np.ndarray, added: Sequence[Member], banks: list[str]
) -> np.ndarray:
    number = {name: n for n, name in enumerate(banks)}
    kept = np.empty(0, dtype=np.uint16)
    if old is not None and len(live):
        renumber = np.array([number[name] for name in old.banks], dtype=np.uint16)
        kept = renumber[old.full("bank")[live]]
    return np.concatenate([kept, np.array([number[m.entry.bank] for m in added], np.uint16)])


def _pdq_keys(
    old: Generation | None, live: np.ndarray, rows: np.ndarray, added: Sequence[Member]
) -> np.ndarray:
    kept = np.empty(0, dtype=np.int64)
    if old is not None:
        renumber = np.full(len(old), -1, dtype=np.int64)
        renumber[live] = np.arange(len(live))
        kept = renumber[old.full("pdq_key")[rows]]
    new = np.repeat(np.arange(len(live), len(live) + len(added)), [len(m.codes) for m in added])
    return np.concatenate([kept, new]).astype(np.uint32)


def _save(
    folder: Path, arrays: dict[str, np.ndarray], codes: list[Rows], meta: dict[str, object]
) -> Generation:
    """Write the generation atomically (a temporary folder renamed into place), then map it.

    The codes are copied into their file slice by slice, and the index tables are built from
    that file one table at a time: a compaction's working memory stays a few hundred megabytes at
    ten million entries instead of a second copy of everything.
    """
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, array in arrays.items():
        np.save(staging / f"{name}.npy", array)
    arrays.clear()
    count = sum(len(part) for part in codes)
    _write_rows(staging / "codes.npy", codes, count)
    for name, table in build_tables(lambda: _read_rows(staging / "codes.npy", count), count):
        np.save(staging / f"{name}.npy", table)
    (staging / "meta.json").write_text(json.dumps(meta))
    staging.rename(folder)
    return load(folder)


def _write_rows(path: Path, parts: list[Rows], count: int) -> None:
    """An N x 4 uint64 .npy file, written from ``parts`` a slice at a time (never mapped)."""
    with open(path, "wb") as file:
        header = {"descr": "<u8", "fortran_order": False, "shape": (count, 4)}
        np.lib.format.write_array_header_1_0(file, header)
        for part in parts:
            for piece in part.pieces():
                file.write(np.ascontiguousarray(piece, dtype="<u8").tobytes())


def _read_rows(path: Path, count: int, size: int = 1 << 20) -> Iterator[np.ndarray]:
    """The rows of an N x 4 uint64 .npy file, ``size`` at a time, read (not mapped)."""
    with open(path, "rb") as file:
        version = np.lib.format.read_magic(file)
        header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        header(file)
        for start in range(0, count, size):
            rows = min(size, count - start)
            yield np.fromfile(file, dtype="<u8", count=rows * 4).reshape(rows, 4)


def load(folder: Path) -> Generation:
    """Memory-map a saved generation."""
    meta = json.loads((folder / "meta.json").read_text())
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"snapshot {folder} has format {meta.get('version')}, not {FORMAT_VERSION}"
        )
    arrays: dict[str, np.ndarray | Column] = {
        path.stem: Column(path=path) if path.stem in SPARSE else _map(path)
        for path in folder.glob("*.npy")
    }
    return Generation(folder, arrays, meta)


def _map(path: Path) -> np.ndarray:
    """Memory-map a .npy file read-only, for random access.

    MADV_RANDOM matters: lookups touch a few scattered rows, and without it the kernel maps whole
    large page-cache folios (and reads ahead) around each one, so a few hundred lookups would pull
    entire id arrays into the process's memory.
    """
    with open(path, "rb") as file:
        version = np.lib.format.read_magic(file)
        header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = header(file)
        offset = file.tell()
        if shape and int(np.prod(shape)) == 0:
            return np.empty(shape, dtype=dtype)
        mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    mapped.madvise(mmap.MADV_RANDOM)
    count = int(np.prod(shape)) if shape else 1
    array = np.frombuffer(mapped, dtype=dtype, count=count, offset=offset)
    return array.reshape(shape, order="F" if fortran else "C")


def id_hashes(ids: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each fixed-width id (vectorised: 8 bytes at a time, SplitMix64-mixed)."""
    width = -(-ids.dtype.itemsize // 8) * 8
    padded = np.zeros((len(ids), width), dtype=np.uint8)
    if len(ids):
        padded[:, : ids.dtype.itemsize] = ids.view(np.uint8).reshape(len(ids), -1)
    words = padded.view("<u8")
    hashes = np.full(len(ids), 0x9E3779B97F4A7C15, dtype=np.uint64)
    for column in range(words.shape[1]):
        hashes = _mix(hashes ^ words[:, column])
    return hashes


def _mix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    mixed: np.ndarray = x ^ (x >> np.uint64(31))
    return mixed


def _bloom_positions(hashes: np.ndarray, bits: int) -> list[np.ndarray]:
    step = _mix(hashes) | np.uint64(1)
    with np.errstate(over="ignore"):
        return [(hashes + np.uint64(k) * step) & np.uint64(bits - 1) for k in range(3)]


def _bloom(hashes: np.ndarray) -> np.ndarray:
    """A Bloom filter of about 8 bits per id and 3 probes (under 1% false positives)."""
    bits = 1 << max(6, int(8 * max(1, len(hashes)) - 1).bit_length())
    filter_ = np.zeros(bits // 8, dtype=np.uint8)
    for position in _bloom_positions(hashes, bits):
        np.bitwise_or.at(
            filter_,
            position >> np.uint64(3),
            np.left_shift(1, position & np.uint64(7)).astype(np.uint8),
        )
    return filter_


def _bloom_has(filter_: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    present = np.ones(len(hashes), dtype=bool)
    for position in _bloom_positions(hashes, len(filter_) * 8):
        present &= (filter_[position >> np.uint64(3)] >> (position & np.uint64(7))) & 1 == 1
    return present
