"""Verdict records, built the same way by the matcher and by ingest.

The matcher writes one for every scanned upload, ingest one for each upload it could not scan:
together exactly one verdict per upload id, repeats sharing the same CloudEvent id.
"""

from __future__ import annotations

from services.shared.kafka import Outgoing
from services.shared.schemas import VerdictIssued, event_id, new_event, now


def verdict_record(topic: str, verdict: VerdictIssued, source: str) -> Outgoing:
    """The verdict as a record keyed by content id, with an id derived from the upload id."""
    event = new_event(verdict, id=event_id("verdict", verdict.upload_id), source=source)
    return Outgoing.event(topic, verdict.content_id or verdict.upload_id, event, kind="verdict")


def error_verdict(
    topic: str, upload_id: str, content_id: str, reason: str, source: str
) -> Outgoing:
    """An ``error`` verdict, so a platform waiting on the upload is not left waiting."""
    verdict = VerdictIssued(
        upload_id=upload_id, content_id=content_id, verdict="error", error=reason, scanned_at=now()
    )
    return verdict_record(topic, verdict, source)
