"""Entrypoint of the actions service: ``eraser actions`` or ``python -m services.actions``."""

from __future__ import annotations

import sys

from services.actions.handler import ActionsProcessor, RecentIds
from services.shared import logging as eraser_logging
from services.shared.banks import BankBook
from services.shared.config import ActionsSettings
from services.shared.follower import TopicFollower
from services.shared.metrics import ActionsMetrics
from services.shared.service import load_settings, run_service, stop_on_signals


def main() -> int:
    """Read settings, wire real adapters, consume verdicts until stopped."""
    eraser_logging.configure("actions")
    settings = load_settings(ActionsSettings)
    metrics = ActionsMetrics()
    stop = stop_on_signals()
    failures: list[BaseException] = []

    def fail(error: BaseException) -> None:
        failures.append(error)
        stop.set()

    banks = BankBook(settings.policies)
    follower = TopicFollower(
        kafka=settings.kafka,
        topic=settings.topics.banks,
        apply=banks.apply,
        stop=stop,
        on_failure=fail,
    ).start()
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
    return 1 if failures else code


if __name__ == "__main__":
    sys.exit(main())
