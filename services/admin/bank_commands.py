"""``eraser bank list | set | reset``: the bank policies, published on the banks topic.

``bank set`` changes only the fields given: it starts from the bank's policy in force (as
published, else ``ERASER_BANKS``, else the defaults), so raising one threshold never resets the
others.
"""

from __future__ import annotations

import argparse
import json

from pydantic import ValidationError

from services.admin.arguments import add_who, bank_name
from services.admin.operations import Admin
from services.admin.publishing import Publisher
from services.admin.state import bank_book, connect, registry
from services.shared.errors import UsageError
from services.shared.schemas import BankConfigured, BankPolicy, describe


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``eraser bank`` and its actions."""
    bank = commands.add_parser("bank", help="show or change bank policies")
    banks = bank.add_subparsers(required=True, metavar="ACTION")
    banks.add_parser("list", help="every bank with entries or a policy").set_defaults(
        command=_bank_list
    )
    configure = banks.add_parser("set", help="change a bank's policy (unset fields: unchanged)")
    configure.add_argument("name", type=bank_name)
    _policy_flags(configure)
    configure.add_argument("--description", help="what the bank holds and who feeds it")
    add_who(configure)
    configure.set_defaults(command=_bank_set)
    reset = banks.add_parser("reset", help="drop a bank's published policy")
    reset.add_argument("name", type=bank_name)
    add_who(reset)
    reset.set_defaults(command=_bank_reset)


def _policy_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per BankPolicy field, each defaulting to "leave as it is"."""
    parser.add_argument("--pdq-threshold", type=int, help="PDQ match distance (0-35)")
    parser.add_argument("--auto-threshold", type=int, help="act unreviewed at or under (0-35)")
    parser.add_argument("--action", choices=("remove", "hide", "review"))
    parser.add_argument("--quality-floor", type=int, help="minimum PDQ quality (0-100)")
    parser.add_argument("--embedding-threshold", type=float, help="embedding cosine to match")
    parser.add_argument(
        "--agreement-pdq-threshold", type=int, help="PDQ distance for an agreeing match (0-128)"
    )
    parser.add_argument(
        "--agreement-embedding-threshold", type=float, help="cosine for an agreeing match"
    )
    parser.add_argument(
        "--keypoint-threshold", type=int, help="keypoints in geometric agreement to match (1-256)"
    )
    parser.add_argument(
        "--agreement-keypoint-threshold",
        type=int,
        help="fewer keypoints that match with an agreeing embedding (1-256)",
    )
    parser.add_argument(
        "--reviewers", type=int, choices=(1, 2), help="reviewers who must agree on a review item"
    )
    parser.add_argument(
        "--vpdq-match-percent",
        type=float,
        help="share (%%) of a video upload's frames that must match a registered video (0-100)",
    )
    enabled = parser.add_mutually_exclusive_group()
    enabled.add_argument("--enabled", dest="enabled", action="store_const", const=True)
    enabled.add_argument(
        "--disabled",
        dest="enabled",
        action="store_const",
        const=False,
        help="neither match nor act",
    )
    parser.add_argument(
        "--negative",
        action=argparse.BooleanOptionalAction,
        help="known false positives: a match vetoes every action",
    )
    parser.add_argument(
        "--faces",
        action=argparse.BooleanOptionalAction,
        help="hold faces (biometric data; with consent) and search uploads for them",
    )
    parser.add_argument("--face-threshold", type=float, help="face cosine to match (0-1)")
    parser.add_argument(
        "--face-agreement", type=int, help="a subject's faces an upload's face must match"
    )


def _bank_set(args: argparse.Namespace) -> int:
    kafka, topics = connect()
    book = bank_book(kafka, topics)
    published = next((c for c in book.configured() if c.bank == args.name), None)
    changes = {
        name: getattr(args, name)
        for name in BankPolicy.model_fields
        if getattr(args, name) is not None
    }
    description = args.description
    if description is None:
        description = published.description if published else ""
    try:
        configured = BankConfigured(
            bank=args.name,
            description=description,
            **{**book.for_bank(args.name).model_dump(), **changes},
        )
    except ValidationError as error:
        raise UsageError(f"invalid policy: {describe(error)}") from None
    publisher = Publisher(kafka, topics)
    try:
        Admin(publisher, None, args.actor).set_bank(configured, args.reason)
    finally:
        publisher.close()
    print(configured.model_dump_json())
    return 0


def _bank_reset(args: argparse.Namespace) -> int:
    kafka, topics = connect()
    if all(c.bank != args.name for c in bank_book(kafka, topics).configured()):
        raise UsageError(f"bank {args.name!r} has no published policy (`eraser bank list`)")
    publisher = Publisher(kafka, topics)
    try:
        Admin(publisher, None, args.actor).reset_bank(args.name, args.reason)
    finally:
        publisher.close()
    return 0


def _bank_list(args: argparse.Namespace) -> int:
    kafka, topics = connect()
    book, view = bank_book(kafka, topics), registry(kafka, topics)
    counts = view.banks()
    for name in sorted(set(counts) | {c.bank for c in book.configured()}):
        policy = book.for_bank(name).model_dump()
        print(f"{name}\t{counts.get(name, 0)} entries\t{json.dumps(policy)}")
    return 0
