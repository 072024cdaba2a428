"""How a generation is kept on disk: a folder of .npy files, written atomically, mapped back.

The snapshot a restarted matcher loads (``snapshots.py`` decides which). Per-entry arrays that are
looked up a row at a time are read with pread (``columns.py``); the rest is memory-mapped.
"""

from __future__ import annotations

import json
import mmap
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.matcher.columns import Column, npy_header
from services.matcher.generation import FORMAT_VERSION, SPARSE, Generation
from services.matcher.mih import build_tables

_PIECE_BYTES = 32 << 20


class Rows:
    """Some rows of a 2-D array (all of them without ``indices``), read a slice at a time."""

    def __init__(self, array: np.ndarray, indices: np.ndarray | None = None) -> None:
        self.array, self.indices = array, indices

    def __len__(self) -> int:
        return len(self.array) if self.indices is None else len(self.indices)

    def pieces(self) -> Iterator[np.ndarray]:
        """The rows, about 32 MB at a time."""
        size = max(1, _PIECE_BYTES // max(1, self.array[:1].nbytes))
        for start in range(0, len(self), size):
            if self.indices is None:
                yield np.asarray(self.array[start : start + size])
            else:
                yield np.asarray(self.array[self.indices[start : start + size]])


class PackedRows:
    """Byte strings as rows of uint8, zero-padded to ``width``, made a slice at a time."""

    def __init__(self, values: list[bytes], width: int) -> None:
        self.values, self.width = values, width

    def __len__(self) -> int:
        return len(self.values)

    def pieces(self) -> Iterator[np.ndarray]:
        """The rows, about 32 MB at a time."""
        size = max(1, _PIECE_BYTES // max(1, self.width))
        for start in range(0, len(self), size):
            chunk = self.values[start : start + size]
            rows = np.zeros((len(chunk), self.width), dtype=np.uint8)
            for row, value in enumerate(chunk):
                rows[row, : len(value)] = np.frombuffer(value, dtype=np.uint8)
            yield rows


@dataclass(frozen=True)
class Streamed:
    """A large 2-D array given as parts, written to its file without being joined in memory.

    Parts narrower than ``width`` are zero-padded on the right.
    """

    parts: list[Rows | PackedRows]
    width: int
    dtype: np.dtype[Any]

    def pieces(self) -> Iterator[np.ndarray]:
        """Every part's rows, ``width`` wide."""
        for part in self.parts:
            for piece in part.pieces():
                missing = self.width - piece.shape[1]
                yield np.pad(piece, ((0, 0), (0, missing))) if missing else piece

    def joined(self) -> np.ndarray:
        """The whole array in memory (for a generation that is not saved)."""
        pieces = list(self.pieces())
        return np.concatenate([np.empty((0, self.width), self.dtype), *pieces]).astype(self.dtype)


def save(
    folder: Path,
    arrays: dict[str, np.ndarray],
    streamed: dict[str, Streamed],
    meta: dict[str, object],
) -> Generation:
    """Write the generation atomically (a temporary folder renamed into place), then map it.

    Large arrays (the PDQ codes, the keypoints) are copied into their files slice by slice, and
    the index tables are built from the codes file one table at a time: a compaction's working
    memory stays a few hundred megabytes at ten million entries instead of a second copy of
    everything.
    """
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, array in arrays.items():
        np.save(staging / f"{name}.npy", array)
    arrays.clear()
    for name, large in streamed.items():
        _write_rows(staging / f"{name}.npy", large)
    count = sum(len(part) for part in streamed["codes"].parts)
    for name, table in build_tables(lambda: _read_rows(staging / "codes.npy", count), count):
        np.save(staging / f"{name}.npy", table)
    (staging / "meta.json").write_text(json.dumps(meta))
    staging.rename(folder)
    return load(folder)


def _write_rows(path: Path, large: Streamed) -> None:
    """A 2-D .npy file, written from its parts a slice at a time (never mapped)."""
    count = sum(len(part) for part in large.parts)
    with open(path, "wb") as file:
        header = {
            "descr": np.lib.format.dtype_to_descr(large.dtype),
            "fortran_order": False,
            "shape": (count, large.width),
        }
        np.lib.format.write_array_header_1_0(file, header)
        for piece in large.pieces():
            file.write(np.ascontiguousarray(piece, dtype=large.dtype).tobytes())


def _read_rows(path: Path, count: int, size: int = 1 << 20) -> Iterator[np.ndarray]:
    """The rows of an N x 4 uint64 .npy file, ``size`` at a time, read (not mapped)."""
    with open(path, "rb") as file:
        npy_header(file)
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
        shape, fortran, dtype = npy_header(file)
        offset = file.tell()
        if shape and int(np.prod(shape)) == 0:
            return np.empty(shape, dtype=dtype)
        mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    mapped.madvise(mmap.MADV_RANDOM)
    count = int(np.prod(shape)) if shape else 1
    array = np.frombuffer(mapped, dtype=dtype, count=count, offset=offset)
    return array.reshape(shape, order="F" if fortran else "C")
