"""Test videos made in code from the photographs scikit-image bundles: small, quick to encode."""

from __future__ import annotations

import functools

from services.bench.video_media import encode, slideshow
from tests.images import photo


@functools.cache
def clip(
    name: str = "astronaut.png",
    seconds: float = 4.0,
    fps: float = 10.0,
    motion: str = "pan",
    size: tuple[int, int] = (320, 180),
    codec: str = "libx264",
    container: str = "mp4",
) -> bytes:
    """A short video of one photograph: panned across (every frame differs), zoomed or static."""
    frames = slideshow([photo(name)], seconds, fps, motion, size)
    return encode(frames, fps, codec=codec, container=container)
