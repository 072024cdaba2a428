"""Entrypoint of the ingest service: ``eraser ingest`` or ``python -m services.ingest``."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

from services.ingest.fetching import MediaFetcher
from services.ingest.handler import IngestProcessor
from services.ingest.signals import SignalModels
from services.ingest.video_signals import VideoIngest
from services.shared import logging as eraser_logging
from services.shared.banks import followed_banks
from services.shared.config import IngestSettings
from services.shared.metrics import IngestMetrics
from services.shared.service import Stopping, load_settings, run_service


def main() -> int:
    """Read settings, wire real adapters, consume uploads until stopped."""
    eraser_logging.configure("ingest")
    settings = load_settings(IngestSettings)
    metrics = IngestMetrics()
    stopping = Stopping()
    stop, fail = stopping.event, stopping.fail

    # Which banks hold faces: while none does, no upload is searched for faces.
    banks, follower = followed_banks(
        settings.kafka, settings.topics.banks, settings.policies, stop, fail
    )
    # Keypoints are checked only against entries the embedding shortlists: without embeddings
    # they would cost time and bytes for nothing.
    models = SignalModels.load(
        settings.embeddings,
        settings.keypoints and settings.embeddings,
        settings.max_faces if settings.faces else 0,
    )
    video = VideoIngest(settings.video, metrics) if settings.video.enabled else None
    # Embeddings, keypoints and faces of a lone upload, while the main thread computes PDQ.
    beside = ThreadPoolExecutor(1, "signals") if settings.overlap_signals else None
    processor = IngestProcessor(
        settings.topics,
        MediaFetcher(settings.media),
        settings.media.max_pixels,
        metrics,
        models,
        video,
        faces_wanted=lambda: banks.lowest_face_threshold() is not None,
        beside=beside,
    )
    code = run_service(
        service="ingest",
        settings=settings,
        processor=processor,
        metrics=metrics,
        input_topics=[settings.topics.uploads],
        dlq_topic=settings.topics.ingest_dlq,
        stop=stop,
        before_consuming=follower.wait_until_caught_up,
    )
    return 1 if stopping.failures else code


if __name__ == "__main__":
    sys.exit(main())
