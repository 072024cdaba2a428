"""The bank policies in force: those published on the banks topic, over ERASER_BANKS defaults.

Read by ingest (whether any bank holds faces), the matcher (thresholds, quality floors, enabled)
and the actions service (actions, negative banks); kept current by following the banks topic, so
every replica agrees.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from kafka.consumer.fetcher import ConsumerRecord

from services.shared.config import KafkaSettings, PolicySettings
from services.shared.errors import PoisonError
from services.shared.follower import TopicFollower, log_rejected
from services.shared.schemas import BankConfigured, BankPolicy, parse_event


class BankBook:
    """Policy per bank; safe to read from one thread while another applies changes."""

    def __init__(self, defaults: PolicySettings) -> None:
        self._defaults = defaults
        self._configured: dict[str, BankConfigured] = {}
        self._lock = threading.Lock()

    def for_bank(self, bank: str) -> BankPolicy:
        """The policy of ``bank``: configured on the topic, else from ERASER_BANKS, else default."""
        configured = self._configured.get(bank)
        return configured.policy() if configured else self._defaults.for_bank(bank)

    def configured(self) -> list[BankConfigured]:
        """The banks configured on the topic, by name."""
        with self._lock:
            return [self._configured[name] for name in sorted(self._configured)]

    def widest_pdq_threshold(self) -> int:
        """The largest PDQ distance any bank accepts: the radius to search the index with."""
        with self._lock:
            configured = [c.pdq_threshold for c in self._configured.values()]
        return max([self._defaults.widest_pdq_threshold(), *configured])

    def lowest_embedding_threshold(self) -> float:
        """The lowest cosine any bank considers: the radius to search embeddings with."""
        with self._lock:
            configured = [c.agreement_embedding_threshold for c in self._configured.values()]
        defaults = self._defaults
        return min(
            [
                defaults.default_policy.agreement_embedding_threshold,
                *(p.agreement_embedding_threshold for p in defaults.banks.values()),
                *configured,
            ]
        )

    def lowest_face_threshold(self) -> float | None:
        """The lowest face cosine any bank with faces on matches at; None if no bank has faces.

        A bank without a published policy takes ERASER_BANKS or the default, so those count too.
        """
        with self._lock:
            configured = list(self._configured.values())
        defaults = self._defaults
        policies = [
            *(p for name, p in defaults.banks.items() if name not in self._configured),
            defaults.default_policy,
            *configured,
        ]
        thresholds = [p.face_threshold for p in policies if p.faces and p.enabled]
        return min(thresholds) if thresholds else None

    def apply(self, record: ConsumerRecord) -> None:
        """Apply one banks-topic record: a policy, or a tombstone that resets the bank."""
        name = record.key.decode(errors="replace") if record.key else ""
        try:
            if record.value is None:
                with self._lock:
                    self._configured.pop(name, None)
                return
            configured = parse_event(record.value, BankConfigured).data
            if configured.bank != name:
                raise PoisonError("record key is not the bank name")
        except PoisonError as error:
            log_rejected("banks", record, error.reason)
            return
        with self._lock:
            self._configured[name] = configured


def followed_banks(
    kafka: KafkaSettings,
    topic: str,
    defaults: PolicySettings,
    stop: threading.Event,
    on_failure: Callable[[BaseException], None],
) -> tuple[BankBook, TopicFollower]:
    """A bank book kept current from ``topic`` by a follower, started."""
    banks = BankBook(defaults)
    follower = TopicFollower(
        kafka=kafka, topic=topic, apply=banks.apply, stop=stop, on_failure=on_failure
    ).start()
    return banks, follower
