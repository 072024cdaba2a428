"""Entrypoint of the matcher: ``eraser matcher`` or ``python -m services.matcher``.

The registry and the bank policies are replayed before the first hashed upload is read: a matcher
that has not caught up would call a protected image clean. Afterwards the replica is ready only
while its index stays in step with the registry topic.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

from services.matcher.applier import RegistryApplier
from services.matcher.handler import MatcherProcessor, Shortlist
from services.matcher.registry import Registry
from services.matcher.snapshots import load_latest
from services.matcher.video import start_offsets
from services.shared import logging as eraser_logging
from services.shared.banks import BankBook
from services.shared.config import MatcherSettings
from services.shared.follower import TopicFollower
from services.shared.metrics import MatcherMetrics
from services.shared.service import Stopping, load_settings, run_service

# Readiness tolerates the index trailing the registry this long (bursts of registrations); the
# EraserIndexStale alert uses the same bound.
INDEX_IN_STEP_WITHIN_S = 60.0


def main() -> int:
    """Read settings, replay the registry and banks, consume hashed uploads until stopped."""
    eraser_logging.configure("matcher")
    settings = load_settings(MatcherSettings)
    metrics = MatcherMetrics()
    metrics.init_matches(settings.policies.banks)
    stopping = Stopping()
    stop, fail = stopping.event, stopping.fail

    snapshot = load_latest(settings.snapshot_dir, settings.snapshot_max_age_s)
    registry = Registry(
        snapshot,
        settings.snapshot_dir,
        settings.delta_limit,
        settings.snapshot_interval_s,
        on_failure=fail,
        snapshot_max_age_s=settings.snapshot_max_age_s,
    )
    video_dir = settings.snapshot_dir / "video" if settings.snapshot_dir else None
    videos = Registry(
        load_latest(video_dir, settings.snapshot_max_age_s),
        video_dir,
        settings.delta_limit,
        settings.snapshot_interval_s,
        on_failure=fail,
        snapshot_max_age_s=settings.snapshot_max_age_s,
        delta_hashes=settings.video_delta_frames,
    )
    banks = BankBook(settings.policies)
    index, policies = _follow(settings, (registry, videos), banks, metrics, stop, fail)
    metrics.follow_index(index.seconds_behind)

    def replayed() -> bool:
        if not (index.wait_until_caught_up() and policies.wait_until_caught_up()):
            return False
        metrics.init_matches(configured.bank for configured in banks.configured())
        return True

    def in_step() -> bool:
        return index.caught_up and index.seconds_behind() <= INDEX_IN_STEP_WITHIN_S

    code = run_service(
        service="matcher",
        settings=settings,
        processor=MatcherProcessor(
            settings.topics,
            banks,
            registry,
            metrics,
            Shortlist(settings.keypoint_candidates, settings.keypoint_min_cosine),
            videos,
        ),
        metrics=metrics,
        input_topics=[settings.topics.hashes],
        dlq_topic=settings.topics.matcher_dlq,
        stop=stop,
        ready_when=[("the index is not in step with the registry", in_step)],
        before_consuming=replayed,
    )
    return 1 if stopping.failures else code


def _follow(
    settings: MatcherSettings,
    registries: tuple[Registry, Registry],
    banks: BankBook,
    metrics: MatcherMetrics,
    stop: threading.Event,
    fail: Callable[[BaseException], None],
) -> tuple[TopicFollower, TopicFollower]:
    """Start following the registry (into the indexes) and the banks topic (into ``banks``)."""
    applier = RegistryApplier(registries[0], metrics, registries[1])
    index = TopicFollower(
        kafka=settings.kafka,
        topic=settings.topics.registry,
        apply=applier,
        stop=stop,
        on_failure=fail,
        on_progress=applier.progress,
        start_offsets=start_offsets(*registries),
        after_poll=applier.after_poll,
    )
    policies = TopicFollower(
        kafka=settings.kafka,
        topic=settings.topics.banks,
        apply=banks.apply,
        stop=stop,
        on_failure=fail,
    )
    return index.start(), policies.start()


if __name__ == "__main__":
    sys.exit(main())
