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

from services.admin import bank_commands, registering
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
from services.admin.publishing import Publisher
from services.admin.state import connect, registry, replay_existing
from services.admin.view import RegistryView
from services.shared.errors import PoisonError, UsageError
from services.shared.passwords import hash_secret
from services.shared.schemas import AuditRecorded, CloudEvent, parse_event


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the administration sub-commands to the ``eraser`` parser."""
    registering.add_command(commands)

    withdraw = commands.add_parser("withdraw", help="withdraw entries, a bank's, or a batch's")
    target = withdraw.add_mutually_exclusive_group(required=True)
    target.add_argument("entry_ids", nargs="*", default=[], metavar="ENTRY_ID")
    target.add_argument("--bank", type=bank_name, help="withdraw every entry of this bank")
    target.add_argument("--batch", help="withdraw every entry of this import batch")
    target.add_argument(
        "--subject", help="withdraw every photograph and face of this subject (a child)"
    )
    add_who(withdraw)
    withdraw.set_defaults(command=_withdraw)
    _add_lists(commands)
    bank_commands.add_commands(commands)

    review = commands.add_parser("review", help="the review console's accounts")
    reviews = review.add_subparsers(required=True, metavar="ACTION")
    password = reviews.add_parser(
        "password", help="read a password on stdin, print its hash for ERASER_REVIEW_USERS"
    )
    password.set_defaults(command=_review_password)

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
        "--with-faces",
        action="store_true",
        help="include face entries (biometric data; json only)",
    )
    dump.add_argument(
        "--out", type=Path, help="vpdq: write one hash file per video here (ENTRY_ID.txt)"
    )
    dump.set_defaults(command=_export)


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
        elif args.subject:
            _require_entries(view.of_subject(args.subject), f"subject {args.subject!r}")
            count = admin.withdraw_subject(args.subject, args.reason)
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
    if args.with_faces and args.format != "json":
        raise UsageError("faces are biometric data: only --format json carries them")
    if args.out is not None and args.format != "vpdq":
        raise UsageError("--out writes vpdq hash files: use it with --format vpdq")
    kafka, topics = connect()
    view = registry(kafka, topics)
    _require_entries(view.in_bank(args.bank), f"bank {args.bank!r}")
    records = functools.partial(registry_records, kafka, topics.registry)
    if args.out is not None:
        _export_files(view, records, args.bank, args.out)
    else:
        for piece in export(view, records, args.bank, args.format, args.with_faces):
            sys.stdout.write(piece)
    warning = embeddings_left_out(args.format, view.with_embeddings(args.bank))
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _export_files(view: RegistryView, records: RecordSource, bank: str, folder: Path) -> None:
    """Each video of ``bank`` as a plain vpdq hash file in ``folder``; prints each path."""
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


def _review_password(args: argparse.Namespace) -> int:
    secret = sys.stdin.readline().rstrip("\n")
    if len(secret) < 12:
        raise UsageError("a reviewer's password needs at least 12 characters")
    print(hash_secret(secret))
    return 0
