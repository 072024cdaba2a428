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
    """A decoded image: HxWx3 uint8 pixels, upright, and the format it came in."""

    pixels: np.ndarray
    format: str

    @property
    def width(self) -> int:
        """Width in pixels."""
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        """Height in pixels."""
        return int(self.pixels.shape[0])


def decode(data: bytes, max_pixels: int) -> Decoded:
    """Decode ``data`` into upright 8-bit RGB.

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
        try:
            upright = ImageOps.exif_transpose(_load_first_frame(image))
            pixels = _to_rgb(upright)
        except MediaUndecodableError:
            raise
        except Exception as error:  # truncated or corrupt data, in whatever form Pillow reports it
            raise MediaUndecodableError(
                f"corrupt {image.format} data ({type(error).__name__})"
            ) from None
    return Decoded(pixels=pixels, format=str(image.format))


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
