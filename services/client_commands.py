"""``eraser upload``: what a platform does for each upload, from the command line.

Publishes one ``eraser.upload.v1`` event per file or URL and prints each verdict as it arrives, the
CloudEvent exactly as docs/events.md shows it. For trying eraser out and for checking a deployment
end to end; a platform's own producer does the same in a few lines.
"""

from __future__ import annotations

import argparse
import base64
import json
import time
from pathlib import Path

from services.shared.config import KafkaSettings, TopicSettings
from services.shared.connectivity import require_broker
from services.shared.errors import UsageError
from services.shared.schemas import UploadReceived
from services.streams import EventReader, UploadPublisher

# The media travels base64-encoded inside the event (4/3 larger), and Kafka refuses records over
# 1 MB unless its brokers are configured otherwise.
MAX_INLINE_BYTES = 750 * 1024
_URL_SCHEMES = ("http://", "https://", "file://")


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``eraser upload`` to the ``eraser`` parser."""
    upload = commands.add_parser("upload", help="publish uploads and print their verdicts")
    upload.add_argument(
        "media", nargs="+", metavar="FILE_OR_URL", help="a file (sent inline) or a media URL"
    )
    upload.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for verdicts")
    upload.set_defaults(command=_upload)


def _upload(args: argparse.Namespace) -> int:
    uploads = [_upload_of(item) for item in args.media]  # local checks before any network call
    kafka, topics = KafkaSettings(), TopicSettings()
    require_broker(kafka)
    reader = EventReader(kafka, [topics.verdicts], from_end=True)
    publisher = UploadPublisher(kafka, topics.uploads)
    try:
        pending = {publisher.publish(upload): upload.content_id for upload in uploads}
        publisher.flush()
        deadline = time.monotonic() + args.timeout
        while pending and time.monotonic() < deadline:
            for received in reader.read():
                if pending.pop(received.event.data.upload_id, None) is not None:
                    print(json.dumps(json.loads(received.raw), indent=2), flush=True)
    finally:
        publisher.close()
        reader.close()
    if pending:
        raise UsageError(
            f"no verdict within {args.timeout:g} s for {', '.join(pending.values())}: "
            f"is eraser (`eraser run`) running against {kafka.bootstrap_servers}?"
        )
    return 0


def _upload_of(item: str) -> UploadReceived:
    """The upload event for a file (inline) or a URL (by reference)."""
    if item.startswith(_URL_SCHEMES):
        return UploadReceived(content_id=item.rsplit("/", 1)[-1][:256] or "upload", media_url=item)
    path = Path(item)
    if not path.is_file():
        raise UsageError(f"{item}: no such file")
    size = path.stat().st_size
    if size > MAX_INLINE_BYTES:
        raise UsageError(
            f"{item} is {size / 1024:.0f} KiB; a file is sent inside the event, at most "
            f"{MAX_INLINE_BYTES // 1024} KiB: pass a URL to it instead (http(s)://, or file:// "
            "under the ERASER_MEDIA_ROOT that ingest runs with)"
        )
    return UploadReceived(
        content_id=path.name[:256], media_b64=base64.b64encode(path.read_bytes()).decode()
    )
