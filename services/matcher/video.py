"""The matcher's video signal: registered videos' frame hashes, and the rules a video upload meets.

Registered videos live in a registry of their own (the same :class:`Registry` class, generation
and delta, multi-index-hash search as photos; one row per kept frame), so the photo index, and
with it every image upload, does not grow with them. A video upload is matched two ways:

- against registered **videos** as vPDQ does: the upload's distinct frames of quality >= 50 are
  counted, and a video entry matches when at least the bank's ``vpdq_match_percent`` of them are
  within its ``pdq_threshold`` of some frame of the entry (any of a frame's hashes counts: as is,
  mirrored, or its content without bars);
- against registered **photos** frame by frame, each sampled frame searched as an image would be
  (PDQ of it and its content views; embedding, keypoints and faces for key frames): any frame
  that matches a photo (or a registered face) is enough.

Each match lists when (seconds into the upload) the matching frames were shown.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from services.matcher.delta import codes_of
from services.matcher.generation import Entry, Member
from services.matcher.registry import Registry
from services.shared.banks import BankBook
from services.shared.schemas import EntryRegistered, FaceSeen, Match, VideoFrame, VideoHashed
from services.shared.vpdq import QUALITY_THRESHOLD, parse_compact

MAX_TIMESTAMPS = 64  # listed per match (Match.timestamps)


@dataclass(frozen=True)
class FrameQuery:
    """One sampled frame of a video upload, searched as an image is (``handler.Query``)."""

    pdq: list[str]
    pdq_quality: int
    embeddings: list[str] = field(default_factory=list)
    keypoints: str | None = None
    timestamp: float = 0.0
    faces: list[FaceSeen] = field(default_factory=list)

    @classmethod
    def of(cls, frame: VideoFrame) -> FrameQuery:
        """The query for a frame."""
        return cls(
            frame.pdq,
            frame.quality,
            frame.embeddings,
            frame.keypoints,
            frame.timestamp,
            frame.faces,
        )


def is_video(registration: EntryRegistered) -> bool:
    """Whether a registration is of a video (its entry lives in the video registry)."""
    return bool(registration.signals.vpdq)


def video_member(registration: EntryRegistered) -> Member:
    """A registered video as the video registry holds it: distinct frames of quality >= 50, views.

    vPDQ ignores lower-quality frames on both sides (flat or dark frames would match anything).
    """
    signals = registration.signals
    kept: dict[str, None] = {}
    for text in signals.vpdq:
        feature = parse_compact(text)
        if feature.quality >= QUALITY_THRESHOLD:
            kept.setdefault(feature.pdq)
    kept |= dict.fromkeys(signals.frame_views)  # views are registered only of quality >= 50
    return Member(
        Entry(registration.entry_id, registration.bank),
        codes_of(list(kept)),
        signals.sha256,
        signals.md5,
        subject=registration.subject,
    )


def frame_queries(video: VideoHashed) -> list[FrameQuery]:
    """Each hashed frame of a video upload, as a query."""
    return [FrameQuery.of(frame) for frame in video.frames]


def near_frames(
    videos: Registry, uploads: Sequence[VideoHashed], max_distance: int
) -> list[list[dict[Entry, int]]]:
    """For each video upload and each of its frames: registered videos within ``max_distance``.

    One search for the whole batch; an entry's distance is the smallest over the frame's hashes.
    """
    groups = [frame.pdq for video in uploads for frame in video.frames]
    found = videos.near(groups, max_distance) if groups else []
    per_video, start = [], 0
    for video in uploads:
        per_video.append(found[start : start + len(video.frames)])
        start += len(video.frames)
    return per_video


def vpdq_matches(
    video: VideoHashed, near: list[dict[Entry, int]], policies: BankBook
) -> list[Match]:
    """The registered videos this upload matches by vPDQ's rule, under each bank's policy."""
    counted = _counted_frames(video.frames)
    if not counted:
        return []
    found = []
    for entry in {entry for at in counted for entry in near[at]}:
        policy = policies.for_bank(entry.bank)
        if not policy.enabled:
            continue
        matched = [at for at in counted if near[at].get(entry, 256) <= policy.pdq_threshold]
        percent = 100.0 * len(matched) / len(counted)
        if percent < policy.vpdq_match_percent or not matched:
            continue
        found.append(
            Match(
                bank=entry.bank,
                entry_id=entry.entry_id,
                signal="vpdq",
                distance=round(statistics.median(near[at][entry] for at in matched)),
                timestamps=[video.frames[at].timestamp for at in matched][:MAX_TIMESTAMPS],
                match_percent=round(percent, 1),
            )
        )
    return found


def photo_matches(frames: Sequence[FrameQuery], per_frame: Sequence[list[Match]]) -> list[Match]:
    """Frame-by-frame photo matches folded into one per (entry, signal).

    Each keeps its smallest distance, and lists every time a frame matched.
    """
    best: dict[tuple[str, str, str], Match] = {}
    times: dict[tuple[str, str, str], list[float]] = {}
    for frame, matches in zip(frames, per_frame, strict=True):
        for match in matches:
            key = (match.bank, match.entry_id, match.signal)
            times.setdefault(key, []).append(frame.timestamp)
            if key not in best or match.distance < best[key].distance:
                best[key] = match
    return [
        match.model_copy(update={"timestamps": sorted(set(times[key]))[:MAX_TIMESTAMPS]})
        for key, match in best.items()
    ]


def _counted_frames(frames: list[VideoFrame]) -> list[int]:
    """The frames vPDQ counts: quality >= 50, each distinct hash once (the first)."""
    seen: set[str] = set()
    counted = []
    for at, frame in enumerate(frames):
        if frame.quality >= QUALITY_THRESHOLD and frame.pdq[0] not in seen:
            seen.add(frame.pdq[0])
            counted.append(at)
    return counted


def start_offsets(*registries: Registry) -> dict[int, int]:
    """Where to start reading the registry topic so that every registry catches up.

    Per partition, the lowest offset any of them reflects (a partition one lacks is read whole).
    """
    shared = set.intersection(*(set(r.offsets) for r in registries))
    return {p: min(r.offsets[p] for r in registries) for p in shared}
