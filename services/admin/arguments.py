"""Command-line arguments the administration sub-commands share: who acts, why, on which bank."""

from __future__ import annotations

import argparse
import getpass
import os

from pydantic import TypeAdapter, ValidationError

from services.shared.schemas import BankName

_BANK_NAME: TypeAdapter[str] = TypeAdapter(BankName)


def bank_name(value: str) -> str:
    """An argparse type: a valid bank name (the schema's rule), or a usage error saying why."""
    try:
        return _BANK_NAME.validate_python(value)
    except ValidationError:
        raise argparse.ArgumentTypeError(
            "a bank is lower-case letters, digits, '_', '.' or '-' (at most 64)"
        ) from None


def add_who(parser: argparse.ArgumentParser) -> None:
    """Add ``--reason`` and ``--actor``, which every change records."""
    parser.add_argument("--reason", default="", help="why (a request reference; no personal data)")
    parser.add_argument(
        "--actor",
        default=os.environ.get("ERASER_ACTOR") or getpass.getuser(),
        help="who is making the change (default: ERASER_ACTOR or login name)",
    )
