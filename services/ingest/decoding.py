"""Turns untrusted media bytes into an RGB pixel array, or a clear reason why not.

A pure function of the bytes and the limits. Only still-image formats are opened; the pixel count is
checked from the header before any pixel is decoded; EXIF orientation is applied; every mode
(palette, alpha, 16-bit, CMYK, ...) is normalised to 8-bit RGB, transparency composited over white.
Animated images contribute their first frame.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from services.shared.errors import MediaUndecodableError

FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
_WIDE_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


@dataclass(frozen=True)
class Decoded:
    """A decoded image: HxWx3 uint8 pixels, upright; the format; the size it was stored at."""

    pixels: np.ndarray
    format: str
    width: int
    height: int


def decode(data: bytes, max_pixels: int, reduce_to: int | None = None) -> Decoded:
    """Decode ``data`` into upright 8-bit RGB.

    With ``reduce_to``, a large image is decoded at a reduced scale whose shorter side is still at
    least ``reduce_to`` pixels: JPEG by its own DCT scaling (1/2, 1/4, 1/8: far less work), other
    formats by averaging blocks of pixels. Measured on real photographs: PDQ of a 500-pixel
    reduction stays within 8 bits of the full-size hash (docs/benchmarks.md).

    Raises:
        MediaUndecodableError: not an image of an allowed format, over ``max_pixels``, or corrupt.
    """
    if not data:
        raise MediaUndecodableError("media is empty")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=FORMATS)
        except UnidentifiedImageError:
            raise MediaUndecodableError("not an image in a supported format") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise MediaUndecodableError("image is over the pixel limit") from None
        except Exception as error:  # hostile headers can raise anything; none is our bug to see
            raise MediaUndecodableError(
                f"unreadable image header ({type(error).__name__})"
            ) from None
        _check_size(image, max_pixels)
        width, height = image.size
        try:
            if reduce_to and image.format == "JPEG":
                image.draft("RGB", (reduce_to, reduce_to))
            loaded = _load_first_frame(image)
            if reduce_to and loaded.format != "JPEG":
                loaded = _reduced(loaded, reduce_to)
            upright = ImageOps.exif_transpose(loaded)
            pixels = _to_rgb(upright)
        except MediaUndecodableError:
            raise
        except Exception as error:  # truncated or corrupt data, in whatever form Pillow reports it
            raise MediaUndecodableError(
                f"corrupt {image.format} data ({type(error).__name__})"
            ) from None
    if upright.size != loaded.size:  # rotated a quarter turn by its EXIF orientation
        width, height = height, width
    return Decoded(pixels=pixels, format=str(image.format), width=width, height=height)


def _reduced(image: Image.Image, reduce_to: int) -> Image.Image:
    """Averaged down by the largest power of two (as JPEG's scaling) that keeps ``reduce_to``."""
    factor = 1 << max(0, (min(image.size) // reduce_to).bit_length() - 1)
    if factor < 2 or image.mode not in ("RGB", "RGBA", "L", "LA", "I", "F"):
        return image
    return image.reduce(factor)


def _check_size(image: Image.Image, max_pixels: int) -> None:
    width, height = image.size
    if width <= 0 or height <= 0:
        raise MediaUndecodableError("image has no pixels")
    if width * height > max_pixels:
        raise MediaUndecodableError(f"image is {width}x{height}, over the pixel limit")


def _load_first_frame(image: Image.Image) -> Image.Image:
    image.seek(0)
    image.load()
    return image


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in _WIDE_MODES:
        image = Image.fromarray(_to_8bit(np.asarray(image)))
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def _to_8bit(values: np.ndarray) -> np.ndarray:
    """Scale 16-bit, 32-bit or float samples into 0..255."""
    wide = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0).clip(min=0)
    peak = float(wide.max(initial=0.0))
    if peak > 255:
        wide *= 255.0 / (65535.0 if peak <= 65535 else peak)
    return np.asarray(wide.round().clip(0, 255), dtype=np.uint8)
