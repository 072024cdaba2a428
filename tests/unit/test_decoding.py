import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from services.ingest.decoding import decode
from services.shared.errors import MediaUndecodableError
from tests.images import encode, gradient

LIMIT = 50_000_000


def test_a_plain_rgb_jpeg_decodes_to_its_size():
    decoded = decode(encode(gradient(96, 64), "JPEG", quality=95), LIMIT)
    assert decoded.pixels.shape == (64, 96, 3)
    assert decoded.pixels.dtype == np.uint8
    assert decoded.format == "JPEG"


def test_exif_orientation_is_applied():
    image = gradient(96, 64)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90° clockwise
    decoded = decode(encode(image, "JPEG", quality=95, exif=exif.tobytes()), LIMIT)
    upright = np.asarray(image.rotate(-90, expand=True))
    assert decoded.pixels.shape == upright.shape
    assert np.abs(decoded.pixels.astype(int) - upright).mean() < 4


@pytest.mark.parametrize("mode", ["L", "1", "P", "CMYK", "RGBA", "LA", "I", "I;16", "F"])
def test_every_mode_becomes_rgb(mode):
    image = (
        gradient().convert("L").convert(mode)
        if mode in ("I", "I;16", "F")
        else gradient().convert(mode)
    )
    fmt = "JPEG" if mode == "CMYK" else "TIFF" if mode in ("F", "I") else "PNG"
    decoded = decode(encode(image, fmt), LIMIT)
    assert decoded.pixels.shape == (64, 96, 3)


def test_sixteen_bit_samples_are_scaled_not_clipped():
    wide = (np.linspace(0, 65535, 96 * 64).reshape(64, 96)).astype(np.uint16)
    decoded = decode(encode(Image.fromarray(wide), "PNG"), LIMIT)
    assert decoded.pixels[..., 0].min() == 0
    assert decoded.pixels[..., 0].max() == 255
    assert len(np.unique(decoded.pixels[..., 0])) > 200


def test_transparency_is_composited_over_white_and_its_colours_kept_as_stored():
    clear = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    decoded = decode(encode(clear, "PNG"), LIMIT)
    assert decoded.pixels.min() == 255
    assert (decoded.stored_colours == np.array([255, 0, 0])).all()
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 0, 0] * 256)
    palette.info["transparency"] = 0
    decoded = decode(encode(palette, "PNG", transparency=0), LIMIT)
    assert decoded.pixels.min() == 255 and decoded.stored_colours.max() == 0


def test_an_opaque_image_has_no_second_copy():
    assert decode(encode(gradient(), "PNG"), LIMIT).stored_colours is None


def test_an_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    pixels = decode(data, LIMIT).pixels
    assert pixels[..., 0].mean() > 200 and pixels[..., 2].mean() < 50


@pytest.mark.parametrize(
    "data",
    [
        b"",
        os.urandom(4096),
        b"<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'/>",
        b"<html><body>not an image</body></html>",
        encode(gradient(), "JPEG")[:300],
        encode(gradient(), "PNG")[:-40],
        encode(gradient(), "WEBP")[:60],
        encode(gradient(), "GIF")[:30],
    ],
    ids=[
        "empty",
        "random",
        "svg",
        "html",
        "truncated-jpeg",
        "truncated-png",
        "truncated-webp",
        "truncated-gif",
    ],
)
def test_what_is_not_a_whole_image_is_undecodable(data):
    with pytest.raises(MediaUndecodableError):
        decode(data, LIMIT)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares a huge image; its pixel data is a few bytes."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [8_000, 30_000])
def test_a_huge_declared_size_is_refused_before_decoding(side):
    with pytest.raises(MediaUndecodableError, match="over the pixel limit"):
        decode(_png_declaring(side, side), LIMIT)


def test_a_real_decompression_bomb_is_refused():
    bomb = encode(Image.new("1", (12_000, 12_000)), "PNG", optimize=True)
    assert len(bomb) < 200_000
    with pytest.raises(MediaUndecodableError, match="over the pixel limit"):
        decode(bomb, LIMIT)


def test_formats_outside_the_list_are_refused():
    with pytest.raises(MediaUndecodableError):
        decode(encode(gradient(), "PPM"), LIMIT)


def test_large_images_decode_at_a_reduced_scale_with_nearly_the_same_pdq():
    from services.ingest.hashing import distance, pdq
    from tests.images import photo

    big = photo("coffee.png").resize((2400, 1600), Image.Resampling.LANCZOS)
    for fmt in ("JPEG", "PNG"):
        data = encode(big, fmt, quality=95) if fmt == "JPEG" else encode(big, fmt)
        full, reduced = decode(data, LIMIT), decode(data, LIMIT, reduce_to=500)
        assert (reduced.width, reduced.height) == (2400, 1600) == (full.width, full.height)
        assert 500 <= min(reduced.pixels.shape[:2]) < 1600
        assert distance(pdq(full.pixels)[0], pdq(reduced.pixels)[0]) <= 10


@pytest.mark.parametrize("mode", ["RGB", "P", "I;16"])
def test_a_reduced_image_is_still_turned_upright(mode):
    image = gradient(2400, 1600).convert("L" if mode == "I;16" else "RGB")
    if mode == "P":
        image = image.convert("P")
    elif mode == "I;16":
        image = Image.fromarray(np.asarray(image).astype(np.uint16) * 257)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90° clockwise
    decoded = decode(encode(image, "PNG", exif=exif.tobytes()), LIMIT, reduce_to=500)
    assert (decoded.width, decoded.height) == (1600, 2400)
    height, width = decoded.pixels.shape[:2]
    assert height > width >= 500
    # The image's dark left edge ends up on top, its blue top-left quarter at the top right.
    assert decoded.pixels[: height // 8].mean() < decoded.pixels[-height // 8 :].mean()
    if mode != "I;16":
        assert decoded.pixels[: height // 4, width // 2 :, 2].mean() > 200


@pytest.mark.parametrize("mode", ["1", "L", "P", "LA", "RGB", "RGBA", "I;16"])
def test_every_mode_is_reduced_before_it_is_converted(mode):
    # A palette, 1-bit or 16-bit image kept at full size would be converted to RGB(A) at full
    # size: over a gigabyte at the pixel limit.
    image = gradient(2400, 1600).convert("L" if mode in ("1", "I;16") else "RGB")
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image).astype(np.uint16) * 257)
    elif mode == "P":
        image = image.convert("P")
        image.info["transparency"] = 0
    else:
        image = image.convert(mode)
    decoded = decode(encode(image, "PNG"), LIMIT, reduce_to=500)
    assert decoded.pixels.shape == (800, 1200, 3)
    assert (decoded.width, decoded.height) == (2400, 1600)


def test_a_reduced_palette_image_keeps_its_transparency_and_16_bit_its_range():
    clear = Image.new("P", (2400, 1600), 0)
    clear.putpalette([0, 0, 0] * 256)
    pixels = decode(encode(clear, "PNG", transparency=0), LIMIT, reduce_to=500).pixels
    assert pixels.shape == (800, 1200, 3) and pixels.min() == 255
    wide = np.linspace(0, 65535, 2400 * 1600).reshape(1600, 2400).astype(np.uint16)
    grey = decode(encode(Image.fromarray(wide), "PNG"), LIMIT, reduce_to=500).pixels[..., 0]
    assert grey.shape == (800, 1200)
    assert grey.min() == 0 and grey.max() == 255 and len(np.unique(grey)) > 200


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_long_thin_image_is_reduced_to_a_few_megapixels(fmt):
    # Its shorter side is already near 500, but at full size its 18 MP would cost every later
    # step hundreds of megabytes.
    thin = Image.new("RGB", (600, 30_000), (200, 100, 50))
    decoded = decode(encode(thin, fmt), LIMIT, reduce_to=500)
    height, width = decoded.pixels.shape[:2]
    assert height * width <= 4_000_000
    assert (width, height) == (150, 7500)
    assert (decoded.width, decoded.height) == (600, 30_000)
