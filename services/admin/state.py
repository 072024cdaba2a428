"""What a command needs to know before it acts: the registry and the bank policies, as published.

``eraser`` sub-commands replay the registry or banks topic (``shared/follower.py``) into the same
structures the admin API follows. A topic that does not exist yet holds nothing: the command sees
an empty registry or the ``ERASER_BANKS`` defaults rather than waiting for it to appear.
"""

from __future__ import annotations

from collections.abc import Callable

from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord

from services.admin.view import RegistryView
from services.shared.banks import BankBook
from services.shared.config import KafkaSettings, PolicySettings, TopicSettings
from services.shared.connectivity import require_broker
from services.shared.follower import replay


def connect() -> tuple[KafkaSettings, TopicSettings]:
    """The cluster and topic settings, once a broker answers at the bootstrap address.

    Raises:
        UsageError: no broker answers there.
    """
    kafka = KafkaSettings()
    require_broker(kafka)
    return kafka, TopicSettings()


def registry(kafka: KafkaSettings, topics: TopicSettings) -> RegistryView:
    """The registry as the topic says now."""
    view = RegistryView()
    replay_existing(kafka, topics.registry, view.apply)
    return view


def bank_book(kafka: KafkaSettings, topics: TopicSettings) -> BankBook:
    """The bank policies in force: published ones over the ``ERASER_BANKS`` defaults."""
    book = BankBook(PolicySettings())
    replay_existing(kafka, topics.banks, book.apply)
    return book


def replay_existing(
    kafka: KafkaSettings, topic: str, apply: Callable[[ConsumerRecord], None]
) -> None:
    """Apply every record of ``topic`` up to its end, if the topic exists."""
    consumer = KafkaConsumer(**kafka.client_options())
    try:
        exists = topic in consumer.topics()
    finally:
        consumer.close()
    if exists:
        replay(kafka, topic, apply)
