"""Turns untrusted media bytes into an RGB pixel array, or a clear reason why not.

A pure function of the bytes and the limits. Only still-image formats are opened; the pixel count is
checked from the header before any pixel is decoded; EXIF orientation is applied; every mode
(palette, alpha, 16-bit, CMYK, ...) is normalised to 8-bit RGB, transparency composited over white
(and, for PDQ, also kept as stored: partner hash lists are made that way).
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
_AVERAGED_MODES = frozenset({"L", "LA", "RGB", "RGBA", "CMYK", "YCbCr", "I", "F"})
_REDUCED_PIXELS = 4_000_000  # at most this many pixels after reduction


@dataclass(frozen=True)
class Decoded:
    """A decoded image: HxWx3 uint8 pixels, upright; the format; the size it was stored at.

    ``pixels`` show a transparent image as a white page would. ``stored_colours`` are such an
    image's colour channels as stored, transparency ignored: what PIL's ``convert("RGB")`` gives,
    and so what HMA and other ``pdqhash`` users hash; None for an opaque image.
    """

    pixels: np.ndarray
    format: str
    width: int
    height: int
    stored_colours: np.ndarray | None = None


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
        image = _open(data)
        _check_size(image, max_pixels)
        width, height = image.size
        try:
            factor = _factor(image.size, reduce_to) if reduce_to else 1
            pixels, stored_colours, turned = _upright_rgb(image, factor)
        except MediaUndecodableError:
            raise
        except Exception as error:  # truncated or corrupt data, in whatever form Pillow reports it
            raise MediaUndecodableError(
                f"corrupt {image.format} data ({type(error).__name__})"
            ) from None
    if turned:  # a quarter turn by its EXIF orientation
        width, height = height, width
    return Decoded(pixels, str(image.format), width, height, stored_colours)


def _open(data: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise MediaUndecodableError("not an image in a supported format") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise MediaUndecodableError("image is over the pixel limit") from None
    except Exception as error:  # hostile headers can raise anything; none is our bug to see
        raise MediaUndecodableError(f"unreadable image header ({type(error).__name__})") from None


def _check_size(image: Image.Image, max_pixels: int) -> None:
    width, height = image.size
    if width <= 0 or height <= 0:
        raise MediaUndecodableError("image has no pixels")
    if width * height > max_pixels:
        raise MediaUndecodableError(f"image is {width}x{height}, over the pixel limit")


def _factor(size: tuple[int, int], reduce_to: int) -> int:
    """The largest power of two (as JPEG's scaling) that keeps the shorter side ``reduce_to``.

    Larger for an image so long and thin that it would still be over 4 MP: every later step pays
    for each pixel (a 1000 x 64000 image would cost hundreds of megabytes and seconds of PDQ), and
    no signal needs them (PDQ reduces to 64 x 64, the other views to 640 pixels a side).
    """
    factor = 1 << max(0, (min(size) // reduce_to).bit_length() - 1)
    while size[0] * size[1] > _REDUCED_PIXELS * factor * factor:
        factor *= 2
    return factor


def _upright_rgb(image: Image.Image, factor: int) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """The first frame reduced by ``factor`` and turned upright, as RGB over white and as stored.

    Also whether it turned a quarter.
    """
    if factor > 1 and image.format == "JPEG":
        image.draft("RGB", (image.width // factor, image.height // factor))
    image.seek(0)
    image.load()
    reduced = _reduced(image, factor) if factor > 1 and image.format != "JPEG" else image
    stored = reduced.size
    ImageOps.exif_transpose(reduced, in_place=True)  # in place: no copy when already upright
    return *_to_rgb(reduced), reduced.size != stored


def _reduced(image: Image.Image, factor: int) -> Image.Image:
    """Averaged down by ``factor``, in a mode whose values can be averaged."""
    mode = _averaging_mode(image)
    if mode not in _AVERAGED_MODES:
        return image
    width, height = image.size
    reduced = Image.new(mode, (-(-width // factor), -(-height // factor)))
    # EXIF and the rest still apply; a palette index naming the transparent colour no longer does.
    reduced.info = {key: value for key, value in image.info.items() if key != "transparency"}
    # A band of rows at a time: converting a whole palette or 16-bit image at the pixel limit
    # would take 4 bytes a pixel (256 MB) at once, and reducing RGBA another such copy.
    rows = factor * 32
    for top in range(0, height, rows):
        band = image.crop((0, top, width, min(height, top + rows)))
        reduced.paste(band.convert(mode).reduce(factor), (0, top // factor))
    return reduced


def _averaging_mode(image: Image.Image) -> str:
    """The mode whose values can be averaged: palette indices and bits cannot, 16-bit in "I"."""
    if image.mode == "1":
        return "L"
    if image.mode in ("P", "PA"):
        return "RGBA" if image.mode == "PA" or "transparency" in image.info else "RGB"
    return "I" if image.mode.startswith("I;16") else image.mode


def _to_rgb(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """8-bit RGB over white, and the colour channels as stored when there is transparency."""
    if image.mode in _WIDE_MODES:
        image = Image.fromarray(_to_8bit(np.asarray(image)))
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba)  # over white, with no second full-size RGBA image
        return np.asarray(flat), np.asarray(rgba.convert("RGB"))
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB")), None


def _to_8bit(values: np.ndarray) -> np.ndarray:
    """Scale 16-bit, 32-bit or float samples into 0..255, in one float32 copy."""
    wide = values.astype(np.float32)
    np.nan_to_num(wide, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    np.clip(wide, 0, None, out=wide)
    peak = float(wide.max(initial=0.0))
    if peak > 255:  # else already 8-bit values stored wide
        wide *= 255.0 / (65535.0 if peak <= 65535 else peak)
    return np.rint(wide, out=wide).astype(np.uint8)
