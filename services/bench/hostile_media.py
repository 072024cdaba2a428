"""The images of the hostile-input corpus, made in code: broken, bombs, odd but valid, and huge.

Used by :mod:`services.bench.hostile`. The huge ones are written row by row into a compressor, so
a 64-megapixel image costs the benchmark a few hundred kilobytes, never the pixels themselves.
"""

from __future__ import annotations

import io
import math
import zipfile
import zlib
from typing import Any

import numpy as np
from PIL import Image


def gradient(width: int = 160, height: int = 120) -> Image.Image:
    """A smooth colour image."""
    x = np.linspace(0, 255, width)
    y = np.linspace(0, 255, height)[:, None]
    rgb = np.dstack([np.tile(x, (height, 1)), np.tile(y, (1, width)), (x * y / 255) % 255])
    return Image.fromarray(rgb.astype(np.uint8))


def wide_gradient() -> np.ndarray:
    """A 16-bit greyscale gradient over the whole 0..65535 range."""
    return np.linspace(0, 65_535, 160 * 120).reshape(120, 160).astype(np.uint16)


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    """``image`` saved in ``fmt``."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_bomb(side: int) -> bytes:
    """A real 1-bit PNG of side x side pixels of one colour: ~100 KB that inflates to ~110 MB."""
    return _png_of_rows(side, side, 1, 0, b"\x00" * ((side + 7) // 8))


def sixteen_bit_at(max_pixels: int, width: int | None = None) -> bytes:
    """A one-colour 16-bit greyscale PNG of ``max_pixels``: square, or ``width`` wide."""
    width = width or math.isqrt(max_pixels)
    return _png_of_rows(width, max_pixels // width, 16, 0, b"\x80\x00" * width)


def palette_at(max_pixels: int) -> bytes:
    """A square one-colour palette PNG of ``max_pixels``, with a transparent palette entry."""
    side = math.isqrt(max_pixels)
    palette = _chunk(b"PLTE", bytes([255, 255, 255, 40, 90, 160])) + _chunk(b"tRNS", b"\x00")
    return _png_of_rows(side, side, 8, 3, b"\x01" * side, palette)


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height``."""
    return _png(width, height, 8, 2, zlib.compress(b"\x00" * 64))


def jpeg_declaring(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with a start-of-frame declaring ``width`` x ``height``."""
    at = jpeg.index(b"\xff\xc0")  # start of frame: length(2) precision(1) height(2) width(2)
    return jpeg[: at + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + jpeg[at + 9 :]


def gif_declaring(width: int, height: int) -> bytes:
    """A small GIF whose screen descriptor declares ``width`` x ``height``."""
    gif = encode(gradient(16, 16).convert("P"), "GIF")
    return gif[:6] + width.to_bytes(2, "little") + height.to_bytes(2, "little") + gif[10:]


def animated_gif(frames: int) -> bytes:
    """A 16 x 16 GIF of ``frames`` frames."""
    images = [Image.new("P", (16, 16), n % 2) for n in range(frames)]
    for image in images:
        image.putpalette([0, 0, 0, 255, 255, 255] + [0, 0, 0] * 254)
    return encode(images[0], "GIF", save_all=True, append_images=images[1:], duration=20)


def palette_with_transparency() -> bytes:
    """A small palette PNG whose first palette entry is transparent."""
    return encode(gradient().convert("P"), "PNG", transparency=0)


def exif_rotated() -> bytes:
    """A JPEG stored sideways, to be shown turned by its EXIF orientation."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(gradient(), "JPEG", exif=exif.tobytes())


def zip_archive() -> bytes:
    """A ZIP archive holding a script, to append to an image."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("payload.html", "<script>x()</script>")
    return buffer.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body)
    return len(body).to_bytes(4, "big") + kind + body + crc.to_bytes(4, "big")


def _png(
    width: int, height: int, depth: int, colour: int, idat: bytes, extra: bytes = b""
) -> bytes:
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([depth, colour, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + extra
        + _chunk(b"IDAT", idat)
        + _chunk(b"IEND", b"")
    )


def _png_of_rows(
    width: int, height: int, depth: int, colour: int, row: bytes, extra: bytes = b""
) -> bytes:
    """A PNG whose every row is ``row``, compressed a thousand rows at a time."""
    line = b"\x00" + row  # filter type 0: the row as it is
    compressor = zlib.compressobj(4)  # for runs this long, level 4 packs as tight as 9, faster
    block = line * 1000
    chunks = [compressor.compress(block) for _ in range(height // 1000)]
    chunks += [compressor.compress(line * (height % 1000)), compressor.flush()]
    return _png(width, height, depth, colour, b"".join(chunks), extra)
