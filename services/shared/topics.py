"""Creates the topics eraser reads and writes, and keeps the compacted topics' settings right.

``eraser run`` calls this on start; in production ``eraser topics`` (the deploy/ job and the
compose ``topics`` container) does. The registry, banks, review and cases topics are compacted:
the latest record per key, and tombstones, are what count. A tombstone must outlive every
snapshot a matcher may restart from, or the withdrawal it records is missed and the entry matches
again: Kafka's default ``delete.retention.ms`` (24 h) drops tombstones a day after compaction, so
these topics keep them for a century. The audit topic keeps everything.
"""

from __future__ import annotations

import logging

from kafka.admin import (
    AlterConfigOp,
    ConfigResource,
    ConfigResourceType,
    KafkaAdminClient,
    NewTopic,
)
from kafka.errors import TopicAlreadyExistsError

from services.shared.config import KafkaSettings, TopicSettings

log = logging.getLogger(__name__)

# 100 years in ms. Not Long.MAX_VALUE: the log cleaner stamps each tombstone with
# now + delete.retention.ms, which would overflow to a time in the past and drop it at once.
TOMBSTONE_RETENTION_MS = 100 * 365 * 24 * 3600 * 1000
COMPACTED = {"cleanup.policy": "compact", "delete.retention.ms": str(TOMBSTONE_RETENTION_MS)}


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
        topics.action_results,
    )
    specs = [NewTopic(name, topics.partitions, topics.replication_factor) for name in streaming]
    specs += [
        NewTopic(
            topics.registry,
            topics.registry_partitions,
            topics.replication_factor,
            topic_configs=dict(COMPACTED),
        ),
        NewTopic(topics.banks, 1, topics.replication_factor, topic_configs=dict(COMPACTED)),
        # One partition each: review claims and case records are decided in one total order.
        NewTopic(topics.review, 1, topics.replication_factor, topic_configs=dict(COMPACTED)),
        NewTopic(topics.cases, 1, topics.replication_factor, topic_configs=dict(COMPACTED)),
        # The audit log is append-only and kept for good; restrict who may write it.
        NewTopic(topics.audit, 1, topics.replication_factor, topic_configs={"retention.ms": "-1"}),
    ]
    return specs


def ensure_topics(kafka: KafkaSettings, topics: TopicSettings) -> list[str]:
    """Create the missing topics and correct the compacted ones' settings; the names created."""
    admin = KafkaAdminClient(**kafka.client_options())
    try:
        existing = set(admin.list_topics())
        specs = topic_specs(topics)
        created = [
            spec.name for spec in specs if spec.name not in existing and _create(admin, spec)
        ]
        corrected = [
            name
            for name in (topics.registry, topics.banks, topics.review, topics.cases)
            if name in existing and _correct(admin, name)
        ]
        if created or corrected:
            log.info(
                "created or corrected topics",
                extra={"fields": {"created": created, "corrected": corrected}},
            )
        return created
    finally:
        admin.close()


def _create(admin: KafkaAdminClient, spec: NewTopic) -> bool:
    try:
        admin.create_topics([spec])
    except TopicAlreadyExistsError:
        return False  # another replica created it first
    return True


def _correct(admin: KafkaAdminClient, topic: str) -> bool:
    """Set the compacted settings on a topic made before them (or by hand); False if already set."""
    resource = ConfigResource(ConfigResourceType.TOPIC, topic)
    # Every config, not only overrides: brokers differ in how they report a topic's own settings.
    described = admin.describe_configs([resource], config_filter="all")["topic"][topic]
    wrong = {
        key: (AlterConfigOp.SET, value)
        for key, value in COMPACTED.items()
        if described.get(key, {}).get("value") != value
    }
    if not wrong:
        return False
    # Incremental (Kafka 2.3+): the legacy AlterConfigs would reset the topic's other settings.
    answer = admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic, configs=wrong)],
        raise_on_unknown=False,
        incremental=True,
    )
    outcome = answer["topic"][topic]
    if outcome != "OK":
        raise RuntimeError(f"could not set {', '.join(wrong)} on {topic}: {outcome}")
    return True
