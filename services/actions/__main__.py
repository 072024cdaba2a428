"""Entrypoint of the actions service: ``eraser actions`` or ``python -m services.actions``."""

from __future__ import annotations

import sys

from services.actions.handler import ActionsProcessor, RecentIds
from services.shared import logging as eraser_logging
from services.shared.config import ActionsSettings
from services.shared.metrics import ActionsMetrics
from services.shared.service import load_settings, run_service, stop_on_signals


def main() -> int:
    """Read settings, wire real adapters, consume verdicts until stopped."""
    eraser_logging.configure("actions")
    settings = load_settings(ActionsSettings)
    metrics = ActionsMetrics()
    processor = ActionsProcessor(
        settings.topics,
        settings.policies,
        metrics,
        RecentIds(settings.dedup_window),
        settings.signing_key.get_secret_value().encode(),
        settings.signing_key_id,
    )
    return run_service(
        service="actions",
        settings=settings,
        processor=processor,
        metrics=metrics,
        input_topics=[settings.topics.verdicts],
        dlq_topic=settings.topics.actions_dlq,
        stop=stop_on_signals(),
    )


if __name__ == "__main__":
    sys.exit(main())
