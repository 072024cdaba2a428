"""How ingest spends its cores: a lone upload on two threads, a backlog one thread per upload."""

from __future__ import annotations

import base64
import io
import json
from concurrent.futures import ThreadPoolExecutor

from services.ingest.fetching import MediaFetcher
from services.ingest.handler import IngestProcessor
from services.ingest.keypoints import KeypointExtractor
from services.ingest.signals import SignalModels
from services.shared.config import MediaSettings, TopicSettings
from services.shared.metrics import IngestMetrics
from services.shared.schemas import UploadReceived, new_event
from tests.images import photo


class CountingExecutor(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(1)
        self.submitted = 0

    def submit(self, *args, **kwargs):
        self.submitted += 1
        return super().submit(*args, **kwargs)


def upload(number: int):
    jpeg = io.BytesIO()
    photo("coffee.png").convert("RGB").save(jpeg, "JPEG")
    data = UploadReceived(content_id=f"c-{number}", media_b64=base64.b64encode(jpeg.getvalue()))
    return new_event(data, id=f"u-{number}", source="test")


def test_only_an_upload_with_nothing_behind_it_is_scanned_on_two_threads():
    with CountingExecutor() as beside:
        processor = IngestProcessor(
            TopicSettings(),
            MediaFetcher(MediaSettings()),
            64_000_000,
            IngestMetrics(),
            SignalModels(keypoints=KeypointExtractor()),
            beside=beside,
        )
        lone = list(processor.process([upload(1)]))
        assert beside.submitted == 1
        backlog = list(processor.process([upload(2), upload(3), upload(4)]))
        assert beside.submitted == 1
    hashed = [json.loads(result[0].value)["data"] for result in (*lone, *backlog)]
    assert [h["content_id"] for h in hashed] == ["c-1", "c-2", "c-3", "c-4"]
    assert all(len(h["pdq"]) == 8 and h["keypoints"] for h in hashed)
