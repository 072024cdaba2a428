import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from services.admin.api import create_app
from services.admin.operations import Admin
from services.admin.view import RegistryView
from services.shared.banks import BankBook
from services.shared.config import PolicySettings
from services.shared.schemas import EntryRegistered, Signals, encode, new_event
from tests.images import photo_bytes
from tests.records import record

TOKEN = "regulator-token-0123456789"
P1 = "a" * 64


class FakePublisher:
    """Records what would be published, and applies registry writes to the view like Kafka would."""

    def __init__(self, view):
        self.view = view
        self.audit_log = []
        self.banks = []

    def register(self, registrations):
        for r in registrations:
            self.view.apply(
                record(encode(new_event(r, id="x", source="t")), key=r.entry_id.encode())
            )
        return len(registrations)

    def withdraw(self, entry_ids):
        ids = list(entry_ids)
        for entry_id in ids:
            self.view.apply(record(None, key=entry_id.encode()))
        return len(ids)

    def set_bank(self, configured):
        self.banks.append(configured)

    def reset_bank(self, bank):
        self.banks.append(bank)

    def audit(self, audit_record):
        self.audit_log.append(audit_record)


@pytest.fixture
def api():
    view = RegistryView()
    publisher = FakePublisher(view)
    app = create_app(
        admin_for=lambda actor: Admin(publisher, view, actor),
        view=view,
        banks=BankBook(PolicySettings()),
        audit_log=lambda: [("2026-11-25T10:00:00+00:00", r) for r in publisher.audit_log],
        tokens={"regulator": SecretStr(TOKEN)},
        ready=lambda: True,
        max_image_bytes=10**7,
    )
    return TestClient(app), publisher, view


def auth(token=TOKEN):
    return {"Authorization": f"Bearer {token}"}


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


def test_registering_hashes_and_images_is_audited_under_the_token_name(api):
    client, publisher, view = api
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
    entry = view.get(image.json()["entry_id"])
    assert entry.signals.sha256 and len(entry.signals.pdq) == 8  # the image and 7 crops
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
        headers={**auth(), "Content-Type": "text/plain"},
    )
    assert refused.status_code == 422
    assert refused.json()["detail"]["problems"][0].startswith("line 2:")
    assert view.in_bank("partner") == []
    done = client.post(
        "/banks/partner/import",
        headers={**auth(), "Content-Type": "text/plain"},
        params={"reason": "list v1", "skip_invalid": "true"},
        content=text,
    ).json()
    assert done["imported"] == 1 and done["skipped"][0].startswith("line 2:")
    exported = client.get("/banks/partner/export", params={"format": "csv"}, headers=auth())
    assert P1 in exported.text and done["batch"] in exported.text
    gone = client.delete(
        f"/batches/{done['batch']}", params={"reason": "list recalled"}, headers=auth()
    )
    assert gone.json() == {"withdrawn": 1}
    assert view.in_bank("partner") == []


def test_bank_policies_and_the_audit_log(api):
    client, publisher, view = api
    view.apply(
        record(
            encode(
                new_event(
                    EntryRegistered(entry_id="e1", bank="stock", signals=Signals(pdq=[P1])),
                    id="x",
                    source="t",
                )
            ),
            key=b"e1",
        )
    )
    changed = client.put(
        "/banks/stock",
        headers=auth(),
        json={"negative": True, "reason": "stock photos", "description": "ok"},
    )
    assert changed.status_code == 200 and changed.json()["policy"]["negative"] is True
    assert publisher.banks[0].negative
    log = client.get("/audit", params={"bank": "stock"}, headers=auth()).json()
    assert log[-1]["record"]["operation"] == "set-bank"
    assert log[-1]["record"]["details"]["negative"] == "True"
    assert client.get("/banks", headers=auth()).json()[0]["entries"] == 1
