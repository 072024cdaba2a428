"""``eraser bench faces``: how well the face tier finds a registered person, and how rarely others.

Photographs of identities (``face_data.py``) are hashed with ingest's own face code. Per identity,
the first two photographs are registered and every other one is a probe: it should match, at its
own size (faces of 60 px and more) and shrunk so its face is 40-60 px wide. Deepfake proxy: a
probe's face pasted over the face of a distractor or another identity (``face_swap.py``), Poisson
and feathered. False matches: every distractor face and every other identity's face against every
registered face. Cost: detection and embedding on one core. Scale: the face index at N random
registered faces, approximate against exact.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from services.bench.face_data import Photo, repository_photos, sdist_portraits
from services.bench.face_swap import paste_face
from services.ingest.decoding import decode
from services.ingest.faces import Detected, FaceModels
from services.ingest.hashing import distance, pdq
from services.matcher.index import VectorIndex

_MAX_PIXELS = 100_000_000
REGISTERED_PER_PERSON = 2
SMALL_FACE = 50  # probes shrunk so their face is about this wide (the 40-60 px class)


@dataclass
class Person:
    """One identity: its registered faces, and probe photographs (pixels and their face)."""

    name: str
    registered: list[np.ndarray] = field(default_factory=list)
    probes: list[tuple[np.ndarray, Detected]] = field(default_factory=list)
    probe_faces: list[np.ndarray] = field(default_factory=list)  # the probes' face embeddings


@dataclass
class Gallery:
    """Everything the measurements need, hashed once."""

    people: dict[str, Person]
    distractor_faces: list[np.ndarray]  # embeddings of faces of people not registered
    targets: list[tuple[np.ndarray, Detected]]  # single-face photos to paste faces onto
    photos: int
    duplicates: int


def gallery(models: FaceModels, cache: Path, accuracy_photos: list[Path]) -> Gallery:
    """Identities and distractors from the sdists, the repositories and the photo pool."""
    photos = [*sdist_portraits(cache).values(), *repository_photos(cache / "repos")]
    photos += [Photo(p.name, None, p.read_bytes()) for p in accuracy_photos]
    kept: list[tuple[Photo, np.ndarray]] = []
    seen: list[str] = []
    for photo in photos:
        pixels = decode(photo.data, _MAX_PIXELS).pixels
        code = pdq(pixels)[0]
        if any(distance(code, other) <= 31 for other in seen):
            continue  # the same photograph from two sources (obama.jpg is in three)
        seen.append(code)
        kept.append((photo, pixels))
    distractors, targets = [], []
    portraits: dict[str, list[tuple[np.ndarray, Detected]]] = {}
    for photo, pixels in kept:
        found = models.detect(pixels)
        if photo.person is None:
            distractors += models.embed(pixels, found)
            targets += [(pixels, found[0])] if len(found) == 1 else []
        elif found:
            portraits.setdefault(photo.person, []).append((pixels, found[0]))
    people = {}
    for name, faces in portraits.items():
        if len(faces) < 2:  # one photograph: a face of someone never registered
            pixels, face = faces[0]
            distractors += models.embed(pixels, [face])
            continue
        # The first photographs are registered (two, or one of a pair); the rest are probes.
        enrolled = min(REGISTERED_PER_PERSON, len(faces) - 1)
        person = Person(name, probes=faces[enrolled:])
        for pixels, face in faces[:enrolled]:
            person.registered += models.embed(pixels, [face])
        for pixels, face in person.probes:
            person.probe_faces += models.embed(pixels, [face])
        people[name] = person
    return Gallery(people, distractors, targets, len(photos), len(photos) - len(kept))


def best_cosine(models: FaceModels, pixels: np.ndarray, person: Person) -> float:
    """The closest any face in ``pixels`` comes to any of ``person``'s registered faces."""
    faces = models.faces(pixels, 16)
    registered = np.stack(person.registered)
    return max((float((registered @ f.embedding).max()) for f in faces), default=-1.0)


def probe_scores(models: FaceModels, people: dict[str, Person]) -> dict[str, list[float]]:
    """Best cosines of same-person probes: at their own size, and with 40-60 px faces."""
    scores: dict[str, list[float]] = {"60 px and more": [], "40-60 px": []}
    for person in people.values():
        for pixels, face in person.probes:
            if face.box[2] >= 60:
                scores["60 px and more"].append(best_cosine(models, pixels, person))
            small = _shrunk(pixels, SMALL_FACE / face.box[2])
            scores["40-60 px"].append(best_cosine(models, small, person))
    return scores


def composite_scores(
    models: FaceModels, people: dict[str, Person], targets: list[tuple[np.ndarray, Detected]]
) -> dict[str, list[float]]:
    """Best cosines of composites: each person's probe faces pasted onto up to 4 targets."""
    scores: dict[str, list[float]] = {"poisson": [], "feathered": []}
    for index, person in enumerate(people.values()):
        for donor, face in person.probes[:2]:
            for offset in range(4):
                target, target_face = targets[(4 * index + offset) % len(targets)]
                for blend in scores:
                    swapped = paste_face(donor, face, target, target_face, blend)  # type: ignore[arg-type]
                    scores[blend].append(best_cosine(models, swapped, person))
    return scores


def impostor_scores(gallery: Gallery) -> np.ndarray:
    """Cosines of every face of a person against every face of someone else.

    What a registered face meets: every person's faces stand for registered ones, and are
    compared with the other people's and with every distractor face (animals' included: the
    detector finds some). Two distractors are not compared: neither would be registered.
    """
    people, owners = [], []
    for number, person in enumerate(gallery.people.values()):
        people += [*person.registered, *person.probe_faces]
        owners += [number] * (len(person.registered) + len(person.probe_faces))
    vectors, owner = np.stack(people), np.asarray(owners)
    between_people = (vectors @ vectors.T)[np.triu(owner[:, None] != owner[None, :], k=1)]
    against_distractors = (np.stack(gallery.distractor_faces) @ vectors.T).ravel()
    return np.concatenate([between_people, against_distractors])


def agreement_scores(gallery: Gallery) -> tuple[list[float], np.ndarray]:
    """With two faces of a subject registered and both required to match (face_agreement 2).

    The lower of the two cosines, for each probe of the person and for every face of someone
    else: what the threshold must clear for a match.
    """
    same, impostors = [], []
    for name, person in gallery.people.items():
        if len(person.registered) < 2:
            continue
        two = np.stack(person.registered[:2])
        same += [float((two @ face).min()) for face in person.probe_faces]
        others = [*gallery.distractor_faces]
        for other, someone in gallery.people.items():
            if other != name:
                others += [*someone.registered, *someone.probe_faces]
        impostors.append((np.stack(others) @ two.T).min(axis=1))
    return same, np.concatenate(impostors)


def _shrunk(pixels: np.ndarray, scale: float) -> np.ndarray:
    if scale >= 1:
        return pixels
    image = Image.fromarray(pixels)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    buffer = io.BytesIO()
    image.resize(size, Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=90)
    return decode(buffer.getvalue(), _MAX_PIXELS).pixels


def cost_ms(
    models: FaceModels, with_faces: list[np.ndarray], without: list[np.ndarray]
) -> dict[str, float]:
    """Mean ms of ingest's face work on an image with one face and on one with none."""

    def mean_ms(work: Callable[[np.ndarray], object], images: list[np.ndarray]) -> float:
        started = time.perf_counter()
        for pixels in images:
            work(pixels)
        return (time.perf_counter() - started) / max(1, len(images)) * 1000

    return {
        "image without faces": mean_ms(lambda p: models.faces(p, 5), without),
        "image with one face": mean_ms(lambda p: models.faces(p, 5), with_faces),
    }


def index_at_scale(
    size: int, same: dict[str, list[float]], queries: int = 500, seed: int = 1
) -> dict[str, float]:
    """The face index with ``size`` random registered faces: approximate recall and speed.

    Queries are registered faces moved to the cosines real same-person pairs have (drawn from
    ``same_person``); recall counts the queries whose face the approximate index finds at the
    0.45 threshold, against the exact search over the same rows.
    """
    rng = np.random.default_rng(seed)
    rows = np.empty((size, 128), dtype=np.float16)
    for start in range(0, size, 1 << 20):
        piece = rng.normal(size=(min(1 << 20, size - start), 128)).astype(np.float32)
        rows[start : start + len(piece)] = piece / np.linalg.norm(piece, axis=1, keepdims=True)
    started = time.perf_counter()
    approximate = VectorIndex(128, approximate_above=0)
    approximate.add_rows(np.arange(size), rows)
    built_s = time.perf_counter() - started
    targets = rng.choice(size, queries, replace=False)
    same_person = np.concatenate([np.asarray(v) for v in same.values()])
    cosines = rng.choice(same_person[same_person > 0], queries)[:, None].astype(np.float32)
    noise = rng.normal(size=(queries, 128)).astype(np.float32)
    base = rows[targets].astype(np.float32)
    noise -= (noise * base).sum(1, keepdims=True) * base
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    probes = (cosines * base + np.sqrt(1 - cosines**2) * noise).astype(np.float32)
    started = time.perf_counter()
    found = approximate.search(probes, 0.45)
    approximate_ms = (time.perf_counter() - started) / queries * 1000
    exact = {
        (q, int(t))
        for q, t in enumerate(targets)
        if float(rows[t].astype(np.float32) @ probes[q]) >= 0.45
    }
    hits = {(s.query, s.key) for s in found}
    return {
        "faces": size,
        "recall_vs_exact": len(hits & exact) / max(1, len(exact)),
        "ms_per_query": approximate_ms,
        "build_s": built_s,
    }


def cost_images(found: Gallery, pool: list[Path]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Images with one face (the probes) and without (pool photos the detector finds none in)."""
    with_faces = [pixels for p in found.people.values() for pixels, _ in p.probes][:40]
    without = []
    models = FaceModels()
    for path in pool[:80]:
        pixels = decode(path.read_bytes(), _MAX_PIXELS, 540).pixels
        if not models.detect(pixels):
            without.append(pixels)
    return with_faces, without[:40]
