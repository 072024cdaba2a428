"""Exports a bank by reading its current records back from the registry topic, streaming.

The admin index (``admin/view.py``) knows where each entry's current registration is (partition
and offset) but not its hashes; an export replays the topic from the start and writes each of the
bank's records as it passes, so memory stays a bank's index slots whatever the bank's size. The
export shows the registry as the index saw it when the export began.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import closing

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from services.admin.formats import Format, write
from services.admin.view import RegistryView, Slot
from services.shared.config import KafkaSettings
from services.shared.errors import PoisonError
from services.shared.schemas import EntryRegistered, parse_event

log = logging.getLogger(__name__)

Records = Generator[ConsumerRecord, None, None]
RecordSource = Callable[[], Records]
"""Replays the registry topic from its start to its end as it was when called (closed early when
the export has found every entry it wanted)."""


def export(
    view: RegistryView, records: RecordSource, bank: str, fmt: Format, faces: bool = False
) -> Iterator[str]:
    """A bank's entries in ``fmt``, a piece at a time.

    Face entries (biometric data) are left out unless ``faces`` is asked for, in JSON only.
    """
    keep_faces = faces and fmt == "json"
    wanted = {i: slot for i, slot in view.in_bank(bank).items() if keep_faces or not slot.face}
    with closing(records()) as replayed:
        yield from write(current_entries(replayed, wanted, bank), fmt)


def current_entries(
    records: Iterable[ConsumerRecord], wanted: dict[str, Slot], bank: str
) -> Iterator[EntryRegistered]:
    """The registrations ``wanted`` points at, read from ``records`` in topic order.

    ``wanted`` is consumed. A record the log cleaner removed because a newer one replaced it is
    stood in for by that newer one, unless it moved the entry to another bank or withdrew it.
    """
    if not wanted:
        return  # before reading anything: an empty bank needs no replay
    for record in records:
        entry_id = record.key.decode(errors="replace") if record.key else ""
        slot = wanted.get(entry_id)
        if slot is None or record.partition != slot.partition or record.offset < slot.offset:
            continue
        del wanted[entry_id]
        entry = _registration(record)
        if entry is not None and entry.bank == bank:
            yield entry
        if not wanted:
            return  # the rest of the topic holds nothing this export needs
    if wanted:
        log.warning(
            "entries changed during an export were left out",
            extra={"fields": {"bank": bank, "count": len(wanted)}},
        )


def registry_records(kafka: KafkaSettings, topic: str) -> Records:
    """Every record of ``topic`` from its start to the end it had when called."""
    consumer = KafkaConsumer(enable_auto_commit=False, **kafka.client_options())
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            return  # no topic, no entries
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek_to_beginning(tp)
        end = consumer.end_offsets(partitions)
        while True:
            batches = consumer.poll(timeout_ms=500)
            for tp in sorted(batches):
                yield from batches[tp]
            # An empty poll at the end seen at start (some brokers under-report the end early).
            if not batches and all(consumer.position(tp) >= end[tp] for tp in partitions):
                return
    finally:
        consumer.close(autocommit=False)


def _registration(record: ConsumerRecord) -> EntryRegistered | None:
    if record.value is None:
        return None
    try:
        return parse_event(record.value, EntryRegistered).data
    except PoisonError:
        return None  # the index skipped it too, so no slot points here
