"""Computes the signals eraser matches on: file digests, and PDQ with Meta's reference code.

PDQ comes from ``pdqhash``, a binding of the reference C++ implementation, given every pixel of
the image as decoded, so hashes agree with hash lists made by ThreatExchange, HMA and partner
programmes (tests/unit/test_pdq_conformance.py checks Meta's published vectors). It is slower
when the width is a multiple of 128 (a cache effect in its column filter); no pixel is changed to
avoid that, since any change moves the hash. Hex follows the reference: the first of the 256
bits is the most significant bit of the first hex digit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pdqhash


@dataclass(frozen=True)
class PdqHashes:
    """PDQ of an image as given and of its 7 other rotations/flips, with the image's quality."""

    dihedral: tuple[str, ...]
    quality: int

    @property
    def original(self) -> str:
        """The hash of the image as given."""
        return self.dihedral[0]


@dataclass(frozen=True)
class FileDigests:
    """Exact digests of the media bytes."""

    sha256: str
    md5: str


def digests(data: bytes) -> FileDigests:
    """SHA-256 and MD5 of ``data``."""
    return FileDigests(
        sha256=hashlib.sha256(data).hexdigest(),
        md5=hashlib.md5(data, usedforsecurity=False).hexdigest(),
    )


def pdq(pixels: np.ndarray) -> tuple[str, int]:
    """PDQ (hex) and quality of an HxWx3 uint8 image."""
    bits, quality = pdqhash.compute(pixels)
    return to_hex(bits), int(quality)


def pdq_dihedral(pixels: np.ndarray) -> PdqHashes:
    """PDQ of the image and its 7 other rotations/flips, computed in one pass."""
    all_bits, quality = pdqhash.compute_dihedral(pixels)
    return PdqHashes(dihedral=tuple(to_hex(bits) for bits in all_bits), quality=int(quality))


def to_hex(bits: np.ndarray) -> str:
    """256 bits (one per element, most significant first) as 64 hex digits."""
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex()


def distance(a: str, b: str) -> int:
    """Hamming distance between two hex hashes of the same length."""
    return (int(a, 16) ^ int(b, 16)).bit_count()
