"""The administration sub-commands of ``eraser``: register, withdraw, import, export, bank, audit.

Each change is made on behalf of an actor (``--actor``, ``ERASER_ACTOR``, or the login name) with a
reason, and lands in the audit log. Commands that need the current registry (import, withdrawal by
bank or batch, export) or the bank policies (register) replay those topics first
(``admin/state.py``). stdout carries results only; errors, warnings and progress go to stderr.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

from kafka.consumer.fetcher import ConsumerRecord

from services.admin import bank_commands
from services.admin.arguments import add_who, bank_name
from services.admin.export import export, registry_records
from services.admin.formats import FORMATS, embeddings_left_out
from services.admin.operations import Admin, ImportRejected
from services.admin.progress import Progress
from services.admin.publishing import Publisher
from services.admin.state import bank_book, registry, replay_existing
from services.ingest.signals import SignalModels
from services.registrar import hash_file, image_paths
from services.shared.config import KafkaSettings, TopicSettings
from services.shared.errors import PoisonError
from services.shared.schemas import AuditRecorded, CloudEvent, EntryRegistered, parse_event


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the administration sub-commands to the ``eraser`` parser."""
    register = commands.add_parser("register", help="hash images and publish their registrations")
    register.add_argument("--bank", required=True, type=bank_name, help="bank to register into")
    register.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    register.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="images or folders")
    add_who(register)
    register.set_defaults(command=_register)

    withdraw = commands.add_parser("withdraw", help="withdraw entries, a bank's, or a batch's")
    target = withdraw.add_mutually_exclusive_group(required=True)
    target.add_argument("entry_ids", nargs="*", default=[], metavar="ENTRY_ID")
    target.add_argument("--bank", type=bank_name, help="withdraw every entry of this bank")
    target.add_argument("--batch", help="withdraw every entry of this import batch")
    add_who(withdraw)
    withdraw.set_defaults(command=_withdraw)
    _add_lists(commands)
    bank_commands.add_commands(commands)

    audit = commands.add_parser("audit", help="read the audit log")
    audit.add_argument("--bank", help="only changes to this bank")
    audit.add_argument("--json", action="store_true", help="one JSON object per line")
    audit.set_defaults(command=_audit)


def _add_lists(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    load = commands.add_parser("import", help="import a hash list (HMA text, CSV or JSON)")
    load.add_argument("file", type=Path)
    load.add_argument("--bank", required=True, type=bank_name)
    load.add_argument("--format", required=True, choices=FORMATS)
    load.add_argument("--skip-invalid", action="store_true", help="import the valid lines only")
    load.add_argument("--batch", help="batch id (default: generated)")
    add_who(load)
    load.set_defaults(command=_import)

    dump = commands.add_parser("export", help="write a bank's entries as a hash list")
    dump.add_argument("--bank", required=True, type=bank_name)
    dump.add_argument("--format", required=True, choices=FORMATS, help="json keeps everything")
    dump.set_defaults(command=_export)


def _register(args: argparse.Namespace) -> int:
    kafka, topics = KafkaSettings(), TopicSettings()
    labels = dict(label.split("=", 1) for label in args.label if "=" in label)
    floor = bank_book(kafka, topics).for_bank(args.bank).quality_floor
    paths = list(image_paths(args.paths))
    folders = any(path.is_dir() for path in args.paths)
    progress = Progress(len(paths), sys.stderr) if folders else None
    registered, failed = _hash_files(paths, args.bank, floor, labels, progress)
    if registered:
        publisher = Publisher(kafka, topics)
        try:
            # Without the registry: the ids are derived from the bank, so none is another bank's.
            Admin(publisher, None, args.actor).register([r for _, r in registered], args.reason)
        finally:
            publisher.close()
    for path, registration in registered:
        print(f"{registration.entry_id}\t{path}")
    return 1 if failed or not registered else 0


def _hash_files(
    paths: list[Path], bank: str, floor: int, labels: dict[str, str], progress: Progress | None
) -> tuple[list[tuple[Path, EntryRegistered]], int]:
    """The registrations of the files that could be hashed, and how many could not."""
    models = SignalModels.load()
    note = progress.note if progress else functools.partial(print, file=sys.stderr)
    registered, failed = [], 0
    for path in paths:
        try:
            hashed = hash_file(path.read_bytes(), bank, floor, labels, models)
        except (OSError, PoisonError) as error:
            reason = error.reason if isinstance(error, PoisonError) else type(error).__name__
            note(f"error\t{path}\t{reason}")
            failed += 1
        else:
            if hashed.warning:
                note(f"warning\t{path}\t{hashed.warning}")
            registered.append((path, hashed.registration))
        if progress:
            progress.advance()
    if progress:
        progress.close()
    return registered, failed


def _withdraw(args: argparse.Namespace) -> int:
    kafka, topics = KafkaSettings(), TopicSettings()
    view = registry(kafka, topics) if args.bank or args.batch else None
    publisher = Publisher(kafka, topics)
    try:
        admin = Admin(publisher, view, args.actor)
        if args.bank:
            count = admin.withdraw_bank(args.bank, args.reason)
        elif args.batch:
            count = admin.withdraw_batch(args.batch, args.reason)
        else:
            count = admin.withdraw(args.entry_ids, args.reason)
            for entry_id in args.entry_ids:
                print(f"withdrawn\t{entry_id}")
    finally:
        publisher.close()
    print(f"{count} entries withdrawn", file=sys.stderr)
    return 0


def _import(args: argparse.Namespace) -> int:
    kafka, topics = KafkaSettings(), TopicSettings()
    text = args.file.read_text()
    view = registry(kafka, topics)  # to refuse entry ids that belong to another bank
    publisher = Publisher(kafka, topics)
    try:
        admin = Admin(publisher, view, args.actor)
        result = admin.import_list(
            text, args.format, args.bank, args.reason, args.skip_invalid, args.batch
        )
    except ImportRejected as rejected:
        for problem in rejected.problems:
            print(f"{args.file}:{problem}", file=sys.stderr)
        print("nothing imported (use --skip-invalid to import the valid lines)", file=sys.stderr)
        return 1
    finally:
        publisher.close()
    for problem in result.skipped:
        print(f"skipped {args.file}:{problem}", file=sys.stderr)
    print(f"imported {result.imported} entries into {args.bank} as batch {result.batch}")
    return 0


def _export(args: argparse.Namespace) -> int:
    kafka, topics = KafkaSettings(), TopicSettings()
    view = registry(kafka, topics)
    records = functools.partial(registry_records, kafka, topics.registry)
    for piece in export(view, records, args.bank, args.format):
        sys.stdout.write(piece)
    warning = embeddings_left_out(args.format, view.with_embeddings(args.bank))
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _audit(args: argparse.Namespace) -> int:
    events: list[CloudEvent[AuditRecorded]] = []

    def keep(record: ConsumerRecord) -> None:
        try:
            events.append(parse_event(record.value, AuditRecorded))
        except PoisonError as error:
            print(
                f"skipped audit record at offset {record.offset}: {error.reason}", file=sys.stderr
            )

    replay_existing(KafkaSettings(), TopicSettings().audit, keep)
    for event in events:
        record = event.data
        if args.bank and record.bank != args.bank:
            continue
        if args.json:
            print(json.dumps({"time": event.time.isoformat(), **record.model_dump()}))
        else:
            target = record.bank or record.batch or ""
            ids = ",".join(record.entry_ids[:3]) + ("..." if len(record.entry_ids) > 3 else "")
            print(
                f"{event.time:%Y-%m-%dT%H:%M:%SZ}\t{record.actor}\t{record.operation}\t"
                f"{target}\t{record.count}\t{record.reason}\t{ids}"
            )
    return 0
