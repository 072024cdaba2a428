"""The edits people make to a re-posted image, each at several strengths, as Pillow operations.

Every edit takes an RGB image and returns the bytes that would be uploaded (JPEG quality 90
unless the edit is about JPEG quality). Classes group strengths for the accuracy report; the
harder re-posts (collages, half crops, 20° turns, perspective, filters, occlusion, memes) are in
``hard_edits.py``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

from services.bench.hard_edits import hard_edits

Edit = Callable[[Image.Image], Image.Image]


@dataclass(frozen=True)
class Variant:
    """One edit at one strength."""

    edit_class: str
    name: str
    apply: Callable[[Image.Image], bytes]


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _as_upload(edit: Edit) -> Callable[[Image.Image], bytes]:
    return lambda image: _jpeg(edit(image))


def resize(factor: float) -> Edit:
    """Scale both sides by ``factor``."""
    return lambda im: im.resize(
        (max(16, round(im.width * factor)), max(16, round(im.height * factor))),
        Image.Resampling.LANCZOS,
    )


def crop(fraction: float, anchor: str = "centre") -> Edit:
    """Keep (1 - fraction) of each side, centred or from the top-left corner."""

    def apply(im: Image.Image) -> Image.Image:
        keep_w, keep_h = round(im.width * (1 - fraction)), round(im.height * (1 - fraction))
        left = (im.width - keep_w) // 2 if anchor == "centre" else 0
        top = (im.height - keep_h) // 2 if anchor == "centre" else 0
        return im.crop((left, top, left + keep_w, top + keep_h))

    return apply


def pad(fraction: float, colour: tuple[int, int, int] = (255, 255, 255)) -> Edit:
    """Add a border of one colour: ``fraction`` of the longer side, split between both sides."""
    return lambda im: ImageOps.expand(im, border=round(max(im.size) * fraction / 2), fill=colour)


def letterbox(aspect: float) -> Edit:
    """Fit into a canvas of the given width/height ratio with black bars."""

    def apply(im: Image.Image) -> Image.Image:
        if im.width / im.height < aspect:
            size = (round(im.height * aspect), im.height)
        else:
            size = (im.width, round(im.width / aspect))
        canvas = Image.new("RGB", size, (0, 0, 0))
        canvas.paste(im, ((size[0] - im.width) // 2, (size[1] - im.height) // 2))
        return canvas

    return apply


def rotate(degrees: float) -> Edit:
    """Rotate by ``degrees`` (counter-clockwise) in place, corners filled black."""
    return lambda im: im.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=False)


def caption(fraction: float) -> Edit:
    """A meme-style caption band added above the image."""

    def apply(im: Image.Image) -> Image.Image:
        band = round(im.height * fraction)
        canvas = Image.new("RGB", (im.width, im.height + band), (255, 255, 255))
        canvas.paste(im, (0, band))
        draw = ImageDraw.Draw(canvas)
        draw.text(
            (im.width // 20, band // 3),
            "when you see it",
            fill=(0, 0, 0),
            font=_font(max(12, band // 3)),
        )
        return canvas

    return apply


def text_over(size: float) -> Edit:
    """Text drawn across the image, white with a dark outline."""

    def apply(im: Image.Image) -> Image.Image:
        out = im.copy()
        draw = ImageDraw.Draw(out)
        font = _font(max(12, round(im.height * size)))
        for row in range(3):
            draw.text(
                (im.width // 12, im.height * (row + 1) // 4 - im.height // 12),
                "LOOK AT THIS",
                fill=(255, 255, 255),
                font=font,
                stroke_width=2,
                stroke_fill=(0, 0, 0),
            )
        return out

    return apply


def sticker(fraction: float) -> Edit:
    """Opaque round stickers covering about ``fraction`` of the area."""

    def apply(im: Image.Image) -> Image.Image:
        out = im.copy()
        draw = ImageDraw.Draw(out)
        radius = round((fraction * im.width * im.height / 3 / 3.1416) ** 0.5)
        spots = ((0.25, 0.3), (0.7, 0.6), (0.4, 0.8))
        for n, (x, y) in enumerate(spots):
            colour = ((255, 200, 0), (255, 80, 160), (80, 200, 255))[n]
            cx, cy = round(im.width * x), round(im.height * y)
            draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour)
        return out

    return apply


def enhance(kind: str, factor: float) -> Edit:
    """Change brightness, contrast or saturation by ``factor``."""
    enhancers = {
        "brightness": ImageEnhance.Brightness,
        "contrast": ImageEnhance.Contrast,
        "saturation": ImageEnhance.Color,
    }
    return lambda im: enhancers[kind](im).enhance(factor)


def noise(sigma: float) -> Edit:
    """Add Gaussian noise of ``sigma`` (0-255), the same for a given size."""

    def apply(im: Image.Image) -> Image.Image:
        import numpy as np

        rng = np.random.default_rng(im.width * 7919 + im.height)
        pixels = np.asarray(im, dtype=np.float32) + rng.normal(0, sigma, (im.height, im.width, 3))
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))

    return apply


def screenshot(kind: str) -> Edit:
    """The image inside a phone or desktop screenshot: bars, margins, other UI around it."""

    def apply(im: Image.Image) -> Image.Image:
        size, area = (
            ((1080, 2160), (0, 260, 1080, 1700))
            if kind == "phone"
            else ((1920, 1080), (360, 150, 1560, 1000))
        )
        canvas = Image.new("RGB", size, (245, 245, 245))
        draw = ImageDraw.Draw(canvas)
        draw.rectangle((0, 0, size[0], 90), fill=(30, 30, 30))  # status or title bar
        draw.rectangle((0, size[1] - 140, size[0], size[1]), fill=(250, 250, 250))
        for n in range(4):  # buttons and text lines
            draw.rectangle(
                (40 + n * 260, size[1] - 110, 200 + n * 260, size[1] - 40), fill=(200, 200, 210)
            )
        box_w, box_h = area[2] - area[0], area[3] - area[1]
        fitted = ImageOps.contain(im, (box_w, box_h))
        canvas.paste(
            fitted, (area[0] + (box_w - fitted.width) // 2, area[1] + (box_h - fitted.height) // 2)
        )
        draw.text((40, area[3] + 30), "liked by 1,204 people", fill=(20, 20, 20), font=_font(36))
        return canvas

    return apply


def _quality(quality: int) -> Callable[[Image.Image], bytes]:
    return lambda im: _jpeg(im, quality)


def _quarter(degrees: int) -> Edit:
    return lambda im: im.rotate(degrees, expand=True)


def _blur(radius: float) -> Edit:
    return lambda im: im.filter(ImageFilter.GaussianBlur(radius))


def chain(*edits: Edit) -> Edit:
    """Apply ``edits`` one after the other."""

    def apply(im: Image.Image) -> Image.Image:
        for edit in edits:
            im = edit(im)
        return im

    return apply


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def variants(fillers: Sequence[Image.Image]) -> list[Variant]:
    """Every edit class at every strength; ``fillers`` fill the other tiles of collages."""

    def v(edit_class: str, name: str, edit: Edit) -> Variant:
        return Variant(edit_class, name, _as_upload(edit))

    out = [Variant("jpeg", f"quality {q}", _quality(q)) for q in (90, 70, 50, 30, 20)]
    out += [v("resize", f"{round(f * 100)}%", resize(f)) for f in (0.25, 0.5, 0.75, 1.5, 2.0)]
    out += [v("crop (centre)", f"{round(f * 100)}%", crop(f)) for f in (0.05, 0.1, 0.2, 0.3)]
    out += [
        v("crop (corner)", f"{round(f * 100)}%", crop(f, "corner")) for f in (0.05, 0.1, 0.2, 0.3)
    ]
    out += [
        v("padding", f"{round(f * 100)}% {c}", pad(f, rgb))
        for f in (0.1, 0.2, 0.3)
        for c, rgb in (("white", (255, 255, 255)), ("black", (0, 0, 0)))
    ]
    out += [
        v("letterbox", f"{name}", letterbox(a))
        for name, a in (("16:9", 16 / 9), ("9:16", 9 / 16), ("1:1", 1.0))
    ]
    out += [v("border", f"{round(f * 100)}% coloured", pad(f, (200, 30, 60))) for f in (0.1, 0.2)]
    out += [
        v("rotation (small)", f"{d:+d} deg", rotate(d)) for d in (-15, -10, -5, -2, 2, 5, 10, 15)
    ]
    out += [v("rotation (quarter)", f"{d} deg", _quarter(d)) for d in (90, 180, 270)]
    out += [v("mirror", "horizontal", ImageOps.mirror), v("mirror", "vertical", ImageOps.flip)]
    out += [v("text", f"caption {round(f * 100)}%", caption(f)) for f in (0.15, 0.3)]
    out += [v("text", f"over the image {round(s * 100)}%", text_over(s)) for s in (0.06, 0.1)]
    out += [v("sticker", f"{round(f * 100)}% covered", sticker(f)) for f in (0.05, 0.1, 0.2)]
    out += [
        v("colour", f"{k} x{f}", enhance(k, f))
        for k, f in (
            ("brightness", 0.7),
            ("brightness", 1.3),
            ("contrast", 0.7),
            ("contrast", 1.4),
            ("saturation", 0.0),
            ("saturation", 1.6),
        )
    ]
    out += [v("blur", f"radius {r}", _blur(r)) for r in (1, 2, 4)]
    out += [v("sharpen", "unsharp mask", lambda im: im.filter(ImageFilter.UnsharpMask(2, 150)))]
    out += [v("noise", f"sigma {s}", noise(s)) for s in (10, 25)]
    out += [v("screenshot", kind, screenshot(kind)) for kind in ("phone", "desktop")]
    out += [
        v(
            "pairs",
            "crop 10% + JPEG 50",
            lambda im: Image.open(io.BytesIO(_jpeg(crop(0.1)(im), 50))),
        ),
        v("pairs", "mirror + caption", chain(ImageOps.mirror, caption(0.15))),
        v("pairs", "rotate 5 + resize 50%", chain(rotate(5), resize(0.5))),
        v("pairs", "padding 20% + brightness", chain(pad(0.2), enhance("brightness", 1.3))),
        v("pairs", "phone screenshot + resize 50%", chain(screenshot("phone"), resize(0.5))),
        v("pairs", "crop 20% + mirror", chain(crop(0.2), ImageOps.mirror)),
    ]
    out += [v(edit_class, name, edit) for edit_class, name, edit in hard_edits(fillers)]
    return out
