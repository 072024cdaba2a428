import json

import numpy as np
import pytest

from services.admin.formats import (
    embeddings_left_out,
    entry_id_for,
    parse,
    serialise,
)
from services.shared.schemas import EntryRegistered, Signals, embedding_to_text

P1, P2 = "a" * 64, "0123456789abcdef" * 4
MD5, SHA = "b" * 32, "c" * 64
E1 = embedding_to_text(np.full(1280, 1280**-0.5))
E2 = embedding_to_text(np.linspace(-1, 1, 1280) / np.linalg.norm(np.linspace(-1, 1, 1280)))

ENTRIES = [
    EntryRegistered(
        entry_id="e-1",
        bank="kids",
        signals=Signals(pdq=[P1, P2], md5=MD5, sha256=SHA, embedding=[E1, E2]),
        labels={"batch": "b1", "note": 'two words = tricky; ok,"quoted"', "empty": ""},
    ),
    EntryRegistered(entry_id="e 2/with spaces", bank="kids", signals=Signals(md5=MD5)),
    EntryRegistered(entry_id="e-3", bank="kids", signals=Signals(pdq=[P2]), labels={"source": "x"}),
    EntryRegistered(
        entry_id="e-4", bank="kids", signals=Signals(embedding=[E1]), labels={"kind": ""}
    ),
]


def by_id(entries):
    return sorted(entries, key=lambda e: e.entry_id)


def test_json_export_then_import_round_trips_everything_embeddings_and_empty_labels_too():
    parsed = parse(serialise(ENTRIES, "json"), "json", "kids")
    assert parsed.problems == []
    assert by_id(parsed.entries) == by_id(ENTRIES)


@pytest.mark.parametrize("fmt", ["hma", "csv"])
def test_hash_list_formats_round_trip_all_but_embeddings(fmt):
    parsed = parse(serialise(ENTRIES, fmt), fmt, "kids")
    assert parsed.problems == []
    without_embeddings = [
        e.model_copy(update={"signals": e.signals.model_copy(update={"embedding": []})})
        for e in ENTRIES
        if e.signals.pdq or e.signals.md5 or e.signals.sha256
    ]
    assert by_id(parsed.entries) == by_id(without_embeddings)
    assert parsed.entries[0].labels["empty"] == ""


def test_an_export_that_leaves_embeddings_out_says_so():
    assert embeddings_left_out("json", 2) is None
    assert embeddings_left_out("hma", 0) is None
    warning = embeddings_left_out("csv", 2)
    assert warning.startswith("2 entries have image embeddings") and "--format json" in warning


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


def test_a_partners_empty_csv_cell_is_no_label_but_an_empty_label_in_the_labels_column_stays():
    text = f"pdq,source,labels\n{P1},,note= kind=x\n"
    (entry,) = parse(text, "csv", "kids").entries
    assert entry.labels == {"note": "", "kind": "x"}


def test_json_must_be_a_list_of_entries():
    assert parse("{}", "json", "kids").problems[0].reason == "expected a JSON list of entries"
    assert "not JSON" in parse("[", "json", "kids").problems[0].reason
    items = [{"signals": {"pdq": [P1]}}, {"nope": 1}, {"signals": {"md5": "short"}}]
    parsed = parse(json.dumps(items), "json", "kids")
    assert [p.line for p in parsed.problems] == [2, 3]
    assert str(parsed.problems[1]).startswith("item 3: md5")
    assert len(parsed.entries) == 1


@pytest.mark.parametrize(
    ("item", "named"),
    [
        ({"signals": {"pdq": [P1], "sha265": SHA}}, "'sha265'"),
        ({"signals": {"pdq": [P1]}, "label": {"a": "b"}}, "'label'"),
    ],
)
def test_json_keys_that_are_not_in_the_format_are_errors_naming_the_item(item, named):
    parsed = parse(json.dumps([{"signals": {"md5": MD5}}, item]), "json", "kids")
    (problem,) = parsed.problems
    assert str(problem).startswith("item 2: unknown key") and named in str(problem)
    assert len(parsed.entries) == 1


F1 = f"{P1},100,0.000"
F2 = f"{P2},87,0.200"
VIDEO = EntryRegistered(
    entry_id="v-1",
    bank="kids",
    signals=Signals(vpdq=[F1, F2], md5=MD5, sha256=SHA),
    labels={"kind": "video"},
)


@pytest.mark.parametrize("fmt", ["hma", "csv", "json"])
def test_registered_videos_round_trip_through_every_list_format(fmt):
    parsed = parse(serialise([VIDEO, ENTRIES[2]], fmt), fmt, "kids")
    assert parsed.problems == []
    assert by_id(parsed.entries) == by_id([VIDEO, ENTRIES[2]])


def test_hma_reads_python_threatexchanges_vpdq_signal_as_it_prints_it():
    # python-threatexchange writes json.dumps' spaces and 3 significant digits of the timestamp.
    signal = json.dumps([f"{P1.upper()},100,0.0", f"{P2},87,1.23e+02"])
    parsed = parse(f"vpdq {signal}\nvpdq {signal} v-9 source=hma\n", "hma", "partner")
    assert parsed.problems == []
    named, anonymous = parsed.entries  # entries with ids first, as for every signal
    assert anonymous.signals.vpdq == [F1, f"{P2},87,123.000"]
    assert (named.entry_id, named.labels) == ("v-9", {"source": "hma"})
    assert serialise([named], "hma") == f'vpdq ["{F1}","{P2},87,123.000"] v-9 source=hma\n'


def test_hma_names_a_vpdq_line_it_cannot_read():
    parsed = parse(f'vpdq ["{P1},100"]\nvpdq [1, 2]\nvpdq {{"a": 1}}\npdq {P1}\n', "hma", "k")
    assert [p.line for p in parsed.problems] == [1, 2, 3]
    assert "vPDQ signal" in parsed.problems[0].reason
    assert len(parsed.entries) == 1


def test_vpdq_hash_files_are_read_as_the_vpdq_tool_writes_them():
    text = f"0,100,{P1},0.000\n5,87,{P2},0.200\n"
    (entry,) = parse(text, "vpdq", "partner").entries
    assert entry.signals.vpdq == [F1, F2]
    assert entry.entry_id == entry_id_for("partner", entry.signals)
    assert serialise([entry], "vpdq").splitlines()[1:] == [
        f"0,100,{P1},0.000",
        f"1,87,{P2},0.200",  # registrations keep no frame numbers: files number frames in order
    ]


def test_several_videos_in_one_vpdq_stream_keep_their_ids_and_bad_lines_are_named():
    parsed = parse(
        serialise([VIDEO, VIDEO.model_copy(update={"entry_id": "v 2"})], "vpdq"), "vpdq", "kids"
    )
    assert [e.entry_id for e in parsed.entries] == ["v-1", "v 2"]
    assert all(e.signals.vpdq == [F1, F2] for e in parsed.entries)
    broken = parse(f"0,100,{P1},0.000\n1,100,{P1}\nx,1,{P1},0.1\n2,101,{P1},0.2\n", "vpdq", "k")
    assert [p.line for p in broken.problems] == [2, 3, 4]
