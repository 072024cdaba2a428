"""Creates the topics eraser reads and writes, when they do not exist yet.

``eraser run`` calls this on start; in production the deploy/ manifests create them the same way.
The registry and banks topics are compacted: the latest record per key, and tombstones, are what
count. The audit topic keeps everything.
"""

from __future__ import annotations

import logging

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from services.shared.config import KafkaSettings, TopicSettings

log = logging.getLogger(__name__)


def topic_specs(topics: TopicSettings) -> list[NewTopic]:
    """Every topic eraser uses, with its partitions and configuration."""
    streaming = (
        topics.uploads,
        topics.hashes,
        topics.verdicts,
        topics.actions,
        topics.ingest_dlq,
        topics.matcher_dlq,
        topics.actions_dlq,
    )
    specs = [NewTopic(name, topics.partitions, topics.replication_factor) for name in streaming]
    compacted = {"cleanup.policy": "compact"}
    specs += [
        NewTopic(
            topics.registry,
            topics.registry_partitions,
            topics.replication_factor,
            topic_configs=compacted,
        ),
        NewTopic(topics.banks, 1, topics.replication_factor, topic_configs=compacted),
        # The audit log is append-only and kept for good; restrict who may write it.
        NewTopic(topics.audit, 1, topics.replication_factor, topic_configs={"retention.ms": "-1"}),
    ]
    return specs


def ensure_topics(kafka: KafkaSettings, topics: TopicSettings) -> list[str]:
    """Create the missing topics; return the names created."""
    admin = KafkaAdminClient(**kafka.client_options())
    try:
        existing = set(admin.list_topics())
        missing = [spec for spec in topic_specs(topics) if spec.name not in existing]
        created = []
        for spec in missing:
            try:
                admin.create_topics([spec])
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass  # another replica created it first
        if created:
            log.info("created topics", extra={"fields": {"topics": created}})
        return created
    finally:
        admin.close()
