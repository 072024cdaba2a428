"""Hash-list formats for import and export: HMA text, CSV and JSON.

Hash lists come from partner programmes (PDQ and MD5 lists, never images), from other platforms'
HMA deployments, and from eraser itself. Parsing is all-or-nothing by default: every problem is
reported with its line number, and nothing is imported unless the caller chooses to skip them.

- ``hma``: python-threatexchange / HMA text, one ``<signal_type> <value>`` per line (``pdq``,
  ``photo_md5``/``video_md5``/``md5``, ``sha256``). eraser adds two optional trailing fields so a
  round trip loses nothing: the entry id, then labels as ``key=value`` (percent-encoded). Lines
  with the same entry id are one entry; a line without one is an entry of its own.
- ``csv``: a header row; columns ``entry_id`` (optional), ``pdq`` (space-separated hashes), ``md5``,
  ``sha256``; every other column is a label.
- ``json``: a list of ``{"entry_id"?, "signals": {"pdq": [...], "md5", "sha256"}, "labels"?}``.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, unquote

from pydantic import ValidationError

from services.shared.schemas import EntryRegistered, Signals, describe

Format = Literal["hma", "csv", "json"]
FORMATS: tuple[Format, ...] = ("hma", "csv", "json")
_HMA_SIGNALS = {
    "pdq": "pdq",
    "photo_md5": "md5",
    "video_md5": "md5",
    "md5": "md5",
    "sha256": "sha256",
}
_CSV_SIGNALS = ("pdq", "md5", "sha256")


@dataclass(frozen=True)
class Problem:
    """An input line that could not be read, and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class Parsed:
    """Entries read from a hash list, and the lines that were not."""

    entries: list[EntryRegistered] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


@dataclass
class _Draft:
    line: int
    entry_id: str | None
    pdq: list[str] = field(default_factory=list)
    md5: str | None = None
    sha256: str | None = None
    labels: dict[str, str] = field(default_factory=dict)


def parse(text: str, fmt: Format, bank: str) -> Parsed:
    """Read a hash list into registrations for ``bank``."""
    readers = {"hma": _read_hma, "csv": _read_csv, "json": _read_json}
    parsed = Parsed()
    try:
        drafts = readers[fmt](text, parsed.problems)
    except ValueError as error:  # the document as a whole is unreadable
        parsed.problems.append(Problem(1, str(error)))
        return parsed
    for draft in drafts:
        try:
            parsed.entries.append(_registration(draft, bank))
        except ValidationError as error:
            parsed.problems.append(Problem(draft.line, describe(error)))
    parsed.problems.sort(key=lambda problem: problem.line)
    return parsed


def serialise(entries: Iterable[EntryRegistered], fmt: Format) -> str:
    """Write entries in ``fmt``; parsing the result gives the same entries back."""
    ordered = sorted(entries, key=lambda e: e.entry_id)
    writers = {"hma": _write_hma, "csv": _write_csv, "json": _write_json}
    return writers[fmt](ordered)


def entry_id_for(bank: str, signals: Signals) -> str:
    """A stable entry id for an imported entry that has none: the same hashes, the same id."""
    key = "|".join([bank, *sorted(signals.pdq), signals.md5 or "", signals.sha256 or ""])
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"eraser:import:{key}"))


def _registration(draft: _Draft, bank: str) -> EntryRegistered:
    signals = Signals(pdq=draft.pdq, md5=draft.md5, sha256=draft.sha256)
    return EntryRegistered(
        entry_id=draft.entry_id or entry_id_for(bank, signals),
        bank=bank,
        signals=signals,
        labels=draft.labels,
    )


def _read_hma(text: str, problems: list[Problem]) -> list[_Draft]:
    drafts: dict[str, _Draft] = {}
    anonymous: list[_Draft] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        signal = _HMA_SIGNALS.get(fields[0].lower())
        if signal is None or len(fields) < 2:
            problems.append(
                Problem(
                    number,
                    f"expected '<signal_type> <value>', signal types: {', '.join(_HMA_SIGNALS)}",
                )
            )
            continue
        try:
            labels = dict(_label(token) for token in fields[3:])
        except ValueError as error:
            problems.append(Problem(number, str(error)))
            continue
        entry_id = unquote(fields[2]) if len(fields) > 2 else None
        draft = (
            drafts.setdefault(entry_id, _Draft(number, entry_id))
            if entry_id
            else _Draft(number, None)
        )
        if entry_id is None:
            anonymous.append(draft)
        _add_signal(draft, signal, fields[1])
        draft.labels.update(labels)
    return [*drafts.values(), *anonymous]


def _label(token: str) -> tuple[str, str]:
    key, separator, value = token.partition("=")
    if not separator or not key:
        raise ValueError(f"expected a label as key=value, got {token[:40]!r}")
    return unquote(key), unquote(value)


def _add_signal(draft: _Draft, signal: str, value: str) -> None:
    if signal == "pdq":
        draft.pdq.append(value)
    elif signal == "md5":
        draft.md5 = value
    else:
        draft.sha256 = value


def _read_csv(text: str, problems: list[Problem]) -> list[_Draft]:
    reader = csv.DictReader(io.StringIO(text))
    columns = reader.fieldnames or []
    if not set(columns) & set(_CSV_SIGNALS):
        raise ValueError("the header needs at least one of the columns pdq, md5, sha256")
    drafts = []
    for row in reader:
        number = reader.line_num
        if None in row:
            problems.append(Problem(number, "more fields than the header has"))
            continue
        draft = _Draft(number, (row.get("entry_id") or "").strip() or None)
        draft.pdq = (row.get("pdq") or "").split()
        draft.md5 = (row.get("md5") or "").strip() or None
        draft.sha256 = (row.get("sha256") or "").strip() or None
        draft.labels = {
            k: v
            for k, v in row.items()
            if k not in ("entry_id", *_CSV_SIGNALS) and v not in (None, "")
        }
        drafts.append(draft)
    return drafts


def _read_json(text: str, problems: list[Problem]) -> list[_Draft]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(items, list):
        raise ValueError("expected a JSON list of entries")
    drafts = []
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict) or not isinstance(item.get("signals"), dict):
            problems.append(Problem(number, "expected an object with 'signals' (item number)"))
            continue
        signals: dict[str, Any] = item["signals"]
        draft = _Draft(number, item.get("entry_id"), labels=item.get("labels") or {})
        draft.pdq = signals.get("pdq") or []
        draft.md5, draft.sha256 = signals.get("md5"), signals.get("sha256")
        drafts.append(draft)
    return drafts


def _write_hma(entries: list[EntryRegistered]) -> str:
    lines = []
    for entry in entries:
        tail = " ".join(
            [
                quote(entry.entry_id, safe=""),
                *(
                    f"{quote(k, safe='')}={quote(v, safe='')}"
                    for k, v in sorted(entry.labels.items())
                ),
            ]
        )
        signals = entry.signals
        lines += [f"pdq {code} {tail}" for code in signals.pdq]
        lines += [f"photo_md5 {signals.md5} {tail}"] if signals.md5 else []
        lines += [f"sha256 {signals.sha256} {tail}"] if signals.sha256 else []
    return "".join(f"{line}\n" for line in lines)


def _write_csv(entries: list[EntryRegistered]) -> str:
    label_keys = sorted({key for entry in entries for key in entry.labels})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["entry_id", *_CSV_SIGNALS, *label_keys])
    for entry in entries:
        signals = entry.signals
        writer.writerow(
            [
                entry.entry_id,
                " ".join(signals.pdq),
                signals.md5 or "",
                signals.sha256 or "",
                *(entry.labels.get(k, "") for k in label_keys),
            ]
        )
    return buffer.getvalue()


def _write_json(entries: list[EntryRegistered]) -> str:
    items = [
        {
            "entry_id": e.entry_id,
            "signals": e.signals.model_dump(exclude_none=True),
            "labels": e.labels,
        }
        for e in entries
    ]
    return json.dumps(items, indent=1) + "\n"
