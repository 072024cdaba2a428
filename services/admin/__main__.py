"""Entrypoint of the admin API: ``eraser admin`` or ``python -m services.admin``."""

from __future__ import annotations

import collections
import sys
import threading

import uvicorn
from kafka.consumer.fetcher import ConsumerRecord

from services.admin.api import create_app
from services.admin.operations import Admin
from services.admin.publishing import Publisher
from services.admin.view import RegistryView
from services.ingest.embedding import Embedder
from services.shared import logging as eraser_logging
from services.shared.banks import BankBook
from services.shared.config import AdminSettings
from services.shared.errors import PoisonError
from services.shared.follower import TopicFollower
from services.shared.schemas import AuditRecorded, parse_event
from services.shared.service import load_settings

AUDIT_KEPT = 10_000


def main() -> int:
    """Follow the registry, banks and audit topics and serve the API until stopped."""
    eraser_logging.configure("admin")
    settings = load_settings(AdminSettings)
    stop = threading.Event()
    failures: list[BaseException] = []
    view, banks = RegistryView(), BankBook(settings.policies)
    audit: collections.deque[tuple[str, AuditRecorded]] = collections.deque(maxlen=AUDIT_KEPT)

    def keep_audit(record: ConsumerRecord) -> None:
        try:
            event = parse_event(record.value, AuditRecorded)
        except PoisonError:
            return  # the CLI's `eraser audit` shows unreadable records
        audit.append((event.time.isoformat(), event.data))

    followers = [
        TopicFollower(
            kafka=settings.kafka, topic=topic, apply=apply, stop=stop, on_failure=failures.append
        ).start()
        for topic, apply in (
            (settings.topics.registry, view.apply),
            (settings.topics.banks, banks.apply),
            (settings.topics.audit, keep_audit),
        )
    ]
    publisher = Publisher(settings.kafka, settings.topics)
    app = create_app(
        admin_for=lambda actor: Admin(publisher, view, actor),
        view=view,
        banks=banks,
        audit_log=lambda: list(audit),
        tokens=settings.tokens,
        ready=lambda: all(f.caught_up for f in followers) and not failures,
        max_image_bytes=settings.max_image_bytes,
        embedder=Embedder(),
    )
    try:
        uvicorn.run(app, host="0.0.0.0", port=settings.http_port, log_config=None)
    finally:
        stop.set()
        publisher.close()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
