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
from collections.abc import Sized
from contextlib import closing
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote

from kafka.consumer.fetcher import ConsumerRecord

from services.admin import bank_commands
from services.admin.arguments import add_who, bank_name
from services.admin.export import RecordSource, current_entries, export, registry_records
from services.admin.formats import (
    FORMATS,
    Format,
    Parsed,
    Problem,
    embeddings_left_out,
    parse,
    vpdq_file,
)
from services.admin.operations import Admin, ImportRejected
from services.admin.progress import Progress
from services.admin.publishing import Publisher
from services.admin.state import bank_book, connect, registry, replay_existing
from services.admin.view import RegistryView
from services.ingest.signals import SignalModels
from services.registrar import (
    MEDIA_SUFFIXES,
    Measured,
    MeasuredVideo,
    image_paths,
    measure_media,
    registration,
)
from services.shared.errors import PoisonError, UsageError
from services.shared.schemas import AuditRecorded, CloudEvent, parse_event


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the administration sub-commands to the ``eraser`` parser."""
    register = commands.add_parser(
        "register", help="hash images and videos and publish their registrations"
    )
    register.add_argument("--bank", required=True, type=bank_name, help="bank to register into")
    register.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    register.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help="images, videos or folders"
    )
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
    load = commands.add_parser(
        "import", help="import a hash list (HMA text, CSV, JSON, or vpdq hash files)"
    )
    load.add_argument("file", type=Path, help="the list (for vpdq: a file, or a folder of .txt)")
    load.add_argument("--bank", required=True, type=bank_name)
    load.add_argument("--format", required=True, choices=FORMATS)
    load.add_argument("--skip-invalid", action="store_true", help="import the valid lines only")
    load.add_argument("--batch", help="batch id (default: generated)")
    add_who(load)
    load.set_defaults(command=_import)

    dump = commands.add_parser("export", help="write a bank's entries as a hash list")
    dump.add_argument("--bank", required=True, type=bank_name)
    dump.add_argument("--format", required=True, choices=FORMATS, help="json keeps everything")
    dump.add_argument(
        "--out", type=Path, help="vpdq: write one hash file per video here (ENTRY_ID.txt)"
    )
    dump.set_defaults(command=_export)


def _register(args: argparse.Namespace) -> int:
    # Every file is read and hashed before Kafka is contacted: nothing is half-registered.
    paths = _image_files(args.paths)
    labels = dict(label.split("=", 1) for label in args.label if "=" in label)
    folders = any(path.is_dir() for path in args.paths)
    measured = _measure(paths, Progress(len(paths), sys.stderr) if folders else None)
    kafka, topics = connect()
    floor = bank_book(kafka, topics).for_bank(args.bank).quality_floor
    registered = []
    for path, image in measured:
        hashed = registration(image, args.bank, floor, labels)
        if hashed.warning:
            print(f"warning\t{path}\t{hashed.warning}", file=sys.stderr)
        registered.append((path, hashed.registration))
    publisher = Publisher(kafka, topics)
    try:
        # Without the registry: the ids are derived from the bank, so none is another bank's.
        Admin(publisher, None, args.actor).register([r for _, r in registered], args.reason)
    finally:
        publisher.close()
    for path, entry in registered:
        print(f"{entry.entry_id}\t{path}")
    return 0


def _image_files(given: list[Path]) -> list[Path]:
    """The files named, and the image and video files inside the folders named.

    Raises:
        UsageError: a path does not exist, or there is no image or video file at all.
    """
    missing = [str(path) for path in given if not path.exists()]
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}")
    paths = list(image_paths(given))
    if not paths:
        suffixes = " ".join(sorted(MEDIA_SUFFIXES))
        raise UsageError(f"no image or video files ({suffixes}) in {', '.join(map(str, given))}")
    return paths


def _measure(
    paths: list[Path], progress: Progress | None
) -> list[tuple[Path, Measured | MeasuredVideo]]:
    """Each file's digests and signals.

    Raises:
        UsageError: some file is unreadable or not an image (each one named); nothing is kept.
    """
    models = SignalModels.load()
    measured, problems = [], []
    for path in paths:
        try:
            measured.append((path, measure_media(path.read_bytes(), models)))
        except (OSError, PoisonError) as error:
            why = error.reason if isinstance(error, PoisonError) else error.strerror or "unreadable"
            problems.append(f"{path}: {why}")
        if progress:
            progress.advance()
    if progress:
        progress.close()
    if problems:
        problems.append("nothing registered: remove or replace the files above and run again")
        raise UsageError("\n".join(problems))
    return measured


def _withdraw(args: argparse.Namespace) -> int:
    kafka, topics = connect()
    view = registry(kafka, topics)
    unknown = [entry_id for entry_id in args.entry_ids if view.get(entry_id) is None]
    if unknown:
        raise UsageError(
            f"not in the registry: {', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''}; "
            "nothing withdrawn (`eraser export --bank B --format csv` lists a bank's entries)"
        )
    publisher = Publisher(kafka, topics)
    try:
        admin = Admin(publisher, view, args.actor)
        if args.bank:
            _require_entries(view.in_bank(args.bank), f"bank {args.bank!r}")
            count = admin.withdraw_bank(args.bank, args.reason)
        elif args.batch:
            _require_entries(view.in_batch(args.batch), f"batch {args.batch!r}")
            count = admin.withdraw_batch(args.batch, args.reason)
        else:
            count = admin.withdraw(args.entry_ids, args.reason)
            for entry_id in args.entry_ids:
                print(f"withdrawn\t{entry_id}")
    finally:
        publisher.close()
    print(f"{count} entries withdrawn", file=sys.stderr)
    return 0


def _require_entries(entries: Sized, what: str) -> None:
    if not entries:
        raise UsageError(f"{what} has no entries in the registry (`eraser bank list` shows them)")


def _import(args: argparse.Namespace) -> int:
    parsed = _parsed(args.file, args.format, args.bank)  # before Kafka: a bad list costs nothing
    if parsed.problems and not args.skip_invalid:
        _reject(args.file, parsed.problems)
    kafka, topics = connect()
    view = registry(kafka, topics)  # to refuse entry ids that belong to another bank
    publisher = Publisher(kafka, topics)
    try:
        admin = Admin(publisher, view, args.actor)
        result = admin.import_list(
            parsed, args.format, args.bank, args.reason, args.skip_invalid, args.batch
        )
    except ImportRejected as rejected:
        _reject(args.file, rejected.problems)
    finally:
        publisher.close()
    for problem in result.skipped:
        print(f"skipped {args.file}:{problem}", file=sys.stderr)
    print(f"imported {result.imported} entries into {args.bank} as batch {result.batch}")
    return 0


def _parsed(path: Path, fmt: Format, bank: str) -> Parsed:
    """The list in ``path``; for vpdq a folder is read too, each .txt file in it one video.

    Raises:
        UsageError: the file is unreadable.
    """
    files = sorted(path.glob("*.txt")) if fmt == "vpdq" and path.is_dir() else [path]
    parsed = Parsed()
    for file in files:
        try:
            text = file.read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise UsageError(f"{file}: {getattr(error, 'strerror', None) or error}") from None
        each = parse(text, fmt, bank)
        parsed.items += each.items
        where = f"{file.name}: " if file != path else ""
        parsed.problems += [Problem(p.line, where + p.reason, p.unit) for p in each.problems]
    return parsed


def _reject(file: Path, problems: list[Problem]) -> NoReturn:
    lines = [f"{file}:{problem}" for problem in problems]
    lines.append("nothing imported: fix those lines, or add --skip-invalid to import the rest")
    raise UsageError("\n".join(lines))


def _export(args: argparse.Namespace) -> int:
    kafka, topics = connect()
    view = registry(kafka, topics)
    _require_entries(view.in_bank(args.bank), f"bank {args.bank!r}")
    records = functools.partial(registry_records, kafka, topics.registry)
    if args.out is not None:
        _export_files(view, records, args.bank, args.format, args.out)
    else:
        for piece in export(view, records, args.bank, args.format):
            sys.stdout.write(piece)
    warning = embeddings_left_out(args.format, view.with_embeddings(args.bank))
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _export_files(
    view: RegistryView, records: RecordSource, bank: str, fmt: Format, folder: Path
) -> None:
    """Each video of ``bank`` as a plain vpdq hash file in ``folder``; prints each path."""
    if fmt != "vpdq":
        raise UsageError("--out writes vpdq hash files: use it with --format vpdq")
    folder.mkdir(parents=True, exist_ok=True)
    with closing(records()) as replayed:
        for entry in current_entries(replayed, view.in_bank(bank), bank):
            if entry.signals.vpdq:
                path = folder / f"{quote(entry.entry_id, safe='')}.txt"
                path.write_text(vpdq_file(entry))
                print(f"{entry.entry_id}\t{path}")


def _audit(args: argparse.Namespace) -> int:
    events: list[CloudEvent[AuditRecorded]] = []

    def keep(record: ConsumerRecord) -> None:
        try:
            events.append(parse_event(record.value, AuditRecorded))
        except PoisonError as error:
            print(
                f"skipped audit record at offset {record.offset}: {error.reason}", file=sys.stderr
            )

    kafka, topics = connect()
    replay_existing(kafka, topics.audit, keep)
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
