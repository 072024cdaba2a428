"""Builds generations: from arrays (a benchmark, a bulk load) or by compaction.

Compaction (``registry.py``) folds the delta into the next generation: the old generation's live
rows and the added members, renumbered, written as a new snapshot (``storage.py``) when the
matcher keeps snapshots, else held in memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from services.matcher import storage
from services.matcher.bloom import bloom_filter, id_hashes
from services.matcher.generation import (
    DIGESTS,
    DIMENSIONS,
    FACE_DIMENSIONS,
    FORMAT_VERSION,
    Generation,
    Member,
)
from services.matcher.mih import MultiIndexHash
from services.matcher.storage import PackedRows, Rows, Streamed
from services.shared.keypoints import RECORD


def empty() -> Generation:
    """A generation with no entries."""
    return build(None, [], {}, Path())


def compacted(
    old: Generation,
    dead: np.ndarray,
    added: Sequence[Member],
    offsets: dict[int, int],
    folder: Path,
) -> Generation:
    """``old`` without the ``dead`` entries, plus ``added``, saved in ``folder``."""
    return build(old, added, offsets, folder, dead)


def build(
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
            old.full("ids") if old else None, live, [m.entry.entry_id.encode() for m in added]
        ),
        "bank": _bank_numbers(old, live, added, banks),
        "pdq_key": _pdq_keys(old, live, rows, added),
    }
    renumber = _renumbering(len(old) if old else 0, live)
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
            old.full(f"{signal}_value") if old else None,
            np.flatnonzero(alive),
            [v for _, v in new],
            width,
        )
    for name, dimensions, of in (
        ("emb", DIMENSIONS, lambda m: m.embeddings),
        ("face", FACE_DIMENSIONS, lambda m: m.faces),
    ):
        arrays[f"{name}_key"], arrays[name] = _vectors(old, renumber, added, len(live), name, of)
        arrays[name] = arrays[name].reshape(-1, dimensions)
    _subjects(old, renumber, added, len(live), arrays)
    parts = [Rows(old.full("codes"), rows)] if old else []
    parts += [Rows(m.codes) for m in added]
    keypoints = _keypoints(old, renumber, added, len(live), arrays)
    return bulk(arrays, parts, banks, offsets, folder, keypoints)


def _vectors(
    old: Generation | None,
    renumber: np.ndarray,
    added: Sequence[Member],
    first_added: int,
    name: str,
    of: Callable[[Member], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """The owner keys and float16 rows of one kind of vector: the old live ones, then the new."""
    kept = renumber[old.full(f"{name}_key")] if old else np.empty(0, dtype=np.int64)
    alive = kept >= 0
    counts = [len(of(m)) for m in added]
    keys = np.concatenate(
        [kept[alive], np.repeat(np.arange(first_added, first_added + len(added)), counts)]
    )
    width = of(added[0]).shape[1] if added else old.full(name).shape[1] if old else 0
    rows = np.concatenate(
        [
            old.full(name)[alive] if old else np.empty((0, width), np.float16),
            *(of(m).astype(np.float16) for m in added),
        ]
    )
    return keys, rows


def _subjects(
    old: Generation | None,
    renumber: np.ndarray,
    added: Sequence[Member],
    first_added: int,
    arrays: dict[str, np.ndarray],
) -> None:
    """Sets ``subject_key`` (ascending) and ``subject_value`` for the entries naming a subject."""
    kept = renumber[old.full("subject_key")] if old else np.empty(0, dtype=np.int64)
    alive = np.flatnonzero(kept >= 0)
    new = [(first_added + n, m.subject.encode()) for n, m in enumerate(added) if m.subject]
    arrays["subject_key"] = np.concatenate([kept[alive], [k for k, _ in new]]).astype(np.uint32)
    arrays["subject_value"] = _joined(
        old.full("subject_value") if old else None, alive, [v for _, v in new]
    )


def _keypoints(
    old: Generation | None,
    renumber: np.ndarray,
    added: Sequence[Member],
    first_added: int,
    arrays: dict[str, np.ndarray],
) -> Streamed:
    """Sets ``kp_key`` and ``kp_length``; the keypoint rows, old ones read as they are written.

    Rows are as wide as the most keypoints any entry has (300 from eraser's own registrar).
    """
    kept = renumber[old.full("kp_key")] if old else np.empty(0, dtype=np.int64)
    alive = np.flatnonzero(kept >= 0)
    new = [(first_added + n, m.keypoints) for n, m in enumerate(added) if m.keypoints]
    arrays["kp_key"] = np.concatenate([kept[alive], [key for key, _ in new]]).astype(np.uint32)
    arrays["kp_length"] = np.concatenate(
        [
            old.full("kp_length")[alive] if old else np.empty(0, np.uint16),
            [len(packed) // RECORD.itemsize for _, packed in new],
        ]
    ).astype(np.uint16)
    old_rows = old.full("kp") if old else np.empty((0, 0), np.uint8)
    width = max([1, old_rows.shape[1], *(len(packed) for _, packed in new)])
    parts: list[Rows | PackedRows] = [Rows(old_rows, alive)] if old else []
    parts.append(PackedRows([packed for _, packed in new], width))
    return Streamed(parts, width, np.dtype(np.uint8))


def bulk(
    arrays: dict[str, np.ndarray],
    codes: np.ndarray | Sequence[Rows | PackedRows],
    banks: list[str],
    offsets: dict[int, int],
    folder: Path,
    keypoints: Streamed | None = None,
) -> Generation:
    """A generation from arrays; saved in ``folder`` unless it is ``Path()``.

    Per entry: ``ids`` (fixed-width bytes) and ``bank`` (numbers into ``banks``). Per PDQ hash:
    its ``codes`` row and ``pdq_key``, the number of its entry. Per exact digest: ``sha256_key``
    and ``sha256_value`` (likewise ``md5_``), the entry number and the digest bytes, in any order;
    entries without digests cost nothing. Per entry with keypoints: ``kp_key`` (its number, in
    ascending order), ``kp_length`` (records) and its row of ``keypoints``. ``arrays`` is taken
    over: it is emptied as the arrays are written, so their memory is freed before the index
    tables are built.
    """
    arrays["id_order"] = np.argsort(arrays["ids"], kind="stable").astype(np.uint32)
    arrays["bloom"] = bloom_filter(id_hashes(arrays["ids"]))
    for signal, width in DIGESTS:
        values = np.asarray(arrays.get(f"{signal}_value", np.empty(0)), dtype=f"S{width}")
        keys = np.asarray(arrays.get(f"{signal}_key", np.empty(0)), dtype=np.uint32)
        order = np.argsort(values, kind="stable")
        arrays[f"{signal}_value"], arrays[f"{signal}_key"] = values[order], keys[order]
    arrays.setdefault("emb", np.empty((0, DIMENSIONS), dtype=np.float16))
    arrays["emb_key"] = np.asarray(arrays.get("emb_key", np.empty(0)), dtype=np.uint32)
    arrays.setdefault("face", np.empty((0, FACE_DIMENSIONS), dtype=np.float16))
    arrays["face_key"] = np.asarray(arrays.get("face_key", np.empty(0)), dtype=np.uint32)
    arrays.setdefault("subject_key", np.empty(0, dtype=np.uint32))
    arrays.setdefault("subject_value", np.empty(0, dtype="S1"))
    arrays.setdefault("kp_key", np.empty(0, dtype=np.uint32))
    arrays.setdefault("kp_length", np.empty(0, dtype=np.uint16))
    streamed = {
        "codes": Streamed(
            [Rows(codes)] if isinstance(codes, np.ndarray) else list(codes), 4, np.dtype(np.uint64)
        ),
        "kp": keypoints or Streamed([], 1, np.dtype(np.uint8)),
    }
    meta = {
        "version": FORMAT_VERSION,
        "banks": banks,
        "offsets": offsets,
        "written_at": time.time(),
    }
    if folder == Path():
        index = MultiIndexHash.build(streamed["codes"].joined())
        return Generation(None, {**arrays, "kp": streamed["kp"].joined(), **index.arrays()}, meta)
    return storage.save(folder, arrays, streamed, meta)


def _joined(
    old: np.ndarray | None, kept: np.ndarray, new: list[bytes], width: int | None = None
) -> np.ndarray:
    """Fixed-width byte strings: the ``kept`` rows of the old ones, then the new ones.

    Written straight into the result: at ten million ids, each intermediate copy is 160 MB.
    """
    old = old if old is not None else np.empty(0, dtype="S1")
    width = width or max([1, old.dtype.itemsize, *(len(value) for value in new)])
    out = np.empty(len(kept) + len(new), dtype=f"S{width}")
    for start in range(0, len(kept), 1 << 20):
        piece = kept[start : start + (1 << 20)]
        out[start : start + len(piece)] = old[piece]
    out[len(kept) :] = new
    return out


def _renumbering(count: int, live: np.ndarray) -> np.ndarray:
    """Old entry number -> new (-1 for dead ones); 32-bit, half the memory of numpy's default."""
    renumber = np.full(count, -1, dtype=np.int32)
    renumber[live] = np.arange(len(live), dtype=np.int32)
    return renumber


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
        kept = _renumbering(len(old), live)[old.full("pdq_key")[rows]]
    new = np.repeat(np.arange(len(live), len(live) + len(added)), [len(m.codes) for m in added])
    return np.concatenate([kept, new]).astype(np.uint32)
