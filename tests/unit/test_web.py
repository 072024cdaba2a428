"""The pages without a broker or a browser: sign-in, CSRF, cases, headers, vendored assets."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pytest
from fastapi.testclient import TestClient

from services.admin.api import create_app
from services.admin.view import RegistryView
from services.cases.book import CaseBook
from services.cases.operations import Cases, open_case
from services.review import rules
from services.review.board import ReviewBoard
from services.review.desk import ReviewDesk
from services.review.ledger import ActionLedger
from services.review.log import ReviewLog, change_record
from services.review.metrics import ReviewMetrics
from services.shared.banks import BankBook
from services.shared.config import PolicySettings
from services.shared.passwords import hash_secret, verify_secret
from services.shared.schemas import (
    ActionDecided,
    EntryRegistered,
    Signals,
    embedding_to_text,
    encode,
    new_event,
)
from services.web.context import WebContext
from services.web.sessions import Signer
from tests.records import record
from tests.unit.test_review import FakeProducer

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
VENDOR = Path(__file__).resolve().parents[2] / "services" / "web" / "static" / "vendor"
USERS = {"ann": ("reviewer", hash_secret("ann-password-123"))}


class Clock:
    def __init__(self):
        self.now = NOW

    def __call__(self):
        return self.now


class FakeAdmin:
    withdrawn: ClassVar[list[str]] = []

    def withdraw(self, ids, reason):
        FakeAdmin.withdrawn.extend(ids)
        return len(ids)


@pytest.fixture
def web():
    board, book, clock, audit = ReviewBoard({"pdq": 1}), CaseBook(), Clock(), []
    producer = FakeProducer(board)

    def send_case(key, data):
        event = new_event(data, id=f"c-{key}", source="t")
        book.apply(record(encode(event), key=key.encode()))

    desk = ReviewDesk(
        board=board,
        log=ReviewLog(producer, "review", board, timeout_s=1),
        banks=BankBook(PolicySettings()),
        audit=audit.extend,
        evidence=None,  # type: ignore[arg-type]
        metrics=ReviewMetrics(),
        claim_seconds=600,
        clock=clock,
    )
    cases = Cases(
        book,
        send_case,
        lambda actor: FakeAdmin(),
        RegistryView(),
        ActionLedger(),
        board,
        3,
        900,
        clock,
    )
    context = WebContext(
        desk=desk,
        cases=cases,
        signer=Signer(b"k" * 32),
        users=USERS,
        blur_default=True,
        session_hours=8,
        ledger=ActionLedger(),
        view=RegistryView(),
        banks=desk.banks,
        registration=lambda slot: None,
    )
    return SimpleNamespace(
        context=context, desk=desk, cases=cases, audit=audit, clock=clock, board=board
    )


def client_for(web) -> TestClient:
    return TestClient(create_app(None, web.context), follow_redirects=False)  # type: ignore[arg-type]


def form_token(client, path) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', client.get(path).text).group(1)


def sign_in(client) -> str:
    data = {"name": "ann", "password": "ann-password-123", "csrf": form_token(client, "/login")}
    answer = client.post("/login", data=data)
    assert answer.status_code == 303
    page = client.get("/review")
    return re.search(r'name="csrf" value="([0-9a-f]+)"', page.text).group(1)


def add_item(web):
    action = ActionDecided(
        action="review",
        content_id="post-1",
        upload_id="u",
        bank="kids",
        entry_id="e1",
        signal="pdq",
        distance=20,
        reason="weak pdq",
        decided_at=NOW,
    )
    out, _ = change_record("review", "opened", "t", 0, rules.opened(action, "item-1", "pdq"))
    web.board.apply(record(out.value, key=out.key))


def test_signing_in_needs_the_right_password(web):
    client = client_for(web)
    assert client.get("/review").headers["location"] == "/login"
    token = form_token(client, "/login")
    wrong = client.post("/login", data={"name": "ann", "password": "nope", "csrf": token})
    assert wrong.status_code == 401 and "name or password wrong" in wrong.text
    nobody = {"name": "zed", "password": "ann-password-123", "csrf": token}
    assert client.post("/login", data=nobody).status_code == 401
    forged = client_for(web).post("/login", data={"name": "ann", "password": "ann-password-123"})
    assert forged.status_code == 403, "the sign-in form has a CSRF token too"
    sign_in(client)
    assert client.get("/review").status_code == 200


def test_every_form_post_needs_the_sessions_csrf_token(web):
    add_item(web)
    client = client_for(web)
    token = sign_in(client)
    assert client.post("/review/next").status_code == 403
    assert client.post("/review/next", data={"csrf": "0" * 64}).status_code == 403
    assert client.post("/review/next", data={"csrf": token}).status_code == 303
    assert client.post("/logout").status_code == 403


def test_a_decision_needs_a_reason(web):
    add_item(web)
    client = client_for(web)
    token = sign_in(client)
    client.post("/review/next", data={"csrf": token})
    empty = {"csrf": token, "verdict": "reject", "reason": ""}
    assert client.post("/review/items/item-1/decide", data=empty).status_code == 422
    assert web.board.get("item-1").status == "open"


def test_pages_carry_a_strict_content_security_policy(web):
    page = client_for(web).get("/login")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    assert "/static/vendor/htmx-2.0.11.min.js" in page.text


def test_vendored_assets_match_their_recorded_checksums():
    recorded = dict(
        re.findall(
            r"\| `([\w.-]+)` \|.*\| `([0-9a-f]{64})` \|", (VENDOR / "VENDORED.md").read_text()
        )
    )
    assert set(recorded) == {"htmx-2.0.11.min.js", "pico-2.1.1.min.css"}
    for name, digest in recorded.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name


def opened_case(web):
    return open_case(web.cases.send, web.audit.extend, "ops", "kids", ["e1", "e2"], NOW)


def test_only_a_slow_hash_of_the_pin_is_kept(web):
    number, pin = opened_case(web)
    case = web.cases.book.get(number)
    assert re.fullmatch(r"EC-[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}", number)
    assert pin not in case.model_dump_json() and case.pin_hash.startswith("scrypt$16384$8$1$")
    assert verify_secret(pin, case.pin_hash)
    assert web.audit[-1].operation == "case-open" and web.audit[-1].count == 2


def test_wrong_pins_are_limited_per_case_for_a_while(web):
    number, pin = opened_case(web)
    client = client_for(web)
    token = form_token(client, "/case")
    for _ in range(3):
        refused = client.post("/case", data={"number": number, "pin": "0" * 8, "csrf": token})
        assert refused.status_code == 401
    blocked = client.post("/case", data={"number": number, "pin": pin, "csrf": token})
    assert blocked.status_code == 429 and "too many wrong PINs" in blocked.text
    web.clock.now = NOW + timedelta(minutes=16)
    again = client.post("/case", data={"number": number, "pin": pin, "csrf": token})
    assert again.status_code == 303


def test_a_requester_withdraws_every_entry_of_their_case(web):
    number, pin = opened_case(web)
    client = client_for(web)
    data = {"number": number.lower(), "pin": pin, "csrf": form_token(client, "/case")}
    assert client.post("/case", data=data).status_code == 303
    status = client.get("/case/status")
    assert f">{number}</span>" in status.text and "<img" not in status.text
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', status.text).group(1)
    assert client.post("/case/withdraw", data={"sure": "true"}).status_code == 403
    client.post("/case/withdraw", data={"sure": "true", "csrf": token})
    assert web.cases.book.get(number).status == "withdrawn"
    assert {"e1", "e2"} <= set(FakeAdmin.withdrawn)
    assert "no longer matched" in client.get("/case/status").text


def test_a_reveal_without_javascript_is_audited_and_bound_to_the_reviewer(web):
    add_item(web)
    client = client_for(web)
    token = sign_in(client)
    client.post("/review/next", data={"csrf": token})
    assert 'data-state="blurred"' in client.get("/review/items/item-1").text
    revealed = client.post("/review/items/item-1/reveal", data={"csrf": token})
    assert revealed.status_code == 303
    assert 'data-state="revealed"' in client.get(revealed.headers["location"]).text
    forged = client.get("/review/items/item-1?reveal=" + "0" * 64)
    assert 'data-state="blurred"' in forged.text
    assert [r.operation for r in web.audit].count("review-reveal") == 1


def test_a_refusal_is_a_page_a_person_can_read(web):
    add_item(web)
    client = client_for(web)
    token = sign_in(client)
    answer = client.post(
        "/review/items/item-1/decide", data={"csrf": token, "verdict": "confirm", "reason": "x"}
    )
    assert answer.status_code == 409 and "claim this item first" in answer.text
    assert "<h1>Not done</h1>" in answer.text


def test_a_case_counts_its_photographs_and_their_faces_apart(web):
    view = web.cases.view
    for n, signals in enumerate(
        (
            Signals(sha256="ab" * 32),
            Signals(face=embedding_to_text(np.full(128, 0.088, np.float32))),
        )
    ):
        entry = EntryRegistered(entry_id=f"e{n + 1}", bank="kids", signals=signals, subject="s")
        view.apply(
            record(encode(new_event(entry, id=f"r{n}", source="t")), key=f"e{n + 1}".encode())
        )
    number, pin = opened_case(web)
    client = client_for(web)
    data = {"number": number, "pin": pin, "csrf": form_token(client, "/case")}
    client.post("/case", data=data)
    assert "Received: 1 photo and 1 face from it registered" in client.get("/case/status").text
