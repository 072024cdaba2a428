"""Hash-list formats for import and export: HMA text, CSV, JSON and vpdq hash files.

Hash lists come from partner programmes (PDQ and MD5 lists, never images), from other platforms'
HMA deployments, and from eraser itself. Parsing is all-or-nothing by default: every problem is
reported with its line (or, for JSON, item) number, and nothing is imported unless the caller
chooses to skip them.

- ``json``: a list of ``{"entry_id"?, "signals": {"pdq"?, "md5"?, "sha256"?, "embedding"?,
  "keypoints"?, "face"?}, "labels"?, "subject"?}``; an unknown key is an error. The lossless
  format: export then import gives back every entry exactly (faces only when asked for).
- ``hma``: python-threatexchange / HMA text, one ``<signal_type> <value>`` per line (``pdq``,
  ``photo_md5``/``video_md5``/``md5``, ``sha256``, and ``vpdq`` whose value is
  python-threatexchange's vPDQ signal, a JSON list of ``pdqhex,quality,timestamp``). eraser adds
  two optional trailing fields: the entry id, then labels as ``key=value`` (percent-encoded).
  Lines with the same entry id are one entry; a line without one is an entry of its own.
- ``csv``: a header row; columns ``entry_id`` (optional), ``pdq`` (space-separated hashes), ``md5``,
  ``sha256``, ``labels`` (space-separated percent-encoded ``key=value``, as eraser writes them: an
  empty value stays an empty label), ``vpdq`` (space-separated ``pdqhex,quality,timestamp``); any
  other column is a label too, where an empty cell means no label.
- ``vpdq``: the vpdq tool's hash file, ``frameNumber,quality,pdqhex,timestamp`` per line: one
  video. eraser writes several videos as such files each after a ``# entry <entry_id>`` line
  (``eraser export --out DIR`` writes one plain file per video instead). Registrations keep no
  frame numbers (python-threatexchange's form has none), so written files number frames in order.

A registered video's ``frame_views`` (eraser's own views of its frames) travel in JSON only: the
vPDQ forms (HMA ``vpdq`` lines, CSV's ``vpdq`` column, vpdq files) carry the frames alone, so a
video moved through them matches copies with added bars or corner overlays less often.

HMA and CSV are hash-list formats, what other programmes read: they carry hashes, ids and labels
but not image embeddings (model-specific vectors of 3.4 KB each, of no use to another system). An
export in them warns when it leaves embeddings out (:func:`embeddings_left_out`), and entries with
no signal but embeddings are left out whole; use JSON to move a bank between eraser deployments.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, unquote

from pydantic import ValidationError

from services.shared import vpdq
from services.shared.schemas import EntryRegistered, Signals, describe

Format = Literal["hma", "csv", "json", "vpdq"]
FORMATS: tuple[Format, ...] = ("hma", "csv", "json", "vpdq")
_HMA_SIGNALS = {
    "pdq": "pdq",
    "photo_md5": "md5",
    "video_md5": "md5",
    "md5": "md5",
    "sha256": "sha256",
    "vpdq": "vpdq",
}
_CSV_SIGNALS = ("pdq", "md5", "sha256", "vpdq")
_CSV_COLUMNS = ("entry_id", "pdq", "md5", "sha256", "labels", "vpdq")
_VPDQ_ENTRY = "# entry "
_JSON_KEYS = frozenset({"entry_id", "signals", "labels", "subject"})
_SIGNAL_KEYS = frozenset(Signals.model_fields)


@dataclass(frozen=True)
class Problem:
    """An input line (or JSON item) that could not be read, and why."""

    line: int
    reason: str
    unit: str = "line"

    def __str__(self) -> str:
        return f"{self.unit} {self.line}: {self.reason}"


@dataclass
class Parsed:
    """Entries read from a hash list, each with its line, and the lines that were not read."""

    items: list[tuple[int, EntryRegistered]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def entries(self) -> list[EntryRegistered]:
        """The entries alone."""
        return [entry for _, entry in self.items]


@dataclass
class _Draft:
    line: int
    entry_id: Any
    signals: dict[str, Any] = field(default_factory=dict)
    labels: Any = field(default_factory=dict)
    subject: Any = None


def parse(text: str, fmt: Format, bank: str) -> Parsed:
    """Read a hash list into registrations for ``bank``."""
    readers = {"hma": _read_hma, "csv": _read_csv, "json": _read_json, "vpdq": _read_vpdq}
    parsed = Parsed()
    try:
        drafts = readers[fmt](text, parsed.problems)
    except ValueError as error:  # the document as a whole is unreadable
        parsed.problems.append(Problem(1, str(error)))
        return parsed
    for draft in drafts:
        try:
            parsed.items.append((draft.line, _registration(draft, bank)))
        except ValidationError as error:
            parsed.problems.append(Problem(draft.line, describe(error), unit_of(fmt)))
    parsed.problems.sort(key=lambda problem: problem.line)
    return parsed


def unit_of(fmt: Format) -> str:
    """What a problem's number counts in ``fmt``: lines, or JSON list items."""
    return "item" if fmt == "json" else "line"


def write(entries: Iterable[EntryRegistered], fmt: Format) -> Iterator[str]:
    """Write entries in ``fmt``, a piece at a time; parsing the result gives them back."""
    writers = {"hma": _write_hma, "csv": _write_csv, "json": _write_json, "vpdq": _write_vpdq}
    return writers[fmt](entries)


def serialise(entries: Iterable[EntryRegistered], fmt: Format) -> str:
    """Write entries in ``fmt`` as one string."""
    return "".join(write(entries, fmt))


def embeddings_left_out(fmt: Format, with_embeddings: int) -> str | None:
    """The warning for an export in ``fmt`` that leaves something out (embeddings, photos).

    ``with_embeddings`` entries of the bank have embeddings.
    """
    if fmt == "vpdq":
        return "vpdq hash files hold videos only: photo entries are left out"
    if fmt == "json" or not with_embeddings:
        return None
    return (
        f"{with_embeddings} entries have image embeddings, which the {fmt} format does not carry "
        "(entries with nothing else are left out); export --format json keeps everything"
    )


def entry_id_for(bank: str, signals: Signals) -> str:
    """A stable entry id for an imported entry that has none: the same hashes, the same id."""
    key = "|".join([bank, *sorted(signals.pdq), signals.md5 or "", signals.sha256 or ""])
    if signals.face:  # (only for these: the ids of photo entries stay what they were)
        key += "|" + signals.face
    if signals.vpdq:
        key += "|" + "|".join(signals.vpdq)
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"eraser:import:{key}"))


def _registration(draft: _Draft, bank: str) -> EntryRegistered:
    signals = Signals.model_validate(draft.signals)
    return EntryRegistered(
        entry_id=entry_id_for(bank, signals) if draft.entry_id is None else draft.entry_id,
        bank=bank,
        signals=signals,
        labels=draft.labels,
        subject=draft.subject,
    )


def _read_hma(text: str, problems: list[Problem]) -> list[_Draft]:
    drafts: dict[str, _Draft] = {}
    anonymous: list[_Draft] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            fields = _hma_fields(line)
        except ValueError as error:
            problems.append(Problem(number, str(error)))
            continue
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
            labels = _labels(fields[3:])
        except ValueError as error:
            problems.append(Problem(number, str(error)))
            continue
        entry_id = unquote(fields[2]) if len(fields) > 2 else None
        if entry_id is None:
            draft = _Draft(number, None)
            anonymous.append(draft)
        else:
            draft = drafts.setdefault(entry_id, _Draft(number, entry_id))
        _add_signal(draft, signal, fields[1])
        draft.labels.update(labels)
    return [*drafts.values(), *anonymous]


def _hma_fields(line: str) -> list[str]:
    """A line's fields; a vpdq signal's JSON value is one field, whatever spaces it holds."""
    signal, _, rest = line.partition(" ")
    if signal.lower() != "vpdq" or not rest.strip():
        return line.split()
    value = rest.strip()
    try:
        features, end = json.JSONDecoder().raw_decode(value)
        checked = vpdq.from_signal(json.dumps(features))
    except ValueError as error:
        raise ValueError(f"a vpdq value is python-threatexchange's vPDQ signal: {error}") from None
    return [signal, vpdq.to_signal(checked), *value[end:].split()]


def _labels(tokens: Iterable[str]) -> dict[str, str]:
    return dict(_label(token) for token in tokens)


def _label(token: str) -> tuple[str, str]:
    key, separator, value = token.partition("=")
    if not separator or not key:
        raise ValueError(f"expected a label as key=value, got {token[:40]!r}")
    return unquote(key), unquote(value)


def _add_signal(draft: _Draft, signal: str, value: str) -> None:
    if signal == "pdq":
        draft.signals.setdefault("pdq", []).append(value)
    elif signal == "vpdq":
        draft.signals["vpdq"] = [feature.compact() for feature in vpdq.from_signal(value)]
    else:
        draft.signals[signal] = value


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
        try:
            drafts.append(_csv_draft(number, row))
        except ValueError as error:
            problems.append(Problem(number, str(error)))
    return drafts


def _csv_draft(number: int, row: dict[str, str]) -> _Draft:
    draft = _Draft(number, (row.get("entry_id") or "").strip() or None)
    pdq = (row.get("pdq") or "").split()
    draft.signals = {"pdq": pdq} if pdq else {}
    if frames := (row.get("vpdq") or "").split():
        draft.signals["vpdq"] = frames
    for digest in ("md5", "sha256"):
        if value := (row.get(digest) or "").strip():
            draft.signals[digest] = value
    draft.labels = _labels((row.get("labels") or "").split())
    # A partner's own label columns: an empty cell there says nothing, so it is no label.
    draft.labels.update({k: v for k, v in row.items() if k not in _CSV_COLUMNS and v})
    return draft


def _read_json(text: str, problems: list[Problem]) -> list[_Draft]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(items, list):
        raise ValueError("expected a JSON list of entries")
    drafts = []
    for number, item in enumerate(items, start=1):
        if reason := _json_shape_problem(item):
            problems.append(Problem(number, reason, "item"))
            continue
        drafts.append(
            _Draft(
                number,
                item.get("entry_id"),
                item["signals"],
                item.get("labels") or {},
                item.get("subject"),
            )
        )
    return drafts


def _json_shape_problem(item: Any) -> str | None:
    if not isinstance(item, dict) or not isinstance(item.get("signals"), dict):
        return "expected an object with 'signals'"
    for keys, known in ((item, _JSON_KEYS), (item["signals"], _SIGNAL_KEYS)):
        unknown = sorted(str(key) for key in keys if key not in known)
        if unknown:  # a typo such as 'sha265' must not drop a signal unnoticed
            return f"unknown key {unknown[0][:40]!r} (known: {', '.join(sorted(known))})"
    return None


def _write_hma(entries: Iterable[EntryRegistered]) -> Iterator[str]:
    for entry in entries:
        tail = " ".join([quote(entry.entry_id, safe=""), *_label_tokens(entry.labels)])
        signals = entry.signals
        lines = [f"pdq {code} {tail}" for code in signals.pdq]
        if signals.vpdq:
            features = [vpdq.parse_compact(text) for text in signals.vpdq]
            lines.append(f"vpdq {vpdq.to_signal(features)} {tail}")
        lines += [f"photo_md5 {signals.md5} {tail}"] if signals.md5 else []
        lines += [f"sha256 {signals.sha256} {tail}"] if signals.sha256 else []
        yield "".join(f"{line}\n" for line in lines)


def _label_tokens(labels: dict[str, str]) -> list[str]:
    return [f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in sorted(labels.items())]


def _write_csv(entries: Iterable[EntryRegistered]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_CSV_COLUMNS)
    for entry in entries:
        signals = entry.signals
        if signals.pdq or signals.md5 or signals.sha256 or signals.vpdq:
            writer.writerow(
                [
                    entry.entry_id,
                    " ".join(signals.pdq),
                    signals.md5 or "",
                    signals.sha256 or "",
                    " ".join(_label_tokens(entry.labels)),
                    " ".join(signals.vpdq),
                ]
            )
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def _write_json(entries: Iterable[EntryRegistered]) -> Iterator[str]:
    separator = "[\n"
    for entry in entries:
        item = {
            "entry_id": entry.entry_id,
            "signals": entry.signals.model_dump(exclude_none=True, exclude_defaults=True),
            "labels": entry.labels,
            **({"subject": entry.subject} if entry.subject else {}),
        }
        yield separator + json.dumps(item)
        separator = ",\n"
    yield "[\n]\n" if separator == "[\n" else "\n]\n"


def _read_vpdq(text: str, problems: list[Problem]) -> list[_Draft]:
    """Read vpdq hash files: the lines after each ``# entry <id>`` line (or all) are a video."""
    drafts: list[_Draft] = []
    current: _Draft | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith(_VPDQ_ENTRY):
            current = _Draft(number, unquote(line[len(_VPDQ_ENTRY) :].strip()) or None)
            drafts.append(current)
            continue
        if not line or line.startswith("#"):
            continue
        try:
            _, feature = vpdq.parse_tool_line(line)
        except ValueError as error:
            problems.append(Problem(number, str(error)))
            continue
        if current is None:
            current = _Draft(number, None)
            drafts.append(current)
        current.signals.setdefault("vpdq", []).append(feature.compact())
    return [draft for draft in drafts if draft.signals]


def _write_vpdq(entries: Iterable[EntryRegistered]) -> Iterator[str]:
    for entry in entries:
        if entry.signals.vpdq:
            yield f"{_VPDQ_ENTRY}{quote(entry.entry_id, safe='')}\n" + vpdq_file(entry)


def vpdq_file(entry: EntryRegistered) -> str:
    """A registered video's frames as the vpdq tool writes them (frames numbered in order)."""
    features = (vpdq.parse_compact(text) for text in entry.signals.vpdq)
    return "".join(f"{vpdq.tool_line(n, feature)}\n" for n, feature in enumerate(features))
