import json

import pytest

from services.admin.formats import FORMATS, entry_id_for, parse, serialise
from services.shared.schemas import EntryRegistered, Signals

P1, P2 = "a" * 64, "0123456789abcdef" * 4
MD5, SHA = "b" * 32, "c" * 64

ENTRIES = [
    EntryRegistered(
        entry_id="e-1",
        bank="kids",
        signals=Signals(pdq=[P1, P2], md5=MD5, sha256=SHA),
        labels={"batch": "b1", "note": 'two words = tricky; ok,"quoted"'},
    ),
    EntryRegistered(entry_id="e 2/with spaces", bank="kids", signals=Signals(md5=MD5)),
    EntryRegistered(entry_id="e-3", bank="kids", signals=Signals(pdq=[P2]), labels={"source": "x"}),
]


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_then_import_round_trips_with_nothing_lost(fmt):
    text = serialise(ENTRIES, fmt)
    parsed = parse(text, fmt, "kids")
    assert parsed.problems == []
    assert sorted(parsed.entries, key=lambda e: e.entry_id) == sorted(
        ENTRIES, key=lambda e: e.entry_id
    )


def test_plain_hma_lines_each_become_an_entry_with_a_stable_id():
    parsed = parse(
        f"# a partner list\npdq {P1}\n\nphoto_md5 {MD5}\nvideo_md5 {MD5.upper()}\n",
        "hma",
        "partner",
    )
    assert [e.signals for e in parsed.entries] == [
        Signals(pdq=[P1]),
        Signals(md5=MD5),
        Signals(md5=MD5),
    ]
    assert parsed.entries[0].entry_id == entry_id_for("partner", Signals(pdq=[P1]))
    assert parse(f"pdq {P1}\n", "hma", "partner").entries[0].entry_id == parsed.entries[0].entry_id


def test_every_invalid_line_is_named():
    text = f"pdq {P1}\npdq nothex\nsha1 {MD5}\npdq\nmd5 {MD5} id k-without-value\npdq {P2}\n"
    parsed = parse(text, "hma", "kids")
    assert [p.line for p in parsed.problems] == [2, 3, 4, 5]
    assert "pdq" in str(parsed.problems[0]) and str(parsed.problems[0]).startswith("line 2:")
    assert len(parsed.entries) == 2


def test_csv_needs_a_signal_column_and_reports_bad_rows():
    assert parse("entry_id,name\ne1,x\n", "csv", "kids").problems[0].line == 1
    text = f"pdq,md5,source\n{P1},,partner\nzz,{MD5},partner\n,,partner\n{P2},{MD5},a,extra\n"
    parsed = parse(text, "csv", "kids")
    assert [p.line for p in parsed.problems] == [3, 4, 5]
    assert parsed.entries[0].labels == {"source": "partner"}


def test_json_must_be_a_list_of_entries():
    assert parse("{}", "json", "kids").problems[0].reason == "expected a JSON list of entries"
    assert "not JSON" in parse("[", "json", "kids").problems[0].reason
    items = [{"signals": {"pdq": [P1]}}, {"nope": 1}, {"signals": {"md5": "short"}}]
    parsed = parse(json.dumps(items), "json", "kids")
    assert [p.line for p in parsed.problems] == [2, 3]
    assert len(parsed.entries) == 1
