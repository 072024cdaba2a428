import asyncio
import json
import logging
import threading
import tracemalloc
import uuid

import numpy as np
import pytest
from fastapi.testclient import TestClient
from kafka.errors import KafkaTimeoutError
from pydantic import SecretStr

from services.admin.api import create_app
from services.admin.audit import AuditTail
from services.admin.context import AdminContext
from services.admin.export import current_entries
from services.admin.operations import Admin
from services.admin.view import RegistryView
from services.ingest.signals import SignalModels
from services.shared.banks import BankBook
from services.shared.config import PolicySettings
from services.shared.schemas import EntryRegistered, Signals, embedding_to_text, encode, new_event
from tests.images import photo_bytes
from tests.records import record
from tests.videos import clip

TOKEN = "regulator-token-0123456789"
P1, P2 = "a" * 64, "b" * 64
TEXT = {"Content-Type": "text/plain"}


class FakePublisher:
    """Publishes to an in-memory registry log that the view follows, as Kafka would."""

    def __init__(self, view, audit_tail=None, fail_on=None):
        self.view = view
        self.audit_tail = audit_tail
        self.fail_on = fail_on
        self.audit_log = []
        self.banks = []
        self.calls = []
        self.log = []

    def register(self, registrations):
        self._call("register")
        for r in registrations:
            self._append(r.entry_id, encode(new_event(r, id=str(uuid.uuid4()), source="t")))
        return len(registrations)

    def withdraw(self, entry_ids):
        self._call("withdraw")
        ids = list(entry_ids)
        for entry_id in ids:
            self._append(entry_id, None)
        return len(ids)

    def set_bank(self, configured):
        self._call("set_bank")
        self.banks.append(configured)

    def reset_bank(self, bank):
        self._call("reset_bank")
        self.banks.append(bank)

    def audit(self, records):
        self.calls.append("audit")
        for audit_record in records:
            self.audit_log.append(audit_record)
            if self.audit_tail is not None:
                raw = encode(new_event(audit_record, id=str(uuid.uuid4()), source="t"))
                self.audit_tail.apply(record(raw, offset=len(self.audit_log)))

    def replay(self):
        return (r for r in list(self.log))

    def _call(self, name):
        self.calls.append(name)
        if name == self.fail_on:
            raise KafkaTimeoutError("the broker did not answer")

    def _append(self, key, value):
        published = record(value, key=key.encode(), offset=len(self.log))
        self.log.append(published)
        self.view.apply(published)


def make_api(ready=lambda: True, embedder=None, max_image_bytes=10**7, fail_on=None):
    view, tail = RegistryView(), AuditTail()
    publisher = FakePublisher(view, tail, fail_on)
    context = AdminContext(
        admin_for=lambda actor: Admin(publisher, view, actor),
        view=view,
        banks=BankBook(PolicySettings()),
        audit=tail,
        records=publisher.replay,
        tokens={"regulator": SecretStr(TOKEN)},
        ready=ready,
        max_image_bytes=max_image_bytes,
        models=SignalModels(embedder=embedder),
    )
    return create_app(context), publisher, view, tail


@pytest.fixture
def api():
    app, publisher, view, _ = make_api()
    return TestClient(app), publisher, view


def auth(token=TOKEN):
    return {"Authorization": f"Bearer {token}"}


def registered(entry_id, bank, pdq=P1, offset=0):
    entry = EntryRegistered(entry_id=entry_id, bank=bank, signals=Signals(pdq=[pdq]))
    return record(
        encode(new_event(entry, id="x", source="t")), key=entry_id.encode(), offset=offset
    )


def exported(client, bank, fmt="json"):
    return client.get(f"/banks/{bank}/export", params={"format": fmt}, headers=auth())


def test_requests_without_a_valid_token_are_refused(api):
    client, publisher, _ = api
    assert client.get("/banks").status_code == 401
    assert client.get("/banks", headers=auth("wrong-token-0123456789")).status_code == 401
    assert client.get("/banks", headers={"Authorization": TOKEN}).status_code == 401
    refused = client.delete("/entries/e1", params={"reason": "r"}, headers=auth("nope"))
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
    assert publisher.audit_log == []
    assert client.get("/banks", headers=auth()).status_code == 200


def test_the_openapi_description_and_probes_need_no_token(api):
    client, _, _ = api
    spec = client.get("/openapi.json").json()
    assert "/banks/{bank}/import" in spec["paths"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert client.get("/healthz").text == "ok"
    assert client.get("/readyz").text == "ready"


def test_registering_hashes_and_images_is_audited_under_the_token_name(api):
    client, publisher, _ = api
    made = client.post(
        "/banks/kids/entries",
        headers=auth(),
        json={"signals": {"pdq": [P1]}, "reason": "request 12"},
    )
    assert made.status_code == 201
    image = client.post(
        "/banks/kids/images",
        params={"reason": "request 13"},
        content=photo_bytes("coffee.png"),
        headers={**auth(), "Content-Type": "application/octet-stream"},
    )
    assert image.status_code == 201
    entries = {e["entry_id"]: e for e in exported(client, "kids").json()}
    signals = entries[image.json()["entry_id"]]["signals"]
    assert signals["sha256"] and len(signals["pdq"]) == 10  # the image and 9 crops
    assert [(a.actor, a.operation, a.reason) for a in publisher.audit_log] == [
        ("regulator", "register", "request 12"),
        ("regulator", "register", "request 13"),
    ]


def test_a_reason_is_required_for_changes(api):
    client, _, _ = api
    assert client.delete("/entries/e1", headers=auth()).status_code == 422
    assert (
        client.post(
            "/banks/kids/entries", headers=auth(), json={"signals": {"pdq": [P1]}}
        ).status_code
        == 422
    )


def test_imports_are_all_or_nothing_unless_skipping_and_batches_can_be_withdrawn(api):
    client, _, view = api
    text = f"pdq {P1}\npdq not-a-hash\n"
    refused = client.post(
        "/banks/partner/import",
        params={"reason": "list v1"},
        content=text,
        headers={**auth(), **TEXT},
    )
    assert refused.status_code == 422
    assert refused.json()["detail"]["problems"][0].startswith("line 2:")
    assert view.in_bank("partner") == {}
    done = client.post(
        "/banks/partner/import",
        headers={**auth(), **TEXT},
        params={"reason": "list v1", "skip_invalid": "true"},
        content=text,
    ).json()
    assert done["imported"] == 1 and done["skipped"][0].startswith("line 2:")
    csv_export = exported(client, "partner", "csv")
    assert P1 in csv_export.text and done["batch"] in csv_export.text
    gone = client.delete(
        f"/batches/{done['batch']}", params={"reason": "list recalled"}, headers=auth()
    )
    assert gone.json() == {"withdrawn": 1}
    assert view.in_bank("partner") == {}


def test_reimporting_an_export_moves_every_entry_to_the_new_batch(api):
    client, _, _ = api

    def load(text, fmt, batch):
        params = {"reason": "r", "format": fmt, "batch": batch}
        return client.post("/banks/partner/import", params=params, content=text, headers=auth())

    assert load(f"pdq {P1}\npdq {P2}\n", "hma", "first").json()["batch"] == "first"
    again = load(exported(client, "partner").text, "json", "second").json()
    assert again == {"batch": "second", "imported": 2, "skipped": []}
    assert {e["labels"]["batch"] for e in exported(client, "partner").json()} == {"second"}
    withdraw = {"reason": "recalled"}
    assert client.delete("/batches/first", params=withdraw, headers=auth()).json()["withdrawn"] == 0
    assert (
        client.delete("/batches/second", params=withdraw, headers=auth()).json()["withdrawn"] == 2
    )


def test_an_entry_id_that_belongs_to_another_bank_is_refused(api):
    client, publisher, view = api
    view.apply(registered("e1", "stock"))
    taken = client.post(
        "/banks/kids/entries",
        headers=auth(),
        json={"entry_id": "e1", "signals": {"pdq": [P2]}, "reason": "r"},
    )
    assert taken.status_code == 409 and "e1 (bank stock)" in taken.json()["detail"]
    items = json.dumps([{"entry_id": "e1", "signals": {"pdq": [P2]}}, {"signals": {"pdq": [P2]}}])
    params = {"reason": "r", "format": "json"}
    refused = client.post("/banks/kids/import", params=params, content=items, headers=auth())
    assert refused.json()["detail"]["problems"] == ["item 1: entry id 'e1' belongs to bank 'stock'"]
    assert publisher.audit_log == [] and publisher.log == []
    params["skip_invalid"] = "true"
    skipped = client.post("/banks/kids/import", params=params, content=items, headers=auth())
    assert skipped.json()["imported"] == 1
    assert view.get("e1").bank == "stock"


def test_calls_that_read_the_registry_answer_503_until_it_is_replayed():
    caught_up = threading.Event()
    app, publisher, _, _ = make_api(ready=caught_up.is_set)
    client = TestClient(app)
    calls = [
        ("GET", "/banks/kids/export", {}),
        ("DELETE", "/banks/kids/entries", {"reason": "r"}),
        ("DELETE", "/batches/b1", {"reason": "r"}),
        ("POST", "/banks/kids/import", {"reason": "r"}),
        ("GET", "/banks", {}),
        ("GET", "/audit", {}),
    ]
    for method, path, params in calls:
        answer = client.request(method, path, params=params, content=f"pdq {P1}\n", headers=auth())
        assert answer.status_code == 503, path
        assert "still reading the registry" in answer.json()["detail"]
        assert answer.headers["Retry-After"] == "5"
    assert client.get("/banks/kids/export").status_code == 401  # authentication comes first
    assert client.get("/readyz").status_code == 503
    assert publisher.calls == []
    caught_up.set()
    assert client.delete("/banks/kids/entries", params={"reason": "r"}, headers=auth()).json() == {
        "withdrawn": 0
    }


def test_bank_policies_and_the_audit_log(api):
    client, publisher, view = api
    view.apply(registered("e1", "stock"))
    changed = client.put(
        "/banks/stock",
        headers=auth(),
        json={"negative": True, "reason": "stock photos", "description": "ok"},
    )
    assert changed.status_code == 200 and changed.json()["policy"]["negative"] is True
    assert publisher.banks[0].negative
    log = client.get("/audit", params={"bank": "stock"}, headers=auth())
    assert log.json()[-1]["record"]["operation"] == "set-bank"
    assert log.json()[-1]["record"]["details"]["negative"] == "True"
    assert log.headers["Eraser-Unreadable-Records"] == "0"
    assert client.get("/banks", headers=auth()).json()[0]["entries"] == 1
    bad = client.put("/banks/stock", headers=auth(), json={"pdq_threshold": 10, "reason": "r"})
    assert bad.status_code == 422 and "auto_threshold (24) must be at most" in bad.text


def test_changes_are_audited_before_they_are_published():
    app, publisher, _, _ = make_api()
    client = TestClient(app)
    client.delete("/entries/e1", params={"reason": "request 3"}, headers=auth())
    client.put("/banks/kids", headers=auth(), json={"reason": "policy 4"})
    assert publisher.calls == ["audit", "withdraw", "audit", "set_bank"]


def test_a_publish_that_fails_after_its_audit_record_is_recorded_as_failed():
    app, publisher, view, _ = make_api(fail_on="withdraw")
    view.apply(registered("e1", "kids"))
    client = TestClient(app, raise_server_exceptions=False)
    answer = client.delete("/banks/kids/entries", params={"reason": "closed"}, headers=auth())
    assert answer.status_code == 500
    intent, failure = publisher.audit_log
    assert (intent.entry_ids, intent.count, intent.details) == (["e1"], 1, {"by": "bank"})
    assert failure.details == {"by": "bank", "outcome": "failed", "error": "KafkaTimeoutError"}
    assert (failure.operation, failure.bank, failure.reason) == ("withdraw", "kids", "closed")


def test_a_large_withdrawal_lists_every_id_across_audit_records():
    view = RegistryView()
    publisher = FakePublisher(view)
    ids = [f"e-{n}" for n in range(2345)]
    assert Admin(publisher, view, "operator").withdraw(ids, "list recalled") == 2345
    records = publisher.audit_log
    assert [len(r.entry_ids) for r in records] == [1000, 1000, 345]
    assert [i for r in records for i in r.entry_ids] == ids
    assert {r.count for r in records} == {2345}
    assert [r.details["part"] for r in records] == ["1/3", "2/3", "3/3"]
    assert publisher.calls == ["audit", "withdraw"]


def test_unreadable_audit_records_are_counted_and_logged_by_offset_only(caplog):
    app, _, _, tail = make_api()
    with caplog.at_level(logging.ERROR):
        tail.apply(record(b'{"actor": "someone private"}', partition=0, offset=41))
    assert tail.unreadable == 1
    (logged,) = [r for r in caplog.records if r.getMessage() == "unreadable audit record"]
    assert logged.fields == {"partition": 0, "offset": 41, "error": "UnsupportedEventError"}
    assert "private" not in caplog.text
    answer = TestClient(app).get("/audit", headers=auth())
    assert answer.headers["Eraser-Unreadable-Records"] == "1" and answer.json() == []


async def _post_image_in_chunks(app, chunks, declared_length=None):
    """Send an upload chunk by chunk, straight to the ASGI app; (status, chunks it read)."""
    sent, status = 0, []
    headers = [(b"authorization", f"Bearer {TOKEN}".encode())]
    if declared_length is not None:
        headers.append((b"content-length", str(declared_length).encode()))

    async def receive():
        nonlocal sent
        if sent == len(chunks):
            return {"type": "http.disconnect"}
        sent += 1
        return {"type": "http.request", "body": chunks[sent - 1], "more_body": sent < len(chunks)}

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/banks/kids/images",
        "raw_path": b"/banks/kids/images",
        "root_path": "",
        "query_string": b"reason=r",
        "headers": headers,
        "server": ("test", 80),
        "client": ("test", 1),
    }
    await app(scope, receive, send)
    return status[0], sent


def test_an_image_over_the_byte_cap_is_refused_before_it_is_all_read():
    app, publisher, _, _ = make_api(max_image_bytes=64 * 1024)
    chunks = [b"\0" * 16 * 1024] * 64  # 1 MiB, sent 16 KiB at a time
    status, read = asyncio.run(_post_image_in_chunks(app, chunks))
    assert status == 413 and read == 5  # 4 chunks fill the cap, the 5th is over it
    status, read = asyncio.run(_post_image_in_chunks(app, chunks, declared_length=1 << 20))
    assert status == 413 and read == 0
    assert publisher.calls == []


class BlockingEmbedder:
    """Holds the hashing until the test says so, to see whether the API answers meanwhile."""

    def __init__(self):
        self.hashing = threading.Event()
        self.release = threading.Event()
        self.released_while_hashing = None

    def embed_many(self, images):
        self.hashing.set()
        self.released_while_hashing = self.release.wait(timeout=20)
        vector = np.ones(1280, dtype=np.float32) / np.sqrt(1280)
        return np.tile(vector, (len(images), 1))


def test_hashing_an_image_does_not_stop_the_api_answering():
    embedder = BlockingEmbedder()
    app, _, _, _ = make_api(embedder=embedder)
    with TestClient(app) as client:
        answers = []
        upload = threading.Thread(
            target=lambda: answers.append(
                client.post(
                    "/banks/kids/images",
                    params={"reason": "r"},
                    content=photo_bytes("coffee.png"),
                    headers=auth(),
                )
            )
        )
        upload.start()
        assert embedder.hashing.wait(timeout=20)
        assert client.get("/healthz").text == "ok"
        embedder.release.set()
        upload.join()
    assert embedder.released_while_hashing is True
    assert answers[0].status_code == 201


def test_the_view_keeps_an_index_not_the_registrations():
    view = RegistryView()
    embeddings = [embedding_to_text(np.full(1280, 1280**-0.5))] * 8
    entries = [
        EntryRegistered(
            entry_id=str(uuid.uuid4()),
            bank="kids",
            signals=Signals(pdq=[P1] * 8, sha256="c" * 64, md5="d" * 32, embedding=embeddings),
            labels={"batch": "batch-1", "source": "parent-request"},
        )
        for _ in range(5000)
    ]
    raws = [encode(new_event(e, id="x", source="t")) for e in entries]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for offset, (entry, raw) in enumerate(zip(entries, raws, strict=True)):
        view.apply(record(raw, key=entry.entry_id.encode(), offset=offset))
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert held / len(entries) < 400  # each registration is over 20 KB on the wire
    assert view.banks() == {"kids": 5000} and view.with_embeddings("kids") == 5000
    assert len(view.in_batch("batch-1")) == 5000


def test_an_export_reads_the_current_records_back_and_stands_in_for_compacted_ones():
    view = RegistryView()
    log = [
        registered("e1", "kids", P1, 0),
        registered("e2", "kids", P1, 1),
        registered("e1", "kids", P2, 2),  # replaces offset 0
        record(None, key=b"e2", offset=3),  # withdraws e2
        registered("e3", "kids", P1, 4),
        registered("e4", "other", P1, 5),
    ]
    for published in log:
        view.apply(published)
    wanted = view.in_bank("kids")
    assert [(e.entry_id, e.signals.pdq) for e in current_entries(log, wanted, "kids")] == [
        ("e1", [P2]),
        ("e3", [P1]),
    ]
    # Compacted while exporting: e3's record is gone, a newer one moved e3 to another bank.
    compacted = [log[2], registered("e3", "other", P1, 6)]
    wanted = view.in_bank("kids")
    assert [e.entry_id for e in current_entries(compacted, wanted, "kids")] == ["e1"]


def test_a_video_uploaded_to_the_images_endpoint_is_registered_by_its_frames(api):
    client, _, _ = api
    video = client.post(
        "/banks/kids/images",
        params={"reason": "request 14"},
        content=clip(seconds=2),
        headers={**auth(), "Content-Type": "application/octet-stream"},
    )
    assert video.status_code == 201
    entries = {e["entry_id"]: e for e in exported(client, "kids").json()}
    signals = entries[video.json()["entry_id"]]["signals"]
    assert signals["sha256"] and len(signals["vpdq"]) > 2 and "pdq" not in signals
