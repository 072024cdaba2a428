"""Test images made in code, and the real photographs scikit-image bundles."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from services.samples import photo_bytes


def photo(name: str) -> Image.Image:
    """A bundled photograph as an RGB image."""
    return Image.open(io.BytesIO(photo_bytes(name))).convert("RGB")


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    """``image`` saved in ``fmt``."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def gradient(width: int = 96, height: int = 64) -> Image.Image:
    """A smooth colour image whose halves differ, so orientation is visible in its pixels."""
    x = np.linspace(0, 255, width, dtype=np.float64)
    y = np.linspace(0, 255, height, dtype=np.float64)
    red = np.tile(x, (height, 1))
    green = np.tile(y[:, None], (1, width))
    blue = np.zeros((height, width))
    blue[: height // 2, : width // 2] = 255
    return Image.fromarray(np.dstack([red, green, blue]).astype(np.uint8), "RGB")
