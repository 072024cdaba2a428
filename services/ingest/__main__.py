"""Entrypoint of the ingest service: ``eraser ingest`` or ``python -m services.ingest``."""

from __future__ import annotations

import sys

from services.ingest.fetching import MediaFetcher
from services.ingest.handler import IngestProcessor
from services.ingest.signals import SignalModels
from services.ingest.video_signals import VideoIngest
from services.shared import logging as eraser_logging
from services.shared.config import IngestSettings
from services.shared.metrics import IngestMetrics
from services.shared.service import load_settings, run_service, stop_on_signals


def main() -> int:
    """Read settings, wire real adapters, consume uploads until stopped."""
    eraser_logging.configure("ingest")
    settings = load_settings(IngestSettings)
    metrics = IngestMetrics()
    # Keypoints are checked only against entries the embedding shortlists: without embeddings
    # they would cost time and bytes for nothing.
    models = SignalModels.load(
        settings.embeddings,
        settings.keypoints and settings.embeddings,
        settings.max_faces if settings.faces else 0,
    )
    video = VideoIngest(settings.video, metrics) if settings.video.enabled else None
    processor = IngestProcessor(
        settings.topics,
        MediaFetcher(settings.media),
        settings.media.max_pixels,
        metrics,
        models,
        video,
    )
    return run_service(
        service="ingest",
        settings=settings,
        processor=processor,
        metrics=metrics,
        input_topics=[settings.topics.uploads],
        dlq_topic=settings.topics.ingest_dlq,
        stop=stop_on_signals(),
    )


if __name__ == "__main__":
    sys.exit(main())
