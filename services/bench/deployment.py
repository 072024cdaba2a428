"""One isolated eraser on a broker: its own topics and groups, the real service processes, clients.

The benchmarks and the integration tests use it to run the pipeline exactly as production does
(one process per service, real Kafka protocol), several deployments side by side on one broker.
"""

from __future__ import annotations

import base64
import functools
import itertools
import json
import os
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from services.actions.signing import verify
from services.admin.publishing import Publisher
from services.ingest.signals import SignalModels
from services.pipeline import Pipeline
from services.registrar import hash_file
from services.shared.config import KafkaSettings, TopicSettings
from services.shared.schemas import ActionDecided, UploadReceived, VerdictIssued
from services.shared.topics import ensure_topics
from services.streams import EventReader, UploadPublisher

SIGNING_KEY = b"deployment-test-signing-key"
_COUNTER = itertools.count()


class Deployment:
    """Topics, service processes and clients of one eraser deployment."""

    def __init__(
        self,
        bootstrap: str,
        folder: Path,
        banks: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        partitions: int = 3,
    ) -> None:
        prefix = f"d{os.getpid()}-{next(_COUNTER)}-{uuid.uuid4().hex[:6]}"
        names = {name: f"{prefix}.{name.replace('_', '.')}" for name in _TOPIC_NAMES}
        self.topics = TopicSettings.model_validate({**names, "partitions": partitions})
        self.kafka = KafkaSettings(bootstrap_servers=bootstrap)
        self.media_root = folder / "media"
        self.media_root.mkdir(exist_ok=True)
        self.env = {
            **{f"ERASER_TOPIC_{name.upper()}": getattr(self.topics, name) for name in _TOPIC_NAMES},
            **{
                f"ERASER_{service}_GROUP_ID": f"{prefix}-{service.lower()}" for service in _SERVICES
            },
            **{f"ERASER_{service}_HTTP_PORT": "0" for service in _SERVICES},
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_MAX_POLL_INTERVAL_MS": "3000",
            "ERASER_MEDIA_ROOT": str(self.media_root),
            "ERASER_BANKS": json.dumps(banks or {}),
            "ERASER_ACTIONS_SIGNING_KEY": SIGNING_KEY.decode(),
            **(env or {}),
        }
        ensure_topics(self.kafka, self.topics)
        self.pipeline = Pipeline(self.env, log_dir=folder)
        self._uploads = UploadPublisher(self.kafka, self.topics.uploads)
        self._reader = EventReader(self.kafka, [self.topics.verdicts, self.topics.actions])
        self.verdicts: defaultdict[str, list[VerdictIssued]] = defaultdict(list)
        self.actions: list[ActionDecided] = []
        self.action_ids: list[str] = []
        self.unsigned_actions = 0

    @functools.cached_property
    def models(self) -> SignalModels:
        """The models registrations use (built once, on first use)."""
        return SignalModels.load()

    def register(self, bank: str, images: dict[str, bytes]) -> dict[str, str]:
        """Register images in ``bank``; their entry ids by name."""
        registrations = {
            name: hash_file(data, bank, 50, models=self.models).registration
            for name, data in images.items()
        }
        publisher = Publisher(self.kafka, self.topics)
        publisher.register(registrations.values())
        publisher.close()
        return {name: r.entry_id for name, r in registrations.items()}

    def withdraw(self, *entry_ids: str) -> None:
        """Publish tombstones for ``entry_ids``."""
        publisher = Publisher(self.kafka, self.topics)
        publisher.withdraw(entry_ids)
        publisher.close()

    def upload(
        self, content_id: str, data: bytes, by_file: bool = False, flush: bool = True
    ) -> str:
        """Publish an upload (inline, or by file:// under the media root); its upload id."""
        if by_file:
            path = self.media_root / f"{content_id}.bin"
            path.write_bytes(data)
            return self.upload_event(
                UploadReceived(content_id=content_id, media_url=path.as_uri()), flush
            )
        encoded = base64.b64encode(data).decode()
        return self.upload_event(UploadReceived(content_id=content_id, media_b64=encoded), flush)

    def upload_event(self, event: UploadReceived, flush: bool = True) -> str:
        """Publish an upload event; its upload id."""
        upload_id = self._uploads.publish(event)
        if flush:
            self._uploads.flush()
        return upload_id

    def send_raw(self, value: bytes | None, key: bytes | None = None) -> None:
        """Publish arbitrary bytes to the uploads topic."""
        self._uploads.send_raw(value, key)
        self._uploads.flush()

    def flush(self) -> None:
        """Wait until every upload sent has reached the broker."""
        self._uploads.flush()

    def wait_for_verdicts(
        self, upload_ids: Any, timeout_s: float = 30.0
    ) -> dict[str, VerdictIssued]:
        """Read until every upload id has a verdict or time runs out; the verdicts by upload id."""
        wanted = set(upload_ids)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not wanted <= self.verdicts.keys():
            self.read()
        return {u: self.verdicts[u][0] for u in wanted if u in self.verdicts}

    def wait_for_actions(self, count: int, timeout_s: float = 30.0) -> None:
        """Read until at least `count` actions arrived or time runs out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and len(self.actions) < count:
            self.read()

    def read(self, timeout_ms: int = 200) -> int:
        """Take in whatever verdicts and actions arrived; how many records."""
        received = self._reader.read(timeout_ms)
        for topic, event, raw in received:
            if topic == self.topics.verdicts:
                self.verdicts[event.data.upload_id].append(event.data)
            else:
                self.unsigned_actions += not verify(raw, {"1": SIGNING_KEY})
                self.actions.append(event.data)
                self.action_ids.append(event.id)
        return len(received)

    def settle(self, seconds: float = 1.5) -> None:
        """Keep reading for a while, so late or unexpected records show up."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.read()

    def dead_letters(self, topic: str, wait_s: float = 2.0) -> list[ConsumerRecord]:
        """Every record on a dead-letter topic."""
        consumer = KafkaConsumer(enable_auto_commit=False, **self.kafka.client_options())
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            records += [r for batch in consumer.poll(200).values() for r in batch]
        consumer.close(autocommit=False)
        return records

    def close(self) -> dict[str, int]:
        """Stop the services (clean shutdown) and the clients; the services' exit codes."""
        self._uploads.close()
        self._reader.close()
        return self.pipeline.stop()


_TOPIC_NAMES = tuple(n for n, f in TopicSettings.model_fields.items() if f.annotation is str)
_SERVICES = ("INGEST", "MATCHER", "ACTIONS")
