"""Entrypoint of the actions service: ``eraser actions`` or ``python -m services.actions``."""

from __future__ import annotations

import sys

from services.actions.handler import ActionsProcessor, RecentIds
from services.shared import logging as eraser_logging
from services.shared.banks import followed_banks
from services.shared.config import ActionsSettings
from services.shared.metrics import ActionsMetrics
from services.shared.service import Stopping, load_settings, run_service


def main() -> int:
    """Read settings, wire real adapters, consume verdicts until stopped."""
    eraser_logging.configure("actions")
    settings = load_settings(ActionsSettings)
    metrics = ActionsMetrics()
    stopping = Stopping()
    stop, fail = stopping.event, stopping.fail

    banks, follower = followed_banks(
        settings.kafka, settings.topics.banks, settings.policies, stop, fail
    )
    processor = ActionsProcessor(
        settings.topics,
        banks,
        metrics,
        RecentIds(settings.dedup_window),
        settings.signing_key.get_secret_value().encode(),
        settings.signing_key_id,
    )
    code = run_service(
        service="actions",
        settings=settings,
        processor=processor,
        metrics=metrics,
        input_topics=[settings.topics.verdicts],
        dlq_topic=settings.topics.actions_dlq,
        stop=stop,
        before_consuming=follower.wait_until_caught_up,
    )
    return 1 if stopping.failures else code


if __name__ == "__main__":
    sys.exit(main())
