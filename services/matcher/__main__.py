"""Entrypoint of the matcher: ``eraser matcher`` or ``python -m services.matcher``.

The registry and the bank policies are replayed before the first hashed upload is read: a matcher
that has not caught up would call a protected image clean.
"""

from __future__ import annotations

import sys

from services.matcher.handler import MatcherProcessor
from services.matcher.registry import Registry, RegistryApplier
from services.matcher.snapshots import load_latest
from services.shared import logging as eraser_logging
from services.shared.banks import BankBook
from services.shared.config import MatcherSettings
from services.shared.follower import TopicFollower
from services.shared.metrics import Health, MatcherMetrics
from services.shared.service import load_settings, run_service, stop_on_signals


def main() -> int:
    """Read settings, replay the registry and banks, consume hashed uploads until stopped."""
    eraser_logging.configure("matcher")
    settings = load_settings(MatcherSettings)
    metrics = MatcherMetrics()
    health = Health()
    stop = stop_on_signals()
    failures: list[BaseException] = []

    def fail(error: BaseException) -> None:
        failures.append(error)
        stop.set()

    snapshot = load_latest(settings.snapshot_dir, settings.snapshot_max_age_s)
    registry = Registry(
        snapshot,
        settings.snapshot_dir,
        settings.delta_limit,
        settings.snapshot_interval_s,
        on_failure=fail,
        snapshot_max_age_s=settings.snapshot_max_age_s,
    )
    banks = BankBook(settings.policies)
    applier = RegistryApplier(registry, metrics)
    followers = [
        TopicFollower(
            kafka=settings.kafka,
            topic=settings.topics.registry,
            apply=applier,
            stop=stop,
            on_failure=fail,
            on_progress=applier.progress,
            start_offsets=registry.offsets,
            after_poll=applier.after_poll,
        ).start(),
        TopicFollower(
            kafka=settings.kafka,
            topic=settings.topics.banks,
            apply=banks.apply,
            stop=stop,
            on_failure=fail,
        ).start(),
    ]
    health.set_ready(False, "replaying the registry and banks")
    code = run_service(
        service="matcher",
        settings=settings,
        processor=MatcherProcessor(settings.topics, banks, registry, metrics),
        metrics=metrics,
        input_topics=[settings.topics.hashes],
        dlq_topic=settings.topics.matcher_dlq,
        stop=stop,
        health=health,
        before_consuming=lambda: all(f.wait_until_caught_up() for f in followers),
    )
    return 1 if failures else code


if __name__ == "__main__":
    sys.exit(main())
