"""The matcher's logic: hashed uploads in, one verdict each out (``eraser.hashes`` → verdicts).

An upload matches an entry when their SHA-256 or MD5 are equal, or when any of the upload's eight
rotation/flip PDQ hashes is within the entry's bank threshold and the upload's PDQ quality reaches
the bank's floor. A batch is searched in one index call.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from kafka.consumer.fetcher import ConsumerRecord

from services.matcher.generation import Entry
from services.matcher.registry import Registry
from services.shared.banks import BankBook
from services.shared.config import TopicSettings
from services.shared.errors import PoisonError
from services.shared.kafka import Outgoing, Result
from services.shared.metrics import MatcherMetrics
from services.shared.schemas import CloudEvent, Match, MediaHashed, Signal, VerdictIssued, now
from services.shared.verdicts import error_verdict, verdict_record

SOURCE = "urn:eraser:matcher"


class MatcherProcessor:
    """Issues a verdict for each hashed upload against the current registry."""

    model = MediaHashed

    def __init__(
        self,
        topics: TopicSettings,
        policies: BankBook,
        registry: Registry,
        metrics: MatcherMetrics,
    ) -> None:
        self._topics = topics
        self._policies = policies
        self._registry = registry
        self._metrics = metrics

    def process(self, events: Sequence[CloudEvent[MediaHashed]]) -> list[Result]:
        """One verdict per event; PDQ lookups for the whole batch go to the index at once."""
        with self._metrics.stage_seconds.labels("search").time():
            near = self._registry.near(
                [event.data.pdq for event in events], self._policies.widest_pdq_threshold()
            )
        return [self._verdict(event.data, found) for event, found in zip(events, near, strict=True)]

    def on_poison(self, record: ConsumerRecord, error: PoisonError) -> list[Outgoing]:
        """An ``error`` verdict if the broken record still names its upload."""
        upload_id, content_id = _upload_of(record.value)
        if upload_id is None:
            return []
        return [error_verdict(self._topics.verdicts, upload_id, content_id, error.reason, SOURCE)]

    def matches(self, hashed: MediaHashed, near: dict[Entry, int]) -> list[Match]:
        """Every (entry, signal) the upload matches under its bank's policy."""
        found: list[Match] = []
        for signal, digest in (("sha256", hashed.sha256), ("md5", hashed.md5)):
            for entry in self._registry.exact(signal, digest):  # type: ignore[arg-type]
                if self._policies.for_bank(entry.bank).enabled:
                    found.append(_match(entry, signal, 0))  # type: ignore[arg-type]
        for entry, distance in near.items():
            policy = self._policies.for_bank(entry.bank)
            if (
                policy.enabled
                and distance <= policy.pdq_threshold
                and hashed.pdq_quality >= policy.quality_floor
            ):
                found.append(_match(entry, "pdq", distance))
        return sorted(found, key=lambda m: (m.bank, m.entry_id, m.signal))

    def _verdict(self, hashed: MediaHashed, near: dict[Entry, int]) -> list[Outgoing]:
        found = self.matches(hashed, near)
        verdict = VerdictIssued(
            upload_id=hashed.upload_id,
            content_id=hashed.content_id,
            verdict="match" if found else "clean",
            matches=found,
            scanned_at=now(),
        )
        self._metrics.verdicts.labels(verdict.verdict).inc()
        for match in found:
            self._metrics.matches.labels(match.bank, match.signal).inc()
        latency = (verdict.scanned_at - hashed.uploaded_at).total_seconds()
        self._metrics.upload_to_verdict_seconds.observe(max(0.0, latency))
        return [verdict_record(self._topics.verdicts, verdict, SOURCE)]


def _match(entry: Entry, signal: Signal, distance: int) -> Match:
    return Match(bank=entry.bank, entry_id=entry.entry_id, signal=signal, distance=distance)


def _upload_of(raw: bytes | None) -> tuple[str | None, str]:
    """The upload id and content id inside a hashed-media record that failed validation."""
    try:
        data = json.loads(raw or b"").get("data") or {}
        upload_id, content_id = data.get("upload_id"), data.get("content_id")
    except (ValueError, AttributeError, RecursionError):
        return None, ""
    if not isinstance(upload_id, str) or not 0 < len(upload_id) <= 256:
        return None, ""
    return upload_id, content_id if isinstance(content_id, str) and len(content_id) <= 256 else ""
