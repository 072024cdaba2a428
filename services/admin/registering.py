"""``eraser register``: protected photographs in, their hashes (and, with consent, faces) out.

Every file is read, hashed and checked before Kafka is contacted, so nothing is ever half
registered: a missing file, a file that is not an image, or (with ``--faces``) a photograph with
no face or with several faces and none picked stops the command with one line per file. Faces are
biometric data: only a bank whose policy holds faces accepts them, only the face the registrant
picks is kept (as an embedding, never a crop), and all the entries of one command share a subject
id, the child's.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

from services.admin.arguments import add_who, bank_name
from services.admin.operations import Admin
from services.admin.progress import Progress
from services.admin.publishing import Publisher
from services.admin.state import bank_book, connect
from services.cases.operations import open_case
from services.ingest.faces import FaceModels
from services.ingest.signals import SignalModels
from services.registrar import (
    MEDIA_SUFFIXES,
    Measured,
    MeasuredVideo,
    face_entries,
    image_paths,
    measure_media,
    preview,
    registration,
)
from services.shared.errors import PoisonError, UsageError
from services.shared.schemas import EntryRegistered, now


def add_command(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``eraser register`` to the ``eraser`` parser."""
    register = commands.add_parser(
        "register", help="hash images and videos and publish their registrations"
    )
    register.add_argument("--bank", required=True, type=bank_name, help="bank to register into")
    register.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    register.add_argument(
        "--faces",
        action="store_true",
        help="also register the face in each photo (the bank must hold faces; with consent)",
    )
    register.add_argument(
        "--face", type=int, metavar="N", help="with one group photo: the child's face, from 1"
    )
    register.add_argument(
        "--subject", help="the child's subject id, to add photos to (default: a new one)"
    )
    register.add_argument(
        "--preview",
        type=Path,
        metavar="DIR",
        help="write each photo with its faces numbered to DIR, and register nothing",
    )
    register.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help="images, videos or folders"
    )
    add_who(register)
    register.set_defaults(command=_register)


def _register(args: argparse.Namespace) -> int:
    paths = _image_files(args.paths)
    if args.preview:
        return _preview(paths, args.preview)
    if args.face is not None and (not args.faces or len(paths) != 1):
        raise UsageError("--face N picks a face in one photo registered with --faces")
    labels = dict(label.split("=", 1) for label in args.label if "=" in label)
    folders = any(path.is_dir() for path in args.paths)
    measured = _measure(
        paths, args.faces, args.face, Progress(len(paths), sys.stderr) if folders else None
    )
    kafka, topics = connect()
    policy = bank_book(kafka, topics).for_bank(args.bank)
    if args.faces and not policy.faces:
        raise UsageError(
            f"bank {args.bank!r} does not hold faces: with the guardians' consent, "
            f"`eraser bank set {args.bank} --faces` first (docs/privacy.md)"
        )
    subject = args.subject or (str(uuid.uuid4()) if args.faces else None)
    entries: list[tuple[str, EntryRegistered]] = []
    for path, image in measured:
        hashed = registration(image, args.bank, policy.quality_floor, labels, subject)
        if hashed.warning:
            print(f"warning\t{path}\t{hashed.warning}", file=sys.stderr)
        entries.append((str(path), hashed.registration))
        if subject is not None and isinstance(image, Measured):
            entries += [
                (f"{path}\tface", e) for e in face_entries(image, args.bank, subject, labels)
            ]
    publisher = Publisher(kafka, topics)
    try:
        # Without the registry: the ids are derived from the bank, so none is another bank's.
        Admin(publisher, None, args.actor).register([e for _, e in entries], args.reason)
        ids = [entry.entry_id for _, entry in entries]
        case = open_case(publisher.case, publisher.audit, args.actor, args.bank, ids, now())
    finally:
        publisher.close()
    if subject is not None:
        print(f"subject\t{subject}")
    for where, entry in entries:
        print(f"{entry.entry_id}\t{where}")
    print(
        f"case {case[0]}, PIN {case[1]}: give both to the person who asked; the PIN is shown "
        "only now (they check the case, or withdraw, at /case on the admin service)",
        file=sys.stderr,
    )
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
    paths: list[Path], faces: bool, face: int | None, progress: Progress | None
) -> list[tuple[Path, Measured | MeasuredVideo]]:
    """Each file's digests and signals, and with ``faces`` its chosen face.

    Raises:
        UsageError: some file is unreadable, neither an image nor a video, or has no face to
            register (each one named); nothing is kept.
    """
    models = SignalModels.load(faces=1 if faces else 0)
    measured, problems = [], []
    for path in paths:
        try:
            measured.append((path, measure_media(path.read_bytes(), models, faces, face)))
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


def _preview(paths: list[Path], folder: Path) -> int:
    """Write each photo with its faces numbered into ``folder``; nothing is registered."""
    folder.mkdir(parents=True, exist_ok=True)
    models = FaceModels()
    for path in paths:
        target = folder / f"{path.stem}.faces.png"
        try:
            count = preview(path.read_bytes(), models, target)
        except (OSError, PoisonError) as error:
            why = error.reason if isinstance(error, PoisonError) else error.strerror or "unreadable"
            raise UsageError(f"{path}: {why}") from None
        print(f"{path}\t{count} faces\t{target}")
    return 0
