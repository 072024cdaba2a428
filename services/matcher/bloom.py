"""Ids hashed to 64 bits, and a Bloom filter over them: "is this id in the generation?" for free.

A new registration must know whether its id is already in the generation (it then replaces that
entry). Almost every new id is not, and the filter says so without reading a single id from disk.
"""

from __future__ import annotations

import numpy as np

_PIECE = 1 << 20  # ids hashed and filter bits set a million at a time: bounded working memory


def id_hashes(ids: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each fixed-width id (vectorised: 8 bytes at a time, SplitMix64-mixed)."""
    hashes = np.empty(len(ids), dtype=np.uint64)
    for start in range(0, len(ids), _PIECE):
        hashes[start : start + _PIECE] = _hashed(ids[start : start + _PIECE])
    return hashes


def _hashed(ids: np.ndarray) -> np.ndarray:
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


def bloom_filter(hashes: np.ndarray) -> np.ndarray:
    """A Bloom filter of about 8 bits per id and 3 probes (under 1% false positives)."""
    bits = 1 << max(6, int(8 * max(1, len(hashes)) - 1).bit_length())
    filter_ = np.zeros(bits // 8, dtype=np.uint8)
    for start in range(0, len(hashes), _PIECE):
        for position in _bloom_positions(hashes[start : start + _PIECE], bits):
            np.bitwise_or.at(
                filter_,
                position >> np.uint64(3),
                np.left_shift(1, position & np.uint64(7)).astype(np.uint8),
            )
    return filter_


def bloom_has(filter_: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Whether each hash may be in the filter (False: certainly not)."""
    present = np.ones(len(hashes), dtype=bool)
    for position in _bloom_positions(hashes, len(filter_) * 8):
        present &= (filter_[position >> np.uint64(3)] >> (position & np.uint64(7))) & 1 == 1
    return present
