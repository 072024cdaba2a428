"""``eraser bench video``: vPDQ conformance, recall per edit, false matches, CPU per minute.

Originals (``video_corpus.py``) are registered with the registrar's code; every upload is scanned
with ingest's code (``scan_upload``, one frame a second), in worker processes, timing the CPU of
each scan; verdicts come from the matcher's own code (``Registry`` for photos and for videos,
``MatcherProcessor.process``), in process, no broker. A copy counts as found when its verdict
matches its original (vpdq for videos; any signal for a photo in a slideshow); any other match is
a false one. Conformance compares eraser's frame hashes with the vpdq tool's published hashes
for ThreatExchange's sample videos, every frame.
"""

from __future__ import annotations

import functools
import json
import random
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.bench import dataset, video_corpus, vpdq_conformance
from services.bench.video_corpus import Video
from services.ingest.signals import SignalModels
from services.ingest.video import VideoDecoder, VideoLimits, container_of
from services.ingest.video_signals import UploadPlan, reference_frames, scan_upload
from services.shared.schemas import EntryRegistered, MediaHashed, VerdictIssued, new_event, now

BANK = "bench"
SEED = 2026
PHOTOS_REGISTERED = 30
SLIDESHOW_ORIGINALS = 30
HELD_OUT = 6  # originals left unregistered: their copies are unrelated uploads
# Registrations compared: (label, seconds per hash, prune bits (-1: none), with frame views).
DENSITIES = (
    ("1 frame/s, as uploads (vpdq's default), no views", 1.0, -1, False),
    ("5 frames/s, repeats within 12 bits pruned, no views", 0.2, 12, False),
    ("every frame, repeats within 12 bits pruned, no views", 0.0, 12, False),
    ("every frame, repeats within 12 bits pruned, views (eraser)", 0.0, 12, True),
    ("every frame, repeats within 20 bits pruned, views", 0.0, 20, True),
)
_LIMITS = VideoLimits(max_duration_s=3600, max_frames=10**6, max_scan_s=3600)


@dataclass
class Scanned:
    """An upload as ingest hashed it, with the CPU its scan took and its height."""

    video: Video
    hashed: MediaHashed | None
    cpu_s: float
    seconds: float
    height: int
    error: str = ""


@dataclass
class Results:
    """What the benchmark measured."""

    conformance: list[dict[str, Any]] = field(default_factory=list)
    video_recall: dict[str, list[bool]] = field(default_factory=dict)
    photo_recall: dict[str, list[bool]] = field(default_factory=dict)
    photo_signals: dict[str, dict[str, int]] = field(default_factory=dict)
    false_matches: dict[str, list[str]] = field(default_factory=dict)
    comparisons: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, tuple[float, float]] = field(default_factory=dict)  # class: (cpu s, video s)
    densities: list[dict[str, Any]] = field(default_factory=list)
    matcher_ms: float = 0.0
    largest_record: int = 0  # bytes of the largest hashed-media event
    missed: dict[str, list[str]] = field(default_factory=dict)  # edit or motion: uploads
    closest_unrelated: list[int] = field(default_factory=list)  # per unrelated upload, bits
    match_percent: dict[str, list[float]] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)


def run(cache: Path, photos_cache: Path, threatexchange: Path | None, workers: int) -> Results:
    """Build the corpus, register, scan and match everything; the measurements."""
    import faiss

    faiss.omp_set_num_threads(1)
    results = Results()
    if threatexchange is not None:
        results.conformance = vpdq_conformance.measure(threatexchange)
    photos = [p.path for p in dataset.prepare(photos_cache)]
    random.Random(SEED).shuffle(photos)
    in_originals = photos[: video_corpus.PHOTOS_PER_ORIGINAL * SLIDESHOW_ORIGINALS]
    registered_photos = photos[len(in_originals) : len(in_originals) + PHOTOS_REGISTERED]
    others = photos[len(in_originals) + PHOTOS_REGISTERED :]
    originals = video_corpus.natural(cache, threatexchange) + video_corpus.synthetic(
        cache, in_originals, SLIDESHOW_ORIGINALS
    )
    held_out = {v.name for v in originals[:: len(originals) // HELD_OUT][:HELD_OUT]}
    copies = video_corpus.copies(cache, originals, workers, SEED)
    slides = video_corpus.photo_uploads(cache, registered_photos, others, workers)
    kept = [v for v in originals if v.name not in held_out]
    with ProcessPoolExecutor(workers) as pool:
        videos = dict(
            zip([v.name for v in kept], pool.map(_register, [v.path for v in kept]), strict=True)
        )
        pictures = list(pool.map(_register, registered_photos))
        scanned = list(
            pool.map(_scan, [*copies, *[v for v in originals if v.name in held_out], *slides])
        )
        results.densities = _densities(pool, kept, [s for s in scanned if s.video.edit])
    results.sizes = {
        "originals": len(originals),
        "registered videos": len(kept),
        "copies": len(copies),
        "slideshows": len(slides),
        "registered photos": len(pictures),
        "held out": len(held_out),
    }
    _match(results, videos, pictures, scanned, held_out)
    return results


@functools.cache
def _models() -> SignalModels:
    return SignalModels.load()


def _register(path: str) -> tuple[EntryRegistered, float, float]:
    """The registration of a file (video or photo), the CPU it took and the video's seconds."""
    from services.registrar import hash_file

    data = Path(path).read_bytes()
    started = time.process_time()
    entry = hash_file(data, BANK, 50, labels={"path": path}, models=_models()).registration
    seconds = 0.0
    if entry.signals.vpdq:
        container = container_of(data)
        assert container is not None
        seconds = VideoDecoder(data, container, _LIMITS).declared_s or 0.0
    return entry, time.process_time() - started, seconds


def _scan(video: Video) -> Scanned:
    """An upload scanned with ingest's code, timed."""
    data = Path(video.path).read_bytes()
    container = container_of(data)
    assert container is not None
    started = time.process_time()
    try:
        scan = scan_upload(data, container, _LIMITS, UploadPlan(), _models())
    except Exception as error:  # recorded: the report names every upload that failed
        return Scanned(video, None, 0.0, 0.0, 0, str(error))
    cpu = time.process_time() - started
    hashed = scan.media(video.name, video.name, now(), data)
    return Scanned(video, hashed, cpu, scan.hashed.duration_s, scan.height)


def _reference(job: tuple[str, float, int, bool]) -> tuple[list[str], float, float]:
    """A registration's hashes at one density, its seconds of video and the CPU it took."""
    path, seconds_per_hash, prune, with_views = job
    data = Path(path).read_bytes()
    container = container_of(data)
    assert container is not None
    started = time.process_time()
    kept = reference_frames(data, container, _LIMITS, seconds_per_hash, prune)
    cpu = time.process_time() - started
    views = [view for frame in kept for view in frame.views] if with_views else []
    hashes = dict.fromkeys([*(frame.feature.pdq for frame in kept), *views])
    return list(hashes), VideoDecoder(data, container, _LIMITS).declared_s or 0.0, cpu


def _densities(
    pool: ProcessPoolExecutor, kept: list[Video], copies: list[Scanned]
) -> list[dict[str, Any]]:
    """Recall over every copy, and frames kept per minute, at each registration density."""
    from services.matcher.delta import codes_of
    from services.matcher.generation import Entry, Member
    from services.matcher.registry import Registry
    from services.matcher.video import near_frames, vpdq_matches
    from services.shared.banks import BankBook
    from services.shared.config import PolicySettings

    rows = []
    policies = BankBook(PolicySettings())
    for label, seconds_per_hash, prune, with_views in DENSITIES:
        registry = Registry()
        jobs = [(v.path, seconds_per_hash, prune, with_views) for v in kept]
        frames, minutes, cpu = 0, 0.0, 0.0
        for video, (hashes, seconds, spent) in zip(kept, pool.map(_reference, jobs), strict=True):
            registry.add(Member(Entry(video.name, BANK), codes_of(hashes)))
            frames, minutes, cpu = frames + len(hashes), minutes + seconds / 60, cpu + spent
        mine = [c for c in copies if c.hashed and c.video.original in {v.name for v in kept}]
        videos = [c.hashed.video for c in mine if c.hashed and c.hashed.video]
        near = near_frames(registry, videos, 31)
        found = [
            any(m.entry_id == c.video.original for m in vpdq_matches(v, n, policies))
            for c, v, n in zip(mine, videos, near, strict=True)
        ]
        rows.append(
            {
                "registration": label,
                "hashes_per_minute": frames / max(minutes, 1e-9),
                "cpu_seconds_per_minute": cpu / max(minutes, 1e-9),
                "recall": sum(found) / max(1, len(found)),
                "copies": len(found),
            }
        )
    return rows


def _match(
    results: Results,
    videos: dict[str, tuple[EntryRegistered, float, float]],
    pictures: list[tuple[EntryRegistered, float, float]],
    scanned: list[Scanned],
    held_out: set[str],
) -> None:
    """Every scanned upload through the matcher's code; recall, false matches and costs."""
    from services.matcher.delta import codes_of
    from services.matcher.handler import MatcherProcessor
    from services.matcher.registry import Registry
    from services.matcher.video import video_member
    from services.shared.banks import BankBook
    from services.shared.config import PolicySettings, TopicSettings
    from services.shared.metrics import MatcherMetrics

    photos, clips = Registry(), Registry()
    for entry, _, _ in pictures:
        photos.register(entry)
    for entry, _, _ in videos.values():
        clips.add(video_member(entry))
    processor = MatcherProcessor(
        TopicSettings(), BankBook(PolicySettings()), photos, MatcherMetrics(), videos=clips
    )
    own = {entry.entry_id: name for name, (entry, _, _) in videos.items()}
    own |= {entry.entry_id: f"photo {n}" for n, (entry, _, _) in enumerate(pictures)}
    spent = 0.0
    rows = codes_of([h for e, _, _ in videos.values() for h in _hashes(e)])
    for upload in scanned:
        if upload.hashed is None:
            results.false_matches.setdefault("scan failed", []).append(
                f"{upload.video.name}: {upload.error}"
            )
            continue
        results.largest_record = max(results.largest_record, len(upload.hashed.model_dump_json()))
        started = time.process_time()
        (out,) = processor.process([new_event(upload.hashed, id=upload.video.name, source="bench")])
        spent += time.process_time() - started
        assert not isinstance(out, Exception)
        verdict = VerdictIssued.model_validate(json.loads(out[0].value or b"")["data"])
        _score(results, upload, verdict, own, held_out)
        _cost(results, upload)
        unrelated = upload.video.photo < 0 and (
            not upload.video.original or upload.video.original in held_out
        )
        if unrelated and upload.hashed.video:
            frames = codes_of([h for f in upload.hashed.video.frames for h in f.pdq])
            results.closest_unrelated.append(_closest(frames, rows))
    results.matcher_ms = 1000 * spent / max(1, len(scanned))
    results.cpu["registration"] = (
        sum(cpu for _, cpu, _ in videos.values()),
        sum(seconds for _, _, seconds in videos.values()),
    )


def _score(
    results: Results,
    upload: Scanned,
    verdict: VerdictIssued,
    own: dict[str, str],
    held_out: set[str],
) -> None:
    video, matched = upload.video, [(own[m.entry_id], m) for m in verdict.matches]
    if video.photo >= 0:
        target = f"photo {video.photo}"
        found = any(n == target for n, _ in matched)
        results.photo_recall.setdefault(video.origin, []).append(found)
        if not found:
            results.missed.setdefault(video.origin, []).append(video.name)
        for name, match in matched:
            if name == target:
                counts = results.photo_signals.setdefault(video.origin, defaultdict(int))
                counts[match.signal] += 1
        wrong, kind = [n for n, _ in matched if n != target], "photo slideshows: another entry"
    elif video.original and video.original not in held_out:
        found = any(n == video.original and m.signal == "vpdq" for n, m in matched)
        results.video_recall.setdefault(video.edit, []).append(found)
        if not found:
            results.missed.setdefault(video.edit, []).append(video.original)
        for name, match in matched:
            if name == video.original and match.match_percent is not None:
                results.match_percent.setdefault(video.edit, []).append(match.match_percent)
        wrong, kind = [n for n, _ in matched if n != video.original], "video copies: another entry"
    else:
        wrong = [n for n, _ in matched]
        kind = (
            "unrelated slideshows"
            if video.origin in video_corpus.MOTIONS
            else "unregistered videos and their copies"
        )
    results.comparisons[kind] = results.comparisons.get(kind, 0) + 1
    results.false_matches.setdefault(kind, []).extend(f"{video.name} matched {n}" for n in wrong)


def _cost(results: Results, upload: Scanned) -> None:
    height = upload.height
    kind = (
        "upload, <= 480 lines"
        if height <= 480
        else "upload, 481-720 lines"
        if height <= 720
        else "upload, > 720 lines"
    )
    cpu, seconds = results.cpu.get(kind, (0.0, 0.0))
    results.cpu[kind] = (cpu + upload.cpu_s, seconds + upload.seconds)


def _hashes(entry: EntryRegistered) -> list[str]:
    """Every frame hash a registered video is searched by: its frames and their views."""
    return [text.split(",")[0] for text in entry.signals.vpdq] + entry.signals.frame_views


def _closest(queries: np.ndarray, rows: np.ndarray) -> int:
    """The smallest Hamming distance between any query and any row (N x 4 uint64 each)."""
    best = 256
    for start in range(0, len(queries), 16):  # 16 x rows x 32 bytes at a time
        chunk = queries[start : start + 16, None, :] ^ rows[None, :, :]
        best = min(best, int(np.bitwise_count(chunk).sum(axis=2).min()))
    return best
