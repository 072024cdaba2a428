"""Entrypoint of the matcher: ``eraser matcher`` or ``python -m services.matcher``.

The registry is replayed before the first hashed upload is read: a matcher that has not caught up
would call a protected image clean.
"""

from __future__ import annotations

import sys

from services.matcher.handler import MatcherProcessor
from services.matcher.registry import Registry, RegistryFollower
from services.shared import logging as eraser_logging
from services.shared.config import MatcherSettings
from services.shared.metrics import Health, MatcherMetrics
from services.shared.service import load_settings, run_service, stop_on_signals


def main() -> int:
    """Read settings, replay the registry, consume hashed uploads until stopped."""
    eraser_logging.configure("matcher")
    settings = load_settings(MatcherSettings)
    metrics = MatcherMetrics()
    health = Health()
    stop = stop_on_signals()
    failures: list[BaseException] = []

    def fail(error: BaseException) -> None:
        failures.append(error)
        stop.set()

    registry = Registry()
    follower = RegistryFollower(
        kafka=settings.kafka,
        topic=settings.topics.registry,
        registry=registry,
        metrics=metrics,
        stop=stop,
        on_failure=fail,
    )
    health.set_ready(False, "replaying the registry")
    code = run_service(
        service="matcher",
        settings=settings,
        processor=MatcherProcessor(settings.topics, settings.policies, registry, metrics),
        metrics=metrics,
        input_topics=[settings.topics.hashes],
        dlq_topic=settings.topics.matcher_dlq,
        stop=stop,
        health=health,
        before_consuming=follower.start().wait_until_caught_up,
    )
    return 1 if failures else code


if __name__ == "__main__":
    sys.exit(main())
