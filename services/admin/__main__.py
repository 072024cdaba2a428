"""Entrypoint of the admin API: ``eraser admin`` or ``python -m services.admin``."""

from __future__ import annotations

import functools
import sys
import threading

import uvicorn

from services.admin.api import create_app
from services.admin.audit import AuditTail
from services.admin.context import AdminContext
from services.admin.export import registry_records
from services.admin.operations import Admin
from services.admin.view import RegistryView
from services.cases.operations import open_case
from services.ingest.signals import SignalModels
from services.shared import logging as eraser_logging
from services.shared.banks import BankBook
from services.shared.config import AdminSettings
from services.shared.follower import TopicFollower
from services.shared.service import load_settings
from services.web import assembly


def main() -> int:
    """Follow the registry, banks, audit, review and cases topics; serve the API and pages."""
    eraser_logging.configure("admin")
    settings = load_settings(AdminSettings)
    stop = threading.Event()
    failures: list[BaseException] = []
    view, banks, audit = RegistryView(), BankBook(settings.policies), AuditTail()
    models = SignalModels.load(faces=1)
    web = assembly.build(settings, view, banks, models)
    followers = [
        TopicFollower(
            kafka=settings.kafka, topic=topic, apply=apply, stop=stop, on_failure=failures.append
        ).start()
        for topic, apply in (
            (settings.topics.registry, view.apply),
            (settings.topics.banks, banks.apply),
            (settings.topics.audit, audit.apply),
            *web.follows,
        )
    ]
    publisher = web.publisher
    context = AdminContext(
        admin_for=lambda actor: Admin(publisher, view, actor),
        view=view,
        banks=banks,
        audit=audit,
        records=functools.partial(registry_records, settings.kafka, settings.topics.registry),
        tokens=settings.tokens,
        ready=lambda: all(f.caught_up for f in followers) and not failures,
        max_image_bytes=settings.max_image_bytes,
        models=models,
        open_case=functools.partial(open_case, publisher.case, publisher.audit),
    )
    try:
        app = create_app(context, web.context)
        uvicorn.run(app, host="0.0.0.0", port=settings.http_port, log_config=None)
    finally:
        stop.set()
        publisher.close()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
