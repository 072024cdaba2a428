"""Real photographs for the accuracy benchmark, taken from packages into a local cache.

Nothing here is committed or downloaded from the web: Debian packages are fetched with
``apt-get download`` and unpacked with ``dpkg-deb -x`` (no installation), and scikit-image's
bundled photographs are read from its wheel. Images are filtered to photographs (enough colours,
no large flat areas), near-duplicates are removed (PDQ of any rotation/flip; then the same
picture reframed, by embedding and by agreeing keypoints), and each photo is stored once, at
most 1024 px on its longer side, in ``<cache>/photos``.
"""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from services.ingest.hashing import distance, pdq, pdq_dihedral
from services.matcher.verification import agreeing_keypoints
from services.shared.keypoints import Keypoints
from services.shared.schemas import BankPolicy

log = logging.getLogger(__name__)

# Debian packages with photographs, and where in them to look.
PACKAGES = {
    "gcompris-qt-data": "usr/share/gcompris-qt",
    "plasma-workspace-wallpapers": "usr/share/wallpapers",
    "mate-backgrounds": "usr/share/backgrounds",
    "lomiri-wallpapers-16.04": "usr/share",
    "lomiri-wallpapers-20.04": "usr/share",
    "ukui-wallpapers": "usr/share",
    "opencv-doc": "usr/share/doc/opencv-doc/examples/data",
    "hugin-data": "usr/share/hugin",
    "kanagram": "usr/share/kanagram",
    "khangman": "usr/share/khangman",
}
SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
_SIGNATURES = re.compile(rb"\xff\xd8\xff|\x89PNG\r\n\x1a\n|RIFF....WEBP", re.DOTALL)
MIN_SIDE, MAX_SIDE, MAX_ASPECT = 200, 1024, 2.5
DUPLICATE_DISTANCE = 48  # well above PDQ's match threshold of 31
POOL_VERSION = 3  # 2: reframed duplicates found by keypoints too; 3: wallpaper sizes, a list
_NEIGHBOURS = 10


@dataclass(frozen=True)
class Photo:
    """A photograph in the pool: where it is cached and where it came from."""

    path: str
    source: str
    origin: str


def prepare(cache: Path) -> list[Photo]:
    """The photo pool, building it in ``cache`` the first time."""
    cache = cache.resolve()
    manifest = cache / f"photos-v{POOL_VERSION}.json"
    if manifest.exists():
        return [Photo(**item) for item in json.loads(manifest.read_text())]
    shutil.rmtree(cache / "photos", ignore_errors=True)  # an older pool's
    (cache / "photos").mkdir(parents=True, exist_ok=True)
    kept: list[Photo] = []
    hashes: list[str] = []
    for source, origin, image in _candidates(cache):
        photo = _admit(image, hashes)
        if photo is None:
            continue
        path = cache / "photos" / f"{len(kept):05d}.jpg"
        photo.save(path, "JPEG", quality=95)
        kept.append(Photo(str(path), source, origin))
    kept, dropped = _without_reframed_duplicates(kept)
    (cache / f"photos-v{POOL_VERSION}-dropped.json").write_text(json.dumps(dropped, indent=1))
    manifest.write_text(json.dumps([asdict(p) for p in kept], indent=0))
    log.info("photo pool ready", extra={"fields": {"photos": len(kept)}})
    return kept


def _candidates(cache: Path) -> Iterator[tuple[str, str, Image.Image]]:
    import skimage

    for path in sorted((Path(skimage.__file__).parent / "data").iterdir()):
        if path.suffix in SUFFIXES:
            yield from _open("scikit-image", path.name, path.read_bytes())
    for package, folder in PACKAGES.items():
        root = unpacked(cache, package)
        if root is None:
            continue
        for path in sorted((root / folder).rglob("*")):
            if path.suffix.lower() in SUFFIXES:
                yield from _open(package, str(path.relative_to(root)), path.read_bytes())
            elif path.suffix == ".rcc":  # Qt resource bundles: images stored back to back
                yield from _embedded(package, path)


def unpacked(cache: Path, package: str) -> Path | None:
    """A Debian package unpacked in ``cache/packages`` (downloaded the first time), or None."""
    target = cache / "packages" / package
    if target.exists():
        return target
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            ["apt-get", "download", package], cwd=debs, check=True, capture_output=True, timeout=600
        )
        (deb,) = sorted(debs.glob(f"{package}_*.deb"))[-1:]
        target.mkdir(parents=True)
        subprocess.run(
            ["dpkg-deb", "-x", str(deb), str(target)], check=True, capture_output=True, timeout=600
        )
    except (OSError, ValueError, subprocess.SubprocessError) as error:
        log.warning(
            "skipped a package",
            extra={"fields": {"package": package, "error": type(error).__name__}},
        )
        return None
    return target


def _embedded(package: str, path: Path) -> Iterator[tuple[str, str, Image.Image]]:
    data = path.read_bytes()
    for found in _SIGNATURES.finditer(data):
        yield from _open(package, f"{path.name}@{found.start()}", data[found.start() :])


def _open(source: str, origin: str, data: bytes) -> Iterator[tuple[str, str, Image.Image]]:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()  # decoders stop at the image's end; trailing bytes are ignored
    except Exception:  # not an image, or a broken one: not a candidate
        return
    yield source, origin, image


def admissible(image: Image.Image) -> Image.Image | None:
    """The image in RGB, resized for a pool, if it is a photograph of PDQ quality >= 50."""
    width, height = image.size
    if min(width, height) < MIN_SIDE or max(width, height) > MAX_ASPECT * min(width, height):
        return None
    rgb = image.convert("RGB")
    rgb.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    if not looks_like_a_photo(rgb):
        return None
    return rgb if pdq(np.asarray(rgb))[1] >= 50 else None


def _admit(image: Image.Image, hashes: list[str]) -> Image.Image | None:
    """The image, resized for the pool, if it is a photograph not yet in it; else None."""
    rgb = admissible(image)
    if rgb is None:
        return None
    pixels = np.asarray(rgb)
    code = pdq(pixels)[0]
    variants = pdq_dihedral(pixels).dihedral
    if any(distance(v, h) <= DUPLICATE_DISTANCE for h in hashes for v in variants):
        return None
    hashes.append(code)
    return rgb


def _without_reframed_duplicates(photos: list[Photo]) -> tuple[list[Photo], list[dict[str, str]]]:
    """Drop photos that are an earlier one reframed; the kept ones, and why each other went.

    PDQ catches re-encodes and small edits; packages also ship the same picture in other sizes
    and cuts (a KDE wallpaper folder holds one picture in several aspect ratios; gcompris uses one
    picture in several activities; hugin shows one panorama in several projections). Left in,
    such a pair would count a true copy as a false positive. Three tests, in order: the same
    wallpaper folder; an embedding cosine over 0.92; 20 keypoints agreeing with one of the 10
    nearest earlier photos. The last is the matcher's own test, so its drops are listed (in
    ``photos-vN-dropped.json``, and by the benchmark) for a person to check.
    """
    from services.ingest.signals import SignalModels

    models = SignalModels.load()
    assert models.embedder is not None and models.keypoints is not None
    pixels = [np.asarray(Image.open(p.path).convert("RGB")) for p in photos]
    vectors = np.stack([models.embedder.embed(image) for image in pixels])
    keypoints = [models.keypoints.extract(image) for image in pixels]
    similar = vectors @ vectors.T
    kept: list[Photo] = []
    dropped: list[dict[str, str]] = []
    for index, photo in enumerate(photos):
        found = _duplicate_of(index, photos, similar[index, :index], keypoints)
        if found is None:
            kept.append(photo)
            continue
        earlier, why = found
        Path(photo.path).unlink()
        dropped.append(
            {"photo": _name(photo), "same picture as": _name(photos[earlier]), "by": why}
        )
    return kept, dropped


def _duplicate_of(
    index: int, photos: list[Photo], cosines: np.ndarray, keypoints: list[Keypoints]
) -> tuple[int, str] | None:
    """An earlier photo that ``photos[index]`` is the same picture as, and how it shows."""
    folder = _wallpaper(photos[index])
    for earlier in range(index):
        if folder is not None and _wallpaper(photos[earlier]) == folder:
            return earlier, "the same wallpaper folder"
    if len(cosines) and cosines.max() > 0.92:
        return int(cosines.argmax()), f"embedding cosine {cosines.max():.3f}"
    threshold = BankPolicy().keypoint_threshold
    for earlier in np.argsort(-cosines)[:_NEIGHBOURS]:
        agreeing = agreeing_keypoints(keypoints[index], keypoints[earlier])
        if agreeing >= threshold:
            return int(earlier), f"{agreeing} keypoints agree"
    return None


def _wallpaper(photo: Photo) -> str | None:
    """The wallpaper a KDE-packaged image belongs to (``<name>/contents/images/<size>``)."""
    head, found, _ = photo.origin.partition("/contents/images")
    return f"{photo.source}:{head}" if found else None


def _name(photo: Photo) -> str:
    return f"{photo.source}:{photo.origin}"


def dropped_duplicates(cache: Path) -> list[dict[str, str]]:
    """The photos the pool left out as the same picture as another, and why."""
    listed = cache.resolve() / f"photos-v{POOL_VERSION}-dropped.json"
    return list(json.loads(listed.read_text())) if listed.exists() else []


def looks_like_a_photo(image: Image.Image) -> bool:
    """Photographs have many colours and no large areas of one colour; clip art does not."""
    small = np.asarray(image.resize((128, 128), Image.Resampling.BILINEAR)) // 8
    colours = small.reshape(-1, 3) @ np.array([1024, 32, 1])
    _, counts = np.unique(colours, return_counts=True)
    return len(counts) >= 400 and np.sort(counts)[-8:].sum() < 0.3 * len(colours)
