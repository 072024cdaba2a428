"""The matcher's logic: hashed uploads in, one verdict each out (``eraser.hashes`` → verdicts).

An upload matches an entry when their SHA-256 or MD5 are equal; when any of the upload's PDQ
hashes (rotations/flips of the image and of its content without added borders) is within the
entry's bank threshold and the upload's PDQ quality reaches the bank's floor; when one of its
embeddings is close enough to one of the entry's; when a PDQ hash and an embedding are both
nearly close enough (two weaker signals agreeing); or when enough of its keypoints agree with the
entry's on one geometric transform, or fewer of them with an embedding nearly close enough.
Keypoints are checked against a shortlist: the entries nearest by embedding. In banks with faces
on, one of its faces matches a registered face (entries of their own, of a subject: a child) when
their embeddings are close enough. A batch is searched in one call per index. A video upload's
frames are searched the same way, each as an image, and against registered videos (``video.py``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from kafka.consumer.fetcher import ConsumerRecord

from services.matcher.delta import embeddings_of, faces_of
from services.matcher.generation import Entry
from services.matcher.registry import Registry
from services.matcher.verification import agreeing_keypoints
from services.matcher.video import (
    FrameQuery,
    frame_queries,
    near_frames,
    photo_matches,
    vpdq_matches,
)
from services.shared.banks import BankBook
from services.shared.config import TopicSettings
from services.shared.errors import PoisonError
from services.shared.kafka import Outgoing, Result
from services.shared.keypoints import keypoints_from_text
from services.shared.metrics import MatcherMetrics
from services.shared.schemas import (
    CloudEvent,
    FaceHit,
    FaceSeen,
    Match,
    MediaHashed,
    Signal,
    VerdictIssued,
    VideoHashed,
    now,
)
from services.shared.verdicts import error_verdict, verdict_record

SOURCE = "urn:eraser:matcher"


@dataclass(frozen=True)
class Shortlist:
    """Which entries get their keypoints checked: the nearest by embedding, if near enough."""

    entries: int = 8
    min_cosine: float = 0.5


class Query(Protocol):
    """What the search needs of an image upload, or of one sampled frame of a video upload."""

    @property
    def pdq(self) -> list[str]:
        """PDQ hashes: rotations/flips, content views."""

    @property
    def pdq_quality(self) -> int:
        """PDQ quality of the image (or frame)."""

    @property
    def embeddings(self) -> list[str]:
        """Embeddings in their wire form."""

    @property
    def keypoints(self) -> str | None:
        """Keypoints in their wire form."""

    @property
    def faces(self) -> list[FaceSeen]:
        """The largest faces, with their boxes and embeddings."""


@dataclass(frozen=True)
class Found:
    """What each index found for one upload: PDQ distance, cosine, agreeing keypoints, faces.

    Faces as (the upload's face number, face entry, cosine).
    """

    pdq: dict[Entry, int]
    embedding: dict[Entry, float] = field(default_factory=dict)
    keypoints: dict[Entry, int] = field(default_factory=dict)
    faces: list[tuple[int, Entry, float]] = field(default_factory=list)


class MatcherProcessor:
    """Issues a verdict for each hashed upload against the current registry."""

    model = MediaHashed

    def __init__(
        self,
        topics: TopicSettings,
        policies: BankBook,
        registry: Registry,
        metrics: MatcherMetrics,
        shortlist: Shortlist | None = None,
        videos: Registry | None = None,
    ) -> None:
        self._topics = topics
        self._policies = policies
        self._registry = registry
        self._metrics = metrics
        self._shortlist = shortlist or Shortlist()
        self._videos = videos

    def process(self, events: Sequence[CloudEvent[MediaHashed]]) -> list[Result]:
        """One verdict per event; lookups for the whole batch go to each index at once.

        An image upload is one query; a video upload one per sampled frame.
        """
        uploads = [event.data for event in events]
        frames = [frame_queries(upload.video) if upload.video else [] for upload in uploads]
        queries: list[Query] = []
        for upload, each in zip(uploads, frames, strict=True):
            queries += each if upload.video else [upload]
        found = iter(self.search(queries))
        near = iter(self._near_videos([u.video for u in uploads if u.video is not None]))
        results: list[Result] = []
        for upload, each in zip(uploads, frames, strict=True):
            if upload.video is None:
                matches = self.matches(upload, next(found))
            else:
                by_frame = [next(found) for _ in each]
                matches = self._video_matches(upload, each, by_frame, next(near))
            results.append(self._verdict(upload, matches))
        return results

    def search(self, queries: Sequence[Query]) -> list[Found]:
        """What each index finds for each query, searched as one batch per index."""
        with self._metrics.stage_seconds.labels("search").time():
            near = self._registry.near(
                [query.pdq for query in queries], self._policies.widest_pdq_threshold()
            )
            vectors = [embeddings_of(query.embeddings) for query in queries]
            similar = self._registry.similar(vectors, self._policies.lowest_embedding_threshold())
            with_keypoints = [
                vectors[n] if q.keypoints else vectors[n][:0] for n, q in enumerate(queries)
            ]
            nearest = self._registry.nearest(with_keypoints, self._shortlist.entries)
            faces = self._faces(queries)
        with self._metrics.stage_seconds.labels("verify").time():
            agreeing = [
                self._verified(query, candidates, pdq)
                for query, candidates, pdq in zip(queries, nearest, near, strict=True)
            ]
        return [
            Found(pdq, embedding, keypoints, face)
            for pdq, embedding, keypoints, face in zip(near, similar, agreeing, faces, strict=True)
        ]

    def _faces(self, queries: Sequence[Query]) -> list[list[tuple[int, Entry, float]]]:
        """The registered faces near each query's faces, if any bank has faces on."""
        threshold = self._policies.lowest_face_threshold()
        if threshold is None:
            return [[] for _ in queries]
        faces = [faces_of([face.embedding for face in query.faces]) for query in queries]
        return self._registry.faces(faces, threshold)

    def _verified(
        self, hashed: Query, candidates: list[tuple[Entry, float]], near: dict[Entry, int]
    ) -> dict[Entry, int]:
        """Shortlisted entries whose keypoints agree with the upload's: how many agree."""
        if not hashed.keypoints:
            return {}
        upload = keypoints_from_text(hashed.keypoints)
        agreeing: dict[Entry, int] = {}
        for entry, cosine in candidates:
            policy = self._policies.for_bank(entry.bank)
            if cosine < self._shortlist.min_cosine or not policy.enabled:
                continue
            if (
                near.get(entry, 256) <= policy.auto_threshold
                and hashed.pdq_quality >= policy.quality_floor
            ):
                continue  # a PDQ match strong enough to act on: keypoints would add nothing
            registered = self._registry.keypoints_of(entry)
            needed = policy.agreement_keypoint_threshold  # ``perceptual`` decides if enough
            count = agreeing_keypoints(upload, registered, needed) if registered else 0
            if count >= needed:
                agreeing[entry] = count
        return agreeing

    def on_poison(self, record: ConsumerRecord, error: PoisonError) -> list[Outgoing]:
        """An ``error`` verdict if the broken record still names its upload."""
        upload_id, content_id = _upload_of(record.value)
        if upload_id is None:
            return []
        self._metrics.verdicts.labels("error").inc()
        return [error_verdict(self._topics.verdicts, upload_id, content_id, error.reason, SOURCE)]

    def matches(self, hashed: MediaHashed, found_by: Found) -> list[Match]:
        """Every (entry, signal) an image upload matches under its bank's policy."""
        found = self._exact(hashed, self._registry) + self.perceptual(hashed, found_by)
        return self._named(found, self._by_faces(hashed, found_by.faces))

    def _video_matches(
        self,
        hashed: MediaHashed,
        frames: Sequence[FrameQuery],
        found: list[Found],
        near: list[dict[Entry, int]],
    ) -> list[Match]:
        """A video upload's matches.

        Exact digests, registered photos in its frames, and registered videos by vPDQ's rule.
        """
        assert hashed.video is not None
        matches = self._exact(hashed, self._registry)
        if self._videos is not None:
            matches += self._exact(hashed, self._videos)
        per_frame = [
            self.perceptual(frame, by) + self._by_faces(frame, by.faces)
            for frame, by in zip(frames, found, strict=True)
        ]
        in_frames = photo_matches(frames, per_frame)
        shown = [m for m in in_frames if m.signal != "face"]
        faces = [m for m in in_frames if m.signal == "face"]
        return self._named(
            [*matches, *shown, *vpdq_matches(hashed.video, near, self._policies)], faces
        )

    def _named(self, found: list[Match], faces: list[Match]) -> list[Match]:
        """``found`` and ``faces``, sorted; beside a face match, every match names its subject.

        So the policy can see a face and an image (or video) of the same child agree.
        """
        if faces:
            found = [self._with_subject(match) for match in found] + faces
        return sorted(found, key=lambda m: (m.bank, m.entry_id, m.signal))

    def _near_videos(self, videos: list[VideoHashed]) -> list[list[dict[Entry, int]]]:
        if self._videos is None or not videos:
            return [[{} for _ in video.frames] for video in videos]
        with self._metrics.stage_seconds.labels("search").time():
            return near_frames(self._videos, videos, self._policies.widest_pdq_threshold())

    def _exact(self, hashed: MediaHashed, registry: Registry) -> list[Match]:
        found = []
        for signal, digest in (("sha256", hashed.sha256), ("md5", hashed.md5)):
            for entry in registry.exact(signal, digest):  # type: ignore[arg-type]
                if self._policies.for_bank(entry.bank).enabled:
                    found.append(_match(entry, signal, 0))  # type: ignore[arg-type]
        return found

    def perceptual(self, hashed: Query, found_by: Found) -> list[Match]:
        """Every (entry, signal) an image (or a video frame) matches by its perceptual signals.

        PDQ within the bank's threshold, an embedding cosine at or above the bank's threshold, or
        enough keypoints in geometric agreement, matches alone. Below those, a PDQ distance and a
        cosine that are each within the bank's agreement thresholds match together (both are
        reported): two weaker signals agreeing.
        """
        near, similar = found_by.pdq, found_by.embedding
        found: list[Match] = []
        for entry, distance in near.items():
            policy = self._policies.for_bank(entry.bank)
            if (
                policy.enabled
                and distance <= policy.pdq_threshold
                and hashed.pdq_quality >= policy.quality_floor
            ):
                found.append(_match(entry, "pdq", distance))
        for entry, cosine in similar.items():
            found += self._by_embedding(hashed, entry, cosine, near, found, found_by.keypoints)
        return found + self._by_keypoints(found_by)

    def _by_keypoints(self, found_by: Found) -> list[Match]:
        """Keypoint matches: enough keypoints alone, or fewer that an embedding agrees with.

        Below the bank's keypoint threshold, a count at its agreement threshold matches with an
        embedding cosine at the agreement threshold (``_by_embedding`` reports that embedding):
        two weaker signals agreeing, as a PDQ distance and a cosine do.
        """
        found = []
        for entry, count in found_by.keypoints.items():
            policy = self._policies.for_bank(entry.bank)
            cosine = found_by.embedding.get(entry, -1.0)
            if count >= policy.keypoint_threshold or (
                cosine >= policy.agreement_embedding_threshold
            ):
                found.append(_match(entry, "keypoints", max(0, 256 - count)))
        return found

    def _by_faces(self, hashed: Query, hits: list[tuple[int, Entry, float]]) -> list[Match]:
        """Face entries matched: in a bank with faces on, at its threshold or closer.

        A bank asking for agreement (``face_agreement`` > 1) needs the upload's face to match
        that many of the subject's registered faces; each entry is reported once, with the
        upload's face that came closest.
        """
        qualifying = [
            (number, entry, cosine)
            for number, entry, cosine in hits
            if (policy := self._policies.for_bank(entry.bank)).faces
            and policy.enabled
            and cosine >= policy.face_threshold
        ]
        subjects = {entry: self._registry.subject_of(entry) for _, entry, _ in qualifying}
        agreeing: dict[tuple[int, str], set[Entry]] = {}
        for number, entry, _ in qualifying:
            agreeing.setdefault((number, subjects[entry] or entry.entry_id), set()).add(entry)
        best: dict[Entry, tuple[float, int]] = {}
        for number, entry, cosine in qualifying:
            needed = self._policies.for_bank(entry.bank).face_agreement
            group = agreeing[(number, subjects[entry] or entry.entry_id)]
            if len(group) >= needed and cosine > best.get(entry, (-2.0, 0))[0]:
                best[entry] = (cosine, number)
        return [
            _match(entry, "face", round(100 * (1 - min(1.0, cosine)))).model_copy(
                update={
                    "subject": subjects[entry],
                    "face": FaceHit(box=hashed.faces[number].box, similarity=round(cosine, 4)),
                }
            )
            for entry, (cosine, number) in best.items()
        ]

    def _with_subject(self, match: Match) -> Match:
        entry = Entry(match.entry_id, match.bank)
        subject = self._registry.subject_of(entry)
        if subject is None and self._videos is not None:
            subject = self._videos.subject_of(entry)
        return match.model_copy(update={"subject": subject}) if subject else match

    def _by_embedding(
        self,
        hashed: Query,
        entry: Entry,
        cosine: float,
        near: dict[Entry, int],
        found: list[Match],
        keypoints: dict[Entry, int],
    ) -> list[Match]:
        policy = self._policies.for_bank(entry.bank)
        embedding = _match(entry, "embedding", round(100 * (1 - min(1.0, cosine))))
        if not policy.enabled or cosine < policy.agreement_embedding_threshold:
            return []
        if cosine >= policy.embedding_threshold:
            return [embedding]
        if keypoints.get(entry, policy.keypoint_threshold) < policy.keypoint_threshold:
            return [embedding]  # with fewer keypoints, what they match on (``_by_keypoints``)
        if hashed.pdq_quality < policy.quality_floor:
            return []
        distance = near.get(entry)
        if distance is None:
            distance = self._registry.pdq_distance(entry, hashed.pdq)
        if distance > policy.agreement_pdq_threshold:
            return []
        already = any(m.entry_id == entry.entry_id and m.signal == "pdq" for m in found)
        return [embedding] if already else [embedding, _match(entry, "pdq", distance)]

    def _verdict(self, hashed: MediaHashed, matches: list[Match]) -> list[Outgoing]:
        found = sorted(matches, key=lambda m: (m.bank, m.entry_id, m.signal))
        verdict = VerdictIssued(
            upload_id=hashed.upload_id,
            content_id=hashed.content_id,
            verdict="match" if found else "clean",
            matches=found,
            scanned_at=now(),
        )
        self._metrics.verdicts.labels(verdict.verdict).inc()
        for match in found:
            self._metrics.matches.labels(match.bank, match.signal).inc()
        latency = (verdict.scanned_at - hashed.uploaded_at).total_seconds()
        self._metrics.upload_to_verdict_seconds.observe(max(0.0, latency))
        return [verdict_record(self._topics.verdicts, verdict, SOURCE)]


def _match(entry: Entry, signal: Signal, distance: int) -> Match:
    return Match(bank=entry.bank, entry_id=entry.entry_id, signal=signal, distance=distance)


def _upload_of(raw: bytes | None) -> tuple[str | None, str]:
    """The upload id and content id inside a hashed-media record that failed validation."""
    try:
        data = json.loads(raw or b"").get("data") or {}
        upload_id, content_id = data.get("upload_id"), data.get("content_id")
    except (ValueError, AttributeError, RecursionError):
        return None, ""
    if not isinstance(upload_id, str) or not 0 < len(upload_id) <= 256:
        return None, ""
    return upload_id, content_id if isinstance(content_id, str) and len(content_id) <= 256 else ""
