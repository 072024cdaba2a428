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
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.matcher.mih import CHUNKS, MultiIndexHash
from services.shared.schemas import Signal

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Entry:
    """What the matcher keeps of a registered entry (PDQ hashes aside)."""

    entry_id: str
    bank: str
    sha256: str | None
    md5: str | None


@dataclass(frozen=True)
class Member:
    """An entry on its way into a generation, with its PDQ hashes as N x 4 uint64 words."""

    entry: Entry
    codes: np.ndarray


class Generation:
    """Entries 0..N-1 as arrays, with lookups by id and digest, and the PDQ index."""

    def __init__(self, folder: Path | None, arrays: dict[str, np.ndarray], meta: dict[str, object]):
        self.folder = folder
        self._a = arrays
        self.banks: list[str] = list(meta["banks"])  # type: ignore[call-overload]
        self.offsets: dict[int, int] = {int(k): v for k, v in meta["offsets"].items()}  # type: ignore[attr-defined]
        tables = "offsets00" in arrays
        self.pdq = MultiIndexHash(
            arrays["codes"],
            [arrays[f"offsets{c:02d}"] for c in range(CHUNKS)] if tables else [],
            [arrays[f"rows{c:02d}"] for c in range(CHUNKS)] if tables else [],
        )

    @classmethod
    def empty(cls) -> Generation:
        """A generation with no entries."""
        return _write(None, [], {}, Path())

    def __len__(self) -> int:
        return len(self._a["ids"])

    @property
    def pdq_count(self) -> int:
        """How many PDQ hashes the generation holds."""
        return len(self._a["codes"])

    def digest_count(self, signal: Signal) -> int:
        """How many entries have this exact digest."""
        return len(self._a[f"{signal}_order"])

    def entry(self, key: int) -> Entry:
        """Entry number ``key``."""
        sha256, md5 = self._a["sha256"][key], self._a["md5"][key]
        return Entry(
            entry_id=self._a["ids"][key].decode(),
            bank=self.banks[int(self._a["bank"][key])],
            sha256=sha256.ljust(32, b"\0").hex() if sha256 else None,
            md5=md5.ljust(16, b"\0").hex() if md5 else None,
        )

    def key_of(self, entry_id: str) -> int | None:
        """The number of the entry with this id, if it is in this generation."""
        ids, order = self._a["ids"], self._a["id_order"]
        if len(order) == 0 or len(entry_id.encode()) > ids.dtype.itemsize:
            return None
        wanted = np.array(entry_id.encode(), dtype=ids.dtype)
        at = _bisect(ids, order, wanted)
        if at < len(order) and ids[order[at]] == wanted:
            return int(order[at])
        return None

    def with_digest(self, signal: Signal, digest: str) -> list[int]:
        """The numbers of the entries with this exact SHA-256 or MD5."""
        values, order = self._a[signal], self._a[f"{signal}_order"]
        wanted = np.array(bytes.fromhex(digest).rstrip(b"\0"), dtype=values.dtype)
        keys = []
        at = _bisect(values, order, wanted)
        while at < len(order) and values[order[at]] == wanted:
            keys.append(int(order[at]))
            at += 1
        return keys

    def pdq_owner(self, rows: np.ndarray) -> np.ndarray:
        """The entry number of each PDQ row."""
        owners: np.ndarray = self._a["pdq_key"][rows].astype(np.int64)
        return owners

    def members(self, dead: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The live entries' numbers, and the live PDQ rows (for compaction)."""
        live = np.flatnonzero(~dead)
        rows = np.flatnonzero(~dead[self._a["pdq_key"]]) if self.pdq_count else np.empty(0, int)
        return live, rows

    def compacted(
        self, dead: np.ndarray, added: Sequence[Member], offsets: dict[int, int], folder: Path
    ) -> Generation:
        """This generation without the ``dead`` entries, plus ``added``, saved in ``folder``."""
        return _write(self, added, offsets, folder, dead)


def _bisect(values: np.ndarray, order: np.ndarray, wanted: np.ndarray) -> int:
    """The first position in ``order`` whose value is not below ``wanted`` (touches log N rows)."""
    low, high = 0, len(order)
    while low < high:
        middle = (low + high) // 2
        if values[order[middle]] < wanted:
            low = middle + 1
        else:
            high = middle
    return low


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
            old._a["ids"][live] if old else None, [m.entry.entry_id.encode() for m in added]
        ),
        "bank": _bank_numbers(old, live, added, banks),
        "pdq_key": _pdq_keys(old, live, rows, added),
    }
    for signal, width in (("sha256", 32), ("md5", 16)):
        arrays[signal] = _joined(
            old._a[signal][live] if old else None,
            [bytes.fromhex(getattr(m.entry, signal) or "") for m in added],
            width,
        )
    codes = [old._a["codes"][rows] if old else np.empty((0, 4), np.uint64)]
    codes += [m.codes for m in added]
    return bulk(
        arrays, np.concatenate(codes).astype(np.uint64).reshape(-1, 4), banks, offsets, folder
    )


def bulk(
    arrays: dict[str, np.ndarray],
    codes: np.ndarray,
    banks: list[str],
    offsets: dict[int, int],
    folder: Path,
) -> Generation:
    """A generation from arrays; saved in ``folder`` unless it is ``Path()``.

    Per entry: ``ids`` (fixed-width bytes), ``bank`` (numbers into ``banks``), ``sha256`` and
    ``md5`` (fixed-width bytes, empty for none). Per PDQ hash: its ``codes`` row and ``pdq_key``,
    the number of its entry.
    """
    arrays = dict(arrays)
    arrays["id_order"] = np.argsort(arrays["ids"], kind="stable").astype(np.uint32)
    for signal in ("sha256", "md5"):
        values = arrays[signal]
        present = np.flatnonzero(values != b"")
        arrays[f"{signal}_order"] = present[np.argsort(values[present], kind="stable")].astype(
            np.uint32
        )
    index = MultiIndexHash.build(codes)
    meta = {"version": FORMAT_VERSION, "banks": banks, "offsets": offsets}
    if folder == Path():
        return Generation(None, {**arrays, **index.arrays()}, meta)
    return _save(folder, arrays, index, meta)


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
        kept = renumber[old._a["bank"][live]]
    return np.concatenate([kept, np.array([number[m.entry.bank] for m in added], np.uint16)])


def _pdq_keys(
    old: Generation | None, live: np.ndarray, rows: np.ndarray, added: Sequence[Member]
) -> np.ndarray:
    kept = np.empty(0, dtype=np.int64)
    if old is not None:
        renumber = np.full(len(old), -1, dtype=np.int64)
        renumber[live] = np.arange(len(live))
        kept = renumber[old._a["pdq_key"][rows]]
    new = np.repeat(np.arange(len(live), len(live) + len(added)), [len(m.codes) for m in added])
    return np.concatenate([kept, new]).astype(np.uint32)


def _save(
    folder: Path, arrays: dict[str, np.ndarray], index: MultiIndexHash, meta: dict[str, object]
) -> Generation:
    """Write the generation atomically (a temporary folder renamed into place), then map it."""
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, array in {**arrays, **index.arrays()}.items():
        np.save(staging / f"{name}.npy", array)
    (staging / "meta.json").write_text(json.dumps(meta))
    staging.rename(folder)
    return load(folder)


def load(folder: Path) -> Generation:
    """Memory-map a saved generation."""
    meta = json.loads((folder / "meta.json").read_text())
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"snapshot {folder} has format {meta.get('version')}, not {FORMAT_VERSION}"
        )
    arrays = {path.stem: np.load(path, mmap_mode="r") for path in folder.glob("*.npy")}
    return Generation(folder, arrays, meta)
