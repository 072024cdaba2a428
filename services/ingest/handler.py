"""Ingest's logic: an upload event in, its hashes out (or the reason it cannot be scanned).

Sits between ``eraser.uploads`` and the internal ``eraser.hashes`` topic. Media bytes live only in
memory for the length of one scan; what leaves is digests and PDQ hashes. A video goes to
``video_signals.py`` instead of the image decoder. Faces are looked for only while some bank has
faces on (``faces_wanted``): most deployments hold none, and finding faces is a sixth of a scan.
An upload that cannot be scanned gets an ``error`` verdict here, so the platform is never left
waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import replace

from kafka.consumer.fetcher import ConsumerRecord

from services.ingest.decoding import decode
from services.ingest.faces import faces_seen
from services.ingest.fetching import MediaFetcher
from services.ingest.hashing import digests
from services.ingest.signals import DECODE_SIDE, SignalModels, image_signals
from services.ingest.video import container_of
from services.ingest.video_signals import VideoIngest
from services.shared.config import TopicSettings
from services.shared.errors import FetchFailedError, MediaRejectedError, PoisonError
from services.shared.kafka import Outgoing, Result
from services.shared.keypoints import keypoints_to_text
from services.shared.metrics import IngestMetrics
from services.shared.schemas import (
    CloudEvent,
    MediaHashed,
    UploadReceived,
    embedding_to_text,
    event_id,
    new_event,
    readable_fields,
)
from services.shared.verdicts import error_verdict

SOURCE = "urn:eraser:ingest"


class IngestProcessor:
    """Scans uploads one by one; a failure is a value, kept next to its event."""

    model = UploadReceived

    def __init__(
        self,
        topics: TopicSettings,
        fetcher: MediaFetcher,
        max_pixels: int,
        metrics: IngestMetrics,
        models: SignalModels | None = None,
        video: VideoIngest | None = None,
        faces_wanted: Callable[[], bool] = lambda: True,
        beside: Executor | None = None,
    ) -> None:
        self._topics = topics
        self._fetcher = fetcher
        self._max_pixels = max_pixels
        self._metrics = metrics
        self._models = models or SignalModels()
        self._without_faces = replace(self._models, faces=None)
        self._faces_wanted = faces_wanted
        self._video = video
        self._beside = beside

    def process(self, events: Sequence[CloudEvent[UploadReceived]]) -> Iterator[Result]:
        """Scan each upload; one result per event, each as soon as it is scanned.

        A lone upload (nothing was waiting behind it) is scanned on two threads, for its latency;
        a backlog one thread per upload, for throughput: overlapping costs a few percent of CPU,
        which a busy process has no spare core to pay with.
        """
        beside = self._beside if len(events) == 1 else None
        return (self._scan_one(event, beside) for event in events)

    def on_poison(self, record: ConsumerRecord, error: PoisonError) -> list[Outgoing]:
        """An ``error`` verdict for an upload that cannot be scanned, if its id is readable."""
        upload_id, content_id = readable_fields(record.value)
        if upload_id is None:
            return []
        self._metrics.verdicts.labels("error").inc()
        return [
            error_verdict(self._topics.verdicts, upload_id, content_id or "", error.reason, SOURCE)
        ]

    def _scan_one(self, event: CloudEvent[UploadReceived], beside: Executor | None) -> Result:
        try:
            hashed = self.scan(event, beside)
        except PoisonError as error:
            return error
        out = new_event(hashed, id=event_id("hashed", event.id), source=SOURCE)
        return [Outgoing.event(self._topics.hashes, event.data.content_id, out, kind="hashes")]

    def scan(
        self, event: CloudEvent[UploadReceived], beside: Executor | None = None
    ) -> MediaHashed:
        """Fetch, decode and hash one upload; ``beside``: a thread for half of the image signals.

        Raises:
            PoisonError: the media cannot be fetched, is not allowed, or is not a decodable image
                or video.
        """
        with self._stage("fetch"):
            try:
                fetched = self._fetcher.fetch(event.data)
            except (MediaRejectedError, FetchFailedError) as error:
                self._metrics.fetch_errors.labels(error.kind).inc()
                raise
        self._metrics.fetched_bytes.labels(fetched.source).inc(len(fetched.data))
        models = self._models if self._faces_wanted() else self._without_faces
        if self._video is not None and (container := container_of(fetched.data)):
            with self._stage("video"):
                return self._video.scan(event, fetched.data, container, models)
        with self._stage("decode"):
            image = decode(fetched.data, self._max_pixels, DECODE_SIDE)
        with self._stage("hash"):
            files = digests(fetched.data)
            signals = image_signals(
                image.pixels, models, stored_colours=image.stored_colours, beside=beside
            )
        return MediaHashed(
            upload_id=event.id,
            content_id=event.data.content_id,
            uploaded_at=event.time,
            sha256=files.sha256,
            md5=files.md5,
            pdq=list(signals.pdq),
            pdq_quality=signals.pdq_quality,
            embeddings=[embedding_to_text(vector) for vector in signals.embeddings],
            keypoints=keypoints_to_text(signals.keypoints) if signals.keypoints else None,
            faces=faces_seen(signals.faces, image.width / image.pixels.shape[1]),
            width=image.width,
            height=image.height,
            format=image.format,
        )

    @contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self._metrics.stage_seconds.labels(name).observe(time.perf_counter() - started)
