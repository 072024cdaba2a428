"""Keypoints: an image's local features as they travel and are stored; never the image itself.

Ingest computes them for every upload and the registrar for every protected image
(``ingest/keypoints.py``); the matcher checks whether an upload's keypoints and an entry's agree
on one geometric transform (``matcher/verification.py``), which catches copies that global hashes
miss: overlays, small rotations, screenshots. On the wire they are base64 text of packed records,
36 bytes each: the position in the image scaled to at most 512 px on its longer side (x and y in
eighths of a pixel, unsigned 16-bit little-endian) and the 256-bit ORB descriptor.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_KEYPOINTS = 500
_SUBPIXEL = 8
RECORD = np.dtype([("x", "<u2"), ("y", "<u2"), ("descriptor", "u1", (32,))])


@dataclass(frozen=True)
class Keypoints:
    """Positions (N x 2 float32, pixels) and ORB descriptors (N x 32 uint8) of one image."""

    positions: np.ndarray
    descriptors: np.ndarray

    def __len__(self) -> int:
        return len(self.descriptors)

    @classmethod
    def empty(cls) -> Keypoints:
        """No keypoints (a flat image has none)."""
        return cls(np.empty((0, 2), np.float32), np.empty((0, 32), np.uint8))


def pack(keypoints: Keypoints) -> bytes:
    """The packed records."""
    records = np.empty(len(keypoints), dtype=RECORD)
    scaled = np.rint(keypoints.positions * _SUBPIXEL).clip(0, np.iinfo(np.uint16).max)
    records["x"], records["y"] = scaled[:, 0], scaled[:, 1]
    records["descriptor"] = keypoints.descriptors
    return records.tobytes()


def unpack(raw: bytes) -> Keypoints:
    """Keypoints from packed records.

    Raises:
        ValueError: the bytes are not whole records, or too many.
    """
    if len(raw) % RECORD.itemsize or len(raw) > MAX_KEYPOINTS * RECORD.itemsize:
        raise ValueError(f"keypoints are at most {MAX_KEYPOINTS} records of {RECORD.itemsize} B")
    records = np.frombuffer(raw, dtype=RECORD)
    positions = np.stack([records["x"], records["y"]], axis=1).astype(np.float32) / _SUBPIXEL
    return Keypoints(positions, np.ascontiguousarray(records["descriptor"]))


def keypoints_to_text(keypoints: Keypoints) -> str:
    """The wire form: packed records, base64."""
    return base64.b64encode(pack(keypoints)).decode()


def keypoints_from_text(text: str) -> Keypoints:
    """Keypoints from their wire form.

    Raises:
        ValueError: not base64, or not valid records.
    """
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("keypoints are not base64") from None
    return unpack(raw)


def check_text(value: Any) -> Any:
    """A pydantic validator: ``value`` must be keypoints in wire form (or not a string)."""
    if isinstance(value, str):
        keypoints_from_text(value)
    return value
