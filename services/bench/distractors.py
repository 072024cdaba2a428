"""The accuracy benchmark's large distractor pool: real photographs that are none of the originals.

Precision near 99.99% can only be measured against many unrelated photographs, so beside the
photo pool the originals come from (``dataset.py``), this gathers photographs from sources that
pool does not use, into ``<cache>/distractors``. Nothing is committed or fetched at run time:

- Debian packages (``apt-get download``, ``dpkg-deb -x``, as ``dataset.py`` does);
- images shipped inside PyPI wheels (``pip download``);
- public datasets in public repositories, copied beforehand by a person into
  ``<cache>/repos/<owner>+<name>`` (docs/benchmarks.md says which and how).

Candidates pass the photo pool's filter (photographs, >= 200 px, PDQ quality >= 50), checked in
worker processes; near-duplicates are removed as the photo pool removes them (PDQ of any
rotation/flip within 48 bits, embedding cosine above 0.92, 20 keypoints agreeing with one of the
10 nearest by embedding), against the photo pool and every distractor kept before.
"""

from __future__ import annotations

import io
import json
import logging
import multiprocessing
import shutil
import subprocess
import sys
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from services.bench import dataset
from services.ingest.hashing import pdq_dihedral
from services.matcher.verification import agreeing_keypoints
from services.shared.keypoints import Keypoints
from services.shared.schemas import BankPolicy

log = logging.getLogger(__name__)

VERSION = 3  # 2: more repositories; 3: face libraries' photographs, a folder per version
# Where the photographs are in each source, and the licence it ships them under.
PACKAGES = {
    "gnome-backgrounds": ("usr/share/backgrounds", "CC BY-SA 3.0 and others (debian/copyright)"),
    "sway-backgrounds": ("usr/share/backgrounds", "CC0 and others (debian/copyright)"),
    "lomiri-wallpapers": ("usr/share", "CC BY-SA 3.0 (debian/copyright)"),
    "kstars-data": ("usr/share", "GPL-2+ and image credits (debian/copyright)"),
    "blender-data": ("usr/share", "GPL-2+, CC0 and others (debian/copyright)"),
    "marble-data": ("usr/share", "LGPL-2.1+, CC BY-SA and others (debian/copyright)"),
    "gimp-data": ("usr/share", "GPL-3+ (debian/copyright)"),
    "tuxpaint-stamps-default": ("usr/share", "GPL-2+, public domain and others"),
    "debian-edu-artwork-emerald": ("usr/share", "GPL-2+ (debian/copyright)"),
    "mypaint-data-extras": ("usr/share", "CC0 and others (debian/copyright)"),
}
WHEELS = {
    "scikit-learn": ("sklearn/datasets/images/", "BSD-3-Clause; its photos CC BY 2.0"),
    "matplotlib": ("matplotlib/mpl-data/sample_data/", "matplotlib licence; sample data"),
}
REPOS = {
    "alexeygrigorev+clothing-dataset": ("images", "CC0 1.0"),
    "EliSchwartz+imagenet-sample-images": ("", "ImageNet terms: non-commercial research"),
    "ajschumacher+imagen": ("imagen", "ImageNet terms: non-commercial research"),
    "MachineLearning2020+Homework2-Caltech101": (
        "101_ObjectCategories",
        "Caltech 101 (Fei-Fei, Fergus, Perona 2004): for research",
    ),
    "quoctrung163+keras-cnn-on-cats-and-dogs-dataset": (
        "",
        "Kaggle Dogs vs. Cats (Asirra, Petfinder photos): competition terms, research",
    ),
    "maslova-alenka+PPpython": ("", "none stated: web image search results (cats, dogs)"),
    # Photographs of adults from three face libraries' examples and tests.
    "serengil+deepface": ("tests/unit/dataset", "MIT (the repository's licence)"),
    "davisking+dlib": ("examples", "Boost Software License 1.0 (the repository's)"),
    "ageitgey+face_recognition": ("examples", "MIT (the repository's licence)"),
}
_NEIGHBOURS = 10


@dataclass(frozen=True)
class Candidate:
    """An image file in a source: the file, or the wheel holding it as ``member``."""

    source: str
    origin: str
    path: str
    member: str = ""


@dataclass(frozen=True)
class Checked:
    """A candidate that is a photograph: where it was saved, and what duplicates are found by."""

    saved: str
    dihedral: tuple[str, ...]
    embedding: np.ndarray
    keypoints: Keypoints


def prepare(cache: Path, workers: int = 2) -> list[dataset.Photo]:
    """The distractor pool, building it in ``<cache>/distractors`` the first time."""
    cache = cache.resolve()
    manifest = cache / f"distractors-v{VERSION}.json"
    if not manifest.exists():
        manifest.write_text(json.dumps(_build(cache, workers), indent=0))
    listed = json.loads(manifest.read_text())["photos"]
    return [dataset.Photo(str(cache / p["path"]), p["source"], p["origin"]) for p in listed]


def summary(cache: Path) -> dict[str, list[dict[str, object]]]:
    """What the pool was built from (each source, its licence and counts) and what was dropped."""
    manifest = cache.resolve() / f"distractors-v{VERSION}.json"
    found = json.loads(manifest.read_text()) if manifest.exists() else {}
    return {"sources": found.get("sources", []), "dropped": found.get("dropped", [])}


def _build(cache: Path, workers: int) -> dict[str, object]:
    import faiss

    faiss.omp_set_num_threads(1)  # keypoint checks: OpenMP threads on shared cores only spin
    folder = cache / f"distractors-v{VERSION}"
    shutil.rmtree(folder, ignore_errors=True)  # a build that was stopped
    folder.mkdir(parents=True)
    pool = dataset.prepare(cache)
    candidates = [Candidate("photo pool", p.origin, p.path) for p in pool]
    candidates += list(_candidates(cache))
    jobs = [(c, str(folder / f"{n:06d}.jpg")) for n, c in enumerate(candidates)]
    with multiprocessing.get_context("fork").Pool(workers) as processes:
        checked = processes.map(_check, jobs, chunksize=16)
    admitted = [(c, k) for c, k in zip(candidates, checked, strict=True) if k is not None]
    mask, dropped = _deduplicated(admitted, references=len(pool))
    mask[: len(pool)] = False  # the photo pool was only compared against
    for (_, found), keep in zip(admitted, mask, strict=True):
        if not keep:
            Path(found.saved).unlink(missing_ok=True)
    kept = [admitted[n] for n in np.flatnonzero(mask)]
    photos = [
        {"path": f"{folder.name}/{Path(k.saved).name}", "source": c.source, "origin": c.origin}
        for c, k in kept
    ]
    return {"photos": photos, "dropped": dropped, "sources": _sources(candidates, admitted, kept)}


def _candidates(cache: Path) -> Iterator[Candidate]:
    suffixes = dataset.SUFFIXES
    for package, (folder, _) in PACKAGES.items():
        unpacked = dataset.unpacked(cache, package)
        for path in sorted((unpacked / folder).rglob("*")) if unpacked else []:
            if path.suffix.lower() in suffixes:
                yield Candidate(package, str(path.relative_to(unpacked or path)), str(path))
    for name, (prefix, _) in WHEELS.items():
        wheel = _wheel(cache, name)
        for member in zipfile.ZipFile(wheel).namelist() if wheel else []:
            if member.startswith(prefix) and member.lower().endswith(suffixes):
                yield Candidate(f"PyPI {name}", member, str(wheel), member)
    for repo, (folder, _) in REPOS.items():
        root = cache / "repos" / repo
        if not root.exists():
            log.warning("repository not copied", extra={"fields": {"repo": repo}})
        for path in sorted((root / folder).rglob("*")) if root.exists() else []:
            if path.suffix.lower() in suffixes:
                yield Candidate(repo.replace("+", "/"), str(path.relative_to(root)), str(path))


def _wheel(cache: Path, name: str) -> Path | None:
    folder = cache / "wheels"
    found = sorted(folder.glob(f"{name.replace('-', '_')}-*.whl"))
    if not found:
        command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary"]
        command += [":all:", "-d", str(folder), name]
        try:
            subprocess.run(command, check=True, capture_output=True, timeout=600)
        except (OSError, subprocess.SubprocessError):
            log.warning("skipped a wheel", extra={"fields": {"package": name}})
        found = sorted(folder.glob(f"{name.replace('-', '_')}-*.whl"))
    return found[-1] if found else None


_MODELS: object = None  # one SignalModels per worker process


def _check(job: tuple[Candidate, str]) -> Checked | None:
    """The candidate saved at ``target`` with its signals, if it is a photograph."""
    from services.ingest.signals import SignalModels

    global _MODELS
    candidate, target = job
    try:
        if candidate.member:
            data = zipfile.ZipFile(candidate.path).read(candidate.member)
        else:
            data = Path(candidate.path).read_bytes()
        image = Image.open(io.BytesIO(data))
        image.load()
        photo = dataset.admissible(image)
    except Exception:  # not an image, or a broken one: not a candidate
        return None
    if photo is None:
        return None
    if _MODELS is None:
        _MODELS = SignalModels.load()
    models: SignalModels = _MODELS  # type: ignore[assignment]
    assert models.embedder is not None and models.keypoints is not None
    photo.save(target, "JPEG", quality=95)
    pixels = np.asarray(photo)
    dihedral = tuple(pdq_dihedral(pixels).dihedral)
    return Checked(
        target, dihedral, models.embedder.embed(pixels), models.keypoints.extract(pixels)
    )


def _deduplicated(
    admitted: list[tuple[Candidate, Checked]], references: int
) -> tuple[np.ndarray, list[dict[str, str]]]:
    """Which are not the same picture as an earlier one (a mask), and why each other one went.

    The first ``references`` (the photo pool) are kept whatever they are: they are only compared.
    """
    codes = np.stack([_codes(k.dihedral) for _, k in admitted])  # photos x 8 x 4
    vectors = np.stack([k.embedding for _, k in admitted])
    similar = vectors @ vectors.T
    threshold = BankPolicy().keypoint_threshold
    kept = np.zeros(len(admitted), dtype=bool)
    kept[:references] = True
    dropped = []
    for index in range(references, len(admitted)):
        earlier = np.flatnonzero(kept[:index])
        why = _same_as(index, earlier, codes, similar[index], admitted, threshold)
        if why is None:
            kept[index] = True
            continue
        other, reason = why
        dropped.append(
            {"photo": _name(admitted[index][0]), "same picture as": _name(admitted[other][0])}
            | {"by": reason}
        )
    return kept, dropped


def _same_as(
    index: int,
    earlier: np.ndarray,
    codes: np.ndarray,
    cosines: np.ndarray,
    admitted: list[tuple[Candidate, Checked]],
    threshold: int,
) -> tuple[int, str] | None:
    """An earlier photo ``admitted[index]`` is the same picture as, and how it shows; or None."""
    bits = np.bitwise_count(codes[index][:, None] ^ codes[earlier, 0][None]).sum(axis=2)
    nearest = bits.min(axis=0)
    if nearest.min() <= dataset.DUPLICATE_DISTANCE:
        return int(earlier[nearest.argmin()]), f"PDQ within {int(nearest.min())} bits"
    near = cosines[earlier]
    if near.max() > 0.92:
        return int(earlier[near.argmax()]), f"embedding cosine {near.max():.3f}"
    for other in earlier[np.argsort(-near)[:_NEIGHBOURS]]:
        agreeing = agreeing_keypoints(admitted[index][1].keypoints, admitted[other][1].keypoints)
        if agreeing >= threshold:
            return int(other), f"{agreeing} keypoints agree"
    return None


def _codes(hashes: tuple[str, ...]) -> np.ndarray:
    return np.frombuffer(bytes.fromhex("".join(hashes)), dtype="<u8").reshape(-1, 4)


def _name(candidate: Candidate) -> str:
    return f"{candidate.source}:{candidate.origin}"


def _sources(
    candidates: list[Candidate],
    admitted: list[tuple[Candidate, Checked]],
    kept: list[tuple[Candidate, Checked]],
) -> list[dict[str, object]]:
    """Per source: its licence, files looked at, photographs among them, and kept."""
    files = Counter(c.source for c in candidates)
    photos = Counter(c.source for c, _ in admitted)
    final = Counter(c.source for c, _ in kept)
    licences = {name: licence for name, (_, licence) in PACKAGES.items()}
    licences |= {f"PyPI {name}": licence for name, (_, licence) in WHEELS.items()}
    licences |= {name.replace("+", "/"): licence for name, (_, licence) in REPOS.items()}
    return [
        {"source": s, "licence": licences.get(s, ""), "files": files[s]}
        | {"photographs": photos[s], "kept": final[s]}
        for s in files
        if s != "photo pool"
    ]
