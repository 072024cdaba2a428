"""Arrays a generation looks up a few rows at a time: read with pread, never mapped.

An entry's id, bank or digests are needed only for a match or a withdrawal, a handful of rows
at a time. Memory-mapping them would let the kernel map whole large page-cache folios around
each row touched, so the process would soon hold every id in memory; reading rows with pread keeps
them in the page cache, shared and reclaimable, and out of the matcher's own memory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np


def npy_header(file: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """(shape, Fortran order, dtype) of an open .npy file, left at its first byte of data."""
    version = np.lib.format.read_magic(file)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(file)
    return np.lib.format.read_array_header_2_0(file)


class Column:
    """A .npy array (or an in-memory one) read row by row; a row may be a value or a vector."""

    def __init__(self, array: np.ndarray | None = None, path: Path | None = None) -> None:
        self._array = array
        self._path = path
        self._fd = -1
        if path is not None:
            with open(path, "rb") as file:
                shape, _, self.dtype = npy_header(file)
                self._offset = file.tell()
            self._length = int(shape[0]) if shape else 0
            self._row_shape: tuple[int, ...] = tuple(shape[1:])
            self._fd = os.open(path, os.O_RDONLY)
        else:
            assert array is not None
            self.dtype, self._length = array.dtype, len(array)
            self._row_shape = tuple(array.shape[1:])

    def __len__(self) -> int:
        return self._length

    def at(self, row: int) -> Any:
        """One row (bytes for byte strings, a numpy scalar or vector otherwise)."""
        if self._array is not None:
            return self._array[row]
        size = self.dtype.itemsize * int(np.prod(self._row_shape))
        raw = os.pread(self._fd, size, self._offset + row * size)
        values = np.frombuffer(raw, dtype=self.dtype)
        return values.reshape(self._row_shape) if self._row_shape else values[0]

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Several rows' values."""
        if self._array is not None:
            taken: np.ndarray = self._array[rows]
            return taken
        return np.array([self.at(int(row)) for row in rows], dtype=self.dtype)

    def full(self) -> np.ndarray:
        """The whole array (memory-mapped from its file): for compaction, not for lookups."""
        if self._array is not None:
            return self._array
        mapped: np.ndarray = np.load(self._path, mmap_mode="r")  # type: ignore[arg-type]
        return mapped

    def __del__(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
