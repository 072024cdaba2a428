"""A running eraser for one test: its own topics and groups on the shared broker, real processes."""

from __future__ import annotations

import itertools
import json
import time
from collections import defaultdict
from pathlib import Path

from services.actions.signing import verify
from services.pipeline import Pipeline
from services.registrar import RegistryPublisher, hash_file
from services.shared.config import KafkaSettings, TopicSettings
from services.shared.schemas import ActionDecided, UploadReceived, VerdictIssued
from services.shared.topics import ensure_topics
from services.streams import EventReader, UploadPublisher

_COUNTER = itertools.count()
SIGNING_KEY = b"integration-test-signing-key"


class Eraser:
    """Topics, processes and clients of one isolated eraser deployment."""

    def __init__(self, bootstrap: str, folder: Path, banks: dict | None = None) -> None:
        prefix = f"t{next(_COUNTER)}-{int(time.time() * 1000) % 10**8}"
        self.topics = TopicSettings(
            uploads=f"{prefix}.uploads",
            hashes=f"{prefix}.hashes",
            verdicts=f"{prefix}.verdicts",
            actions=f"{prefix}.actions",
            registry=f"{prefix}.registry",
            ingest_dlq=f"{prefix}.ingest.dlq",
            matcher_dlq=f"{prefix}.matcher.dlq",
            actions_dlq=f"{prefix}.actions.dlq",
            partitions=3,
        )
        self.kafka = KafkaSettings(bootstrap_servers=bootstrap)
        self.media_root = folder / "media"
        self.media_root.mkdir()
        env = {
            f"ERASER_TOPIC_{name.upper()}": str(value)
            for name, value in self.topics.model_dump().items()
        }
        env |= {
            f"ERASER_{s.upper()}_{k}": v
            for s in ("ingest", "matcher", "actions")
            for k, v in (("GROUP_ID", f"{prefix}-{s}"), ("HTTP_PORT", "0"))
        }
        env |= {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_MAX_POLL_INTERVAL_MS": "3000",
            "ERASER_MEDIA_ROOT": str(self.media_root),
            "ERASER_BANKS": json.dumps(banks or {}),
            "ERASER_ACTIONS_SIGNING_KEY": SIGNING_KEY.decode(),
        }
        self.env = env
        ensure_topics(self.kafka, self.topics)
        self.pipeline = Pipeline(env, log_dir=folder)
        self._uploads = UploadPublisher(self.kafka, self.topics.uploads)
        self._reader = EventReader(self.kafka, [self.topics.verdicts, self.topics.actions])
        self.verdicts: defaultdict[str, list[VerdictIssued]] = defaultdict(list)
        self.actions: list[ActionDecided] = []
        self.action_ids: list[str] = []

    def register(self, bank: str, images: dict[str, bytes]) -> dict[str, str]:
        """Register images in ``bank``; their entry ids by name."""
        registrations = {
            name: hash_file(data, bank, 50).registration for name, data in images.items()
        }
        publisher = RegistryPublisher(self.kafka, self.topics.registry)
        publisher.register(registrations.values())
        publisher.close()
        return {name: r.entry_id for name, r in registrations.items()}

    def withdraw(self, *entry_ids: str) -> None:
        publisher = RegistryPublisher(self.kafka, self.topics.registry)
        publisher.withdraw(entry_ids)
        publisher.close()

    def upload(self, content_id: str, data: bytes, by_file: bool = False) -> str:
        """Publish an upload (inline, or by file:// under the media root); its upload id."""
        if by_file:
            path = self.media_root / f"{content_id}.bin"
            path.write_bytes(data)
            event = UploadReceived(content_id=content_id, media_url=path.as_uri())
        else:
            import base64

            event = UploadReceived(content_id=content_id, media_b64=base64.b64encode(data).decode())
        upload_id = self._uploads.publish(event)
        self._uploads.flush()
        return upload_id

    def send_raw(self, value: bytes | None, key: bytes | None = None) -> None:
        self._uploads.send_raw(value, key)
        self._uploads.flush()

    def wait_for_verdicts(self, upload_ids, timeout_s: float = 30.0) -> dict[str, VerdictIssued]:
        """Read until every upload id has a verdict or time runs out; the verdicts by upload id."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not set(upload_ids) <= set(self.verdicts):
            self.read()
        return {u: self.verdicts[u][0] for u in upload_ids if u in self.verdicts}

    def read(self, timeout_ms: int = 200) -> None:
        for topic, event, raw in self._reader.read(timeout_ms):
            if topic == self.topics.verdicts:
                self.verdicts[event.data.upload_id].append(event.data)
            else:
                assert verify(raw, {"1": SIGNING_KEY}), "every action is signed"
                self.actions.append(event.data)
                self.action_ids.append(event.id)

    def settle(self, seconds: float = 1.5) -> None:
        """Keep reading for a while, so late or unexpected records show up."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.read()

    def close(self) -> dict[str, int]:
        self._uploads.close()
        self._reader.close()
        return self.pipeline.stop()
