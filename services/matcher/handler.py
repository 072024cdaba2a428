"""The matcher's logic: hashed uploads in, one verdict each out (``eraser.hashes`` → verdicts).

An upload matches an entry when their SHA-256 or MD5 are equal; when any of the upload's PDQ
hashes (rotations/flips of the image and of its content without added borders) is within the
entry's bank threshold and the upload's PDQ quality reaches the bank's floor; when one of its
embeddings is close enough to one of the entry's; or when a PDQ hash and an embedding are both
nearly close enough (two weaker signals agreeing). A batch is searched in one call per index.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from kafka.consumer.fetcher import ConsumerRecord

from services.matcher.generation import Entry
from services.matcher.registry import Registry, embeddings_of
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
            similar = self._registry.similar(
                [embeddings_of(event.data.embeddings) for event in events],
                self._policies.lowest_embedding_threshold(),
            )
        return [
            self._verdict(event.data, pdq, embedding)
            for event, pdq, embedding in zip(events, near, similar, strict=True)
        ]

    def on_poison(self, record: ConsumerRecord, error: PoisonError) -> list[Outgoing]:
        """An ``error`` verdict if the broken record still names its upload."""
        upload_id, content_id = _upload_of(record.value)
        if upload_id is None:
            return []
        return [error_verdict(self._topics.verdicts, upload_id, content_id, error.reason, SOURCE)]

    def matches(
        self, hashed: MediaHashed, near: dict[Entry, int], similar: dict[Entry, float] | None = None
    ) -> list[Match]:
        """Every (entry, signal) the upload matches under its bank's policy.

        PDQ within the bank's threshold, or an embedding cosine at or above the bank's threshold,
        matches alone. Below those, a PDQ distance and a cosine that are each within the bank's
        agreement thresholds match together (both are reported): two weaker signals agreeing.
        """
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
        for entry, cosine in (similar or {}).items():
            found += self._by_embedding(hashed, entry, cosine, near, found)
        return sorted(found, key=lambda m: (m.bank, m.entry_id, m.signal))

    def _by_embedding(
        self,
        hashed: MediaHashed,
        entry: Entry,
        cosine: float,
        near: dict[Entry, int],
        found: list[Match],
    ) -> list[Match]:
        policy = self._policies.for_bank(entry.bank)
        embedding = _match(entry, "embedding", round(100 * (1 - min(1.0, cosine))))
        if not policy.enabled or cosine < policy.agreement_embedding_threshold:
            return []
        if cosine >= policy.embedding_threshold:
            return [embedding]
        if hashed.pdq_quality < policy.quality_floor:
            return []
        distance = near.get(entry)
        if distance is None:
            distance = self._registry.pdq_distance(entry, hashed.pdq)
        if distance > policy.agreement_pdq_threshold:
            return []
        already = any(m.entry_id == entry.entry_id and m.signal == "pdq" for m in found)
        return [embedding] if already else [embedding, _match(entry, "pdq", distance)]

    def _verdict(
        self, hashed: MediaHashed, near: dict[Entry, int], similar: dict[Entry, float]
    ) -> list[Outgoing]:
        found = self.matches(hashed, near, similar)
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
