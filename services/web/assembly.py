"""Builds the pages' collaborators for ``eraser admin`` from its settings and its registry view.

Besides the registry, banks and audit topics the admin process then follows the review and cases
logs, the actions topic and ``eraser.action-results``: each replica holds all of it, the same.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kafka.consumer.fetcher import ConsumerRecord

from services.admin.operations import Admin
from services.admin.publishing import Publisher
from services.admin.view import RegistryView
from services.cases.book import CaseBook
from services.cases.operations import Cases
from services.ingest.fetching import MediaFetcher
from services.ingest.signals import SignalModels
from services.registrar import hash_file
from services.review.board import ReviewBoard
from services.review.desk import ActionSender, NegativeBank, ReviewDesk
from services.review.evidence import Evidence, registry_lookup
from services.review.ledger import ActionLedger
from services.review.log import ReviewLog
from services.review.metrics import ReviewMetrics
from services.review.records import ReviewItem
from services.shared.banks import BankBook
from services.shared.config import AdminSettings
from services.shared.kafka import make_producer
from services.shared.schemas import BankConfigured, now
from services.web.context import WebContext
from services.web.sessions import Signer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Web:
    """The pages' context, and what to follow to keep it current: (topic, apply) pairs."""

    context: WebContext
    follows: list[tuple[str, Callable[[ConsumerRecord], None]]]
    publisher: Publisher


def build(
    settings: AdminSettings,
    view: RegistryView,
    banks: BankBook,
    models: SignalModels | None,
    clock: Callable[[], datetime] = now,
) -> Web:
    """Everything the console and case pages need, wired to Kafka."""
    review, topics = settings.review, settings.topics
    producer = make_producer(settings.kafka)
    publisher = Publisher(settings.kafka, topics, producer)
    board, cases_book, ledger = ReviewBoard(review.priorities), CaseBook(), ActionLedger()
    evidence = Evidence(MediaFetcher(settings.media), review.media_url, settings.media.max_pixels)
    admin_for = _admin_for(publisher, view)
    sender = None
    if review.signing_key is not None:
        key = review.signing_key.get_secret_value().encode()
        sender = ActionSender(producer, topics.actions, key, review.signing_key_id)
    desk = ReviewDesk(
        board=board,
        log=ReviewLog(producer, topics.review, board),
        banks=banks,
        audit=publisher.audit,
        evidence=evidence,
        metrics=ReviewMetrics(open_items=board.open_items, clock=clock),
        claim_seconds=review.claim_seconds,
        clock=clock,
        actions=sender,
        negative=_negative_bank(review.negative_bank, admin_for, banks, models),
    )

    cases = Cases(
        cases_book,
        publisher.case,
        admin_for,
        view,
        ledger,
        board,
        review.pin_attempts,
        review.pin_window_s,
        clock,
    )
    context = WebContext(
        desk=desk,
        cases=cases,
        signer=Signer(_session_key(settings)),
        users=review.users,
        blur_default=review.blur,
        session_hours=review.session_hours,
        ledger=ledger,
        view=view,
        banks=banks,
        registration=registry_lookup(settings.kafka, topics.registry),
    )
    follows: list[tuple[str, Callable[[ConsumerRecord], None]]] = [
        (topics.review, board.apply),
        (topics.cases, cases_book.apply),
        (topics.actions, ledger.apply_action),
        (topics.action_results, ledger.apply_result),
    ]
    return Web(context, follows, publisher)


def _admin_for(publisher: Publisher, view: RegistryView) -> Callable[[str], Admin]:
    return lambda actor: Admin(publisher, view, actor)


def _session_key(settings: AdminSettings) -> bytes:
    if settings.review.session_key is not None:
        return settings.review.session_key.get_secret_value().encode()
    # Sessions then last as long as this process and work on this replica only.
    log.warning("ERASER_REVIEW_SESSION_KEY is unset: sessions are signed with a throw-away key")
    return secrets.token_bytes(32)


def _negative_bank(
    bank: str, admin_for: Callable[[str], Admin], banks: BankBook, models: SignalModels | None
) -> NegativeBank:
    def add(item: ReviewItem, data: bytes, actor: str, reason: str) -> None:
        policy = banks.for_bank(bank)
        admin = admin_for(actor)
        if not policy.negative:
            fields: dict[str, Any] = {**policy.model_dump(), "negative": True}
            configured = BankConfigured(
                bank=bank, description="uploads rejected in review", **fields
            )
            admin.set_bank(configured, "negative bank for review rejections")
        hashed = hash_file(data, bank, policy.quality_floor, {"review-item": item.item_id}, models)
        del data  # hashed in memory, never kept
        admin.register([hashed.registration], f"rejected in review: {reason}")

    return add
