"""The review console's metrics, served on the admin process's ``/metrics``.

Backlog and the oldest item's age are computed from the board at each scrape, per queue; every
admin replica holds the same board, so dashboards take the ``max`` over replicas. Decisions and
the time to a final decision are counted by the replica that made them (sum over replicas).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from services.review.records import FINAL, ReviewItem
from services.review.rules import overturns
from services.shared.metrics import _ServiceLabel

QUEUES = ("face", "pdq", "keypoints", "embedding", "md5", "sha256")
VERDICTS = ("confirm", "reject", "escalate")
DECISION_BUCKETS = (60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400)

OpenItems = Callable[[], list[ReviewItem]]


class ReviewMetrics:
    """What the review console reports."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        open_items: OpenItems = list,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self.exported = CollectorRegistry()
        self.exported.register(_ServiceLabel(self.registry, "review"))
        self.decisions = Counter(
            "eraser_review_decisions",
            "Review decisions, by verdict.",
            ["verdict"],
            registry=self.registry,
        )
        self.overturns = Counter(
            "eraser_review_overturns",
            "Decisions that disagreed with an earlier confirm or reject of the same item.",
            registry=self.registry,
        )
        self.decision_seconds = Histogram(
            "eraser_review_decision_seconds",
            "Time from a review action to its final decision.",
            buckets=DECISION_BUCKETS,
            registry=self.registry,
        )
        for verdict in VERDICTS:
            self.decisions.labels(verdict)
        if clock is not None:
            self.registry.register(_Backlog(open_items, clock))

    def decided(self, item: ReviewItem, now: datetime) -> None:
        """Count the latest decision of ``item``."""
        self.decisions.labels(item.decisions[-1].verdict).inc()
        if item.decisions[-1].verdict != "escalate" and overturns(item):
            self.overturns.inc()
        if item.status in FINAL:
            self.decision_seconds.observe((now - item.opened_at).total_seconds())


class _Backlog(Collector):
    """Open items and the oldest one's age per queue, computed when scraped."""

    def __init__(self, open_items: OpenItems, clock: Callable[[], datetime]) -> None:
        self._open_items = open_items
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        backlog = GaugeMetricFamily(
            "eraser_review_backlog_items",
            "Review items not decided yet, by queue.",
            labels=["queue"],
        )
        oldest = GaugeMetricFamily(
            "eraser_review_oldest_item_age_seconds",
            "Age of the oldest undecided review item, by queue (0: none).",
            labels=["queue"],
        )
        now = self._clock()
        items = self._open_items()
        for queue in QUEUES:
            mine = [item for item in items if item.queue == queue]
            backlog.add_metric([queue], len(mine))
            age = max(((now - i.opened_at).total_seconds() for i in mine), default=0.0)
            oldest.add_metric([queue], age)
        yield backlog
        yield oldest
