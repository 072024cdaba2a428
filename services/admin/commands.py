"""The administration sub-commands of ``eraser``: register, withdraw, import, export, bank, audit.

Each change is made on behalf of an actor (``--actor``, ``ERASER_ACTOR``, or the login name) with a
reason, and lands in the audit log. Commands that need the current registry (withdrawal by bank or
batch, export) replay the registry topic first.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path

from kafka.consumer.fetcher import ConsumerRecord

from services.admin.formats import FORMATS, serialise
from services.admin.operations import Admin, ImportRejected
from services.admin.publishing import Publisher
from services.admin.view import RegistryView
from services.ingest.embedding import Embedder
from services.registrar import hash_file, image_paths
from services.shared.banks import BankBook
from services.shared.config import KafkaSettings, PolicySettings, TopicSettings
from services.shared.errors import PoisonError
from services.shared.follower import replay
from services.shared.schemas import AuditRecorded, BankConfigured, CloudEvent, parse_event

BANK_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the administration sub-commands to the ``eraser`` parser."""
    register = commands.add_parser("register", help="hash images and publish their registrations")
    register.add_argument("--bank", required=True, help="bank to register into")
    register.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    register.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="images or folders")
    _who(register)
    register.set_defaults(command=_register)

    withdraw = commands.add_parser("withdraw", help="withdraw entries, a bank's, or a batch's")
    target = withdraw.add_mutually_exclusive_group(required=True)
    target.add_argument("entry_ids", nargs="*", default=[], metavar="ENTRY_ID")
    target.add_argument("--bank", help="withdraw every entry of this bank")
    target.add_argument("--batch", help="withdraw every entry of this import batch")
    _who(withdraw)
    withdraw.set_defaults(command=_withdraw)

    load = commands.add_parser("import", help="import a hash list (HMA text, CSV or JSON)")
    load.add_argument("file", type=Path)
    load.add_argument("--bank", required=True)
    load.add_argument("--format", required=True, choices=FORMATS)
    load.add_argument("--skip-invalid", action="store_true", help="import the valid lines only")
    load.add_argument("--batch", help="batch id (default: generated)")
    _who(load)
    load.set_defaults(command=_import)

    dump = commands.add_parser("export", help="write a bank's entries as a hash list")
    dump.add_argument("--bank", required=True)
    dump.add_argument("--format", required=True, choices=FORMATS)
    dump.set_defaults(command=_export)

    bank = commands.add_parser("bank", help="show or change bank policies")
    banks = bank.add_subparsers(required=True, metavar="ACTION")
    banks.add_parser("list", help="every bank with entries or a policy").set_defaults(
        command=_bank_list
    )
    configure = banks.add_parser("set", help="set a bank's policy (unset fields: defaults)")
    configure.add_argument("name")
    configure.add_argument("--pdq-threshold", type=int, default=31)
    configure.add_argument("--auto-threshold", type=int, default=24)
    configure.add_argument("--action", choices=("remove", "hide", "review"), default="remove")
    configure.add_argument("--quality-floor", type=int, default=50)
    configure.add_argument("--disabled", action="store_true", help="neither match nor act")
    configure.add_argument(
        "--negative", action="store_true", help="known false positives: a match vetoes every action"
    )
    configure.add_argument("--description", default="")
    _who(configure)
    configure.set_defaults(command=_bank_set)
    reset = banks.add_parser("reset", help="drop a bank's published policy")
    reset.add_argument("name")
    _who(reset)
    reset.set_defaults(command=_bank_reset)

    audit = commands.add_parser("audit", help="read the audit log")
    audit.add_argument("--bank", help="only changes to this bank")
    audit.add_argument("--json", action="store_true", help="one JSON object per line")
    audit.set_defaults(command=_audit)


def _who(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", default="", help="why (a request reference; no personal data)")
    parser.add_argument(
        "--actor",
        default=os.environ.get("ERASER_ACTOR") or getpass.getuser(),
        help="who is making the change (default: ERASER_ACTOR or login name)",
    )


def _admin(args: argparse.Namespace, with_registry: bool = False) -> tuple[Admin, Publisher]:
    kafka, topics = KafkaSettings(), TopicSettings()
    view = RegistryView()
    if with_registry:
        replay(kafka, topics.registry, view.apply)
    publisher = Publisher(kafka, topics)
    return Admin(publisher, view, args.actor), publisher


def _register(args: argparse.Namespace) -> int:
    import re

    if not re.match(BANK_PATTERN, args.bank):
        print(
            "--bank must be lower-case letters, digits, '_', '.' or '-' (at most 64)",
            file=sys.stderr,
        )
        return 2
    labels = dict(label.split("=", 1) for label in args.label if "=" in label)
    floor = PolicySettings().for_bank(args.bank).quality_floor
    embedder = Embedder()
    registered, failed = [], 0
    for path in image_paths(args.paths):
        try:
            hashed = hash_file(path.read_bytes(), args.bank, floor, labels, embedder)
        except (OSError, PoisonError) as error:
            reason = error.reason if isinstance(error, PoisonError) else type(error).__name__
            print(f"error\t{path}\t{reason}", file=sys.stderr)
            failed += 1
            continue
        if hashed.warning:
            print(f"warning\t{path}\t{hashed.warning}", file=sys.stderr)
        registered.append((path, hashed.registration))
    admin, publisher = _admin(args)
    admin.register([registration for _, registration in registered], args.reason)
    publisher.close()
    for path, registration in registered:
        print(f"{registration.entry_id}\t{path}")
    return 1 if failed or not registered else 0


def _withdraw(args: argparse.Namespace) -> int:
    admin, publisher = _admin(args, with_registry=bool(args.bank or args.batch))
    if args.bank:
        count = admin.withdraw_bank(args.bank, args.reason)
    elif args.batch:
        count = admin.withdraw_batch(args.batch, args.reason)
    else:
        count = admin.withdraw(args.entry_ids, args.reason)
        for entry_id in args.entry_ids:
            print(f"withdrawn\t{entry_id}")
    publisher.close()
    print(f"{count} entries withdrawn", file=sys.stderr)
    return 0


def _import(args: argparse.Namespace) -> int:
    admin, publisher = _admin(args)
    try:
        result = admin.import_list(
            args.file.read_text(),
            args.format,
            args.bank,
            args.reason,
            args.skip_invalid,
            args.batch,
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
    view = RegistryView()
    replay(KafkaSettings(), TopicSettings().registry, view.apply)
    sys.stdout.write(serialise(view.in_bank(args.bank), args.format))
    return 0


def _bank_set(args: argparse.Namespace) -> int:
    configured = BankConfigured(
        bank=args.name,
        pdq_threshold=args.pdq_threshold,
        auto_threshold=args.auto_threshold,
        action=args.action,
        quality_floor=args.quality_floor,
        enabled=not args.disabled,
        negative=args.negative,
        description=args.description,
    )
    admin, publisher = _admin(args)
    admin.set_bank(configured, args.reason)
    publisher.close()
    print(configured.model_dump_json())
    return 0


def _bank_reset(args: argparse.Namespace) -> int:
    admin, publisher = _admin(args)
    admin.reset_bank(args.name, args.reason)
    publisher.close()
    return 0


def _bank_list(args: argparse.Namespace) -> int:
    kafka, topics = KafkaSettings(), TopicSettings()
    book, view = BankBook(PolicySettings()), RegistryView()
    replay(kafka, topics.banks, book.apply)
    replay(kafka, topics.registry, view.apply)
    counts = view.banks()
    for name in sorted(set(counts) | {c.bank for c in book.configured()}):
        policy = book.for_bank(name).model_dump()
        print(f"{name}\t{counts.get(name, 0)} entries\t{json.dumps(policy)}")
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

    replay(KafkaSettings(), TopicSettings().audit, keep)
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
