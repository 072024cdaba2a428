"""The review console and the requester's case page in Chromium, through the real broker.

One deployment (ingest, matcher, actions) and one ``eraser admin`` serve every test here; each
test uses its own photographs, and leaves no item open for the next. Set ERASER_SCREENSHOTS to a
folder to keep screenshots of the pages (docs/ holds the ones in docs/review.md).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright

from services.bench.deployment import Deployment
from services.shared.schemas import ActionResultReported, encode, event_id, new_event
from services.streams import EventReader, UploadPublisher
from tests.console import CHROMIUM, CHROMIUM_FLAGS, PASSWORDS, TOKEN, Console
from tests.images import encode as encode_image
from tests.images import photo, photo_bytes

# Only PDQ decides, and only an exact file acts unreviewed: any re-encoded copy goes to review.
WEAK = {
    "auto_threshold": 0,
    "embedding_threshold": 1.0,
    "agreement_embedding_threshold": 1.0,
    "keypoint_threshold": 256,
}
BANKS = {"kids": {**WEAK, "action": "hide"}, "strict": {**WEAK, "reviewers": 2}}
SHOTS = os.environ.get("ERASER_SCREENSHOTS")


@pytest.fixture(scope="module")
def eraser(broker, tmp_path_factory):
    folder = tmp_path_factory.mktemp("console")
    deployment = Deployment(broker.bootstrap_servers, folder, BANKS)
    deployment.pipeline.start()
    yield deployment
    deployment.close()


@pytest.fixture(scope="module")
def console(eraser, tmp_path_factory):
    started = Console(eraser, tmp_path_factory.mktemp("admin"))
    yield started
    started.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


def weak_copy(name: str) -> bytes:
    image = photo(name)
    return encode_image(image.resize((image.width // 2, image.height // 2)), "JPEG", quality=40)


def action_of(eraser: Deployment, upload_id: str, kind: str | None = None) -> str:
    """The id of the action an upload led to (of ``kind``, if given)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for action, id_ in zip(eraser.actions, eraser.action_ids, strict=True):
            if action.upload_id == upload_id:
                assert kind is None or action.action == kind, action
                return id_
        eraser.read()
    raise AssertionError("no action for the upload")


def review_item(eraser: Deployment, content_id: str, data: bytes) -> str:
    """Upload a weak copy by file; the id of the review item its action opens.

    The registration just published reaches the matcher through its own topic: a copy scanned
    before it arrives is clean (no action, no item), so that upload is made again.
    """
    for _ in range(5):
        upload_id = eraser.upload(content_id, data, by_file=True)
        verdict = eraser.wait_for_verdicts([upload_id]).get(upload_id)
        if verdict is not None and verdict.verdict == "match":
            return action_of(eraser, upload_id, "review")
    raise AssertionError(f"{content_id} never matched its registered photo")


def signed_in(browser: Browser, console: Console, name: str, **options) -> Page:
    page = browser.new_context(base_url=console.url, **options).new_page()
    page.goto("/login")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(PASSWORDS[name])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{console.url}/review")
    return page


def next_item(page: Page) -> str:
    """Press n until an item opens (the console may not have read the newest one yet)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        page.goto("/review")
        if page.get_by_role("button", name="Next item n").is_enabled():
            with page.expect_navigation():
                page.keyboard.press("n")
        if "/review/items/" in page.url:
            return page.url.rsplit("/", 1)[1]
        time.sleep(0.3)
    raise AssertionError("no item came up")


def decide(page: Page, key: str, reason: str, negative: bool = True) -> None:
    """Type a reason, leave the box (Escape), and decide by key."""
    page.get_by_label("Reason (required)").fill(reason)
    if not negative:
        page.get_by_label("On reject, add").uncheck()
    page.get_by_label("Reason (required)").press("Escape")
    page.keyboard.press(key)
    page.wait_for_url("**/review?note=*")


def picture_mode(page: Page) -> tuple[str, str]:
    """(data-state, PIL mode) of the upload shown on an item page."""
    image = page.locator("#media img")
    answer = page.request.get(image.get_attribute("src"))
    assert answer.ok, answer.status
    return image.get_attribute("data-state"), Image.open(io.BytesIO(answer.body())).mode


def shot(page: Page, name: str) -> None:
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / name), full_page=True)


def audited(eraser: Deployment, actor: str) -> set[str]:
    reader = EventReader(eraser.kafka, [eraser.topics.audit])
    try:
        deadline, seen = time.monotonic() + 3, set()
        while time.monotonic() < deadline:
            seen |= {r.event.data.operation for r in reader.read() if r.event.data.actor == actor}
        return seen
    finally:
        reader.close()


def test_a_weak_copy_is_reviewed_blurred_until_revealed_and_confirmed_as_a_signed_action(
    eraser, console, browser
):
    (entry,) = eraser.register("kids", {"chelsea": photo_bytes("chelsea.png")}).values()
    item_id = review_item(eraser, "post-chelsea", weak_copy("chelsea.png"))
    page = signed_in(browser, console, "ann", viewport={"width": 1100, "height": 900})
    assert next_item(page) == item_id
    assert picture_mode(page) == ("blurred", "L"), "grey and blurred by default"
    expect(page.get_by_role("button", name="Confirm c")).to_be_visible()
    shot(page, "review-item.png")
    page.keyboard.press("v")
    expect(page.locator("#media img")).to_have_attribute("data-state", "revealed")
    assert picture_mode(page) == ("revealed", "RGB")
    decide(page, "c", "the child's photo, resized")
    expect(page.get_by_role("status")).to_have_text("item confirmed")

    action_id = event_id("action", "post-chelsea", entry, "hide")
    deadline = time.monotonic() + 10
    while action_id not in eraser.action_ids and time.monotonic() < deadline:
        eraser.read()
    confirmed = eraser.actions[eraser.action_ids.index(action_id)]
    assert (confirmed.action, confirmed.entry_id) == ("hide", entry)
    assert eraser.unsigned_actions == 0, "the confirmation is signed with the actions key"
    assert {"review-claim", "review-view", "review-reveal", "review-decide"} <= audited(
        eraser, "ann"
    )
    shown = subprocess.run(
        [sys.executable, "-m", "services.cli", "audit"],
        env={**os.environ, **eraser.env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "\tann\treview-reveal\tkids\t" in shown.stdout, "`eraser audit` shows them"


def test_a_rejected_upload_goes_to_the_negative_bank_and_is_not_actioned_again(
    eraser, console, browser
):
    eraser.register("kids", {"coffee": photo_bytes("coffee.png")})
    copy = weak_copy("coffee.png")
    review_item(eraser, "post-coffee", copy)
    page = signed_in(browser, console, "bob")
    next_item(page)
    decide(page, "r", "a different cup of coffee")
    expect(page.get_by_role("status")).to_have_text("item rejected")

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        again = eraser.upload(f"post-coffee-again-{time.monotonic()}", copy)
        verdict = eraser.wait_for_verdicts([again])[again]
        if any(m.bank == "false-positives" for m in verdict.matches):
            break
    else:
        raise AssertionError("the rejected upload never matched the negative bank")
    eraser.settle(2)
    assert not [a for a in eraser.actions if a.upload_id == again], "no action, not even review"


def test_a_two_reviewer_bank_acts_only_when_a_second_reviewer_agrees(eraser, console, browser):
    (entry,) = eraser.register("strict", {"astronaut": photo_bytes("astronaut.png")}).values()
    item_id = review_item(eraser, "post-astronaut", weak_copy("astronaut.png"))
    ann = signed_in(browser, console, "ann")
    assert next_item(ann) == item_id
    decide(ann, "c", "same photo")
    expect(ann.get_by_role("status")).to_have_text("recorded: a second reviewer must agree")
    expect(ann.get_by_role("button", name="Next item n")).to_be_disabled()
    action_id = event_id("action", "post-astronaut", entry, "remove")
    eraser.settle(1)
    assert action_id not in eraser.action_ids, "one reviewer is not enough"

    bob = signed_in(browser, console, "bob")
    assert next_item(bob) == item_id
    decide(bob, "c", "agree: same photo")
    deadline = time.monotonic() + 10
    while action_id not in eraser.action_ids and time.monotonic() < deadline:
        eraser.read()
    assert action_id in eraser.action_ids


def test_two_reviewers_pressing_next_at_once_never_get_the_same_item(eraser, console, browser):
    eraser.register(
        "kids", {"rocket": photo_bytes("rocket.jpg"), "horse": photo_bytes("horse.png")}
    )
    items = {
        review_item(eraser, "post-rocket", weak_copy("rocket.jpg")),
        review_item(eraser, "post-horse", weak_copy("horse.png")),
    }
    pages = [signed_in(browser, console, name) for name in ("ann", "bob")]
    for page in pages:
        page.goto("/review")
        expect(page.get_by_role("heading", name="Waiting for you: 2")).to_be_visible()
    # Both forms submitted before either answer arrives.
    for page in pages:
        page.evaluate("document.querySelector('[data-key=n]').form.submit()")
    for page in pages:
        page.wait_for_url("**/review/items/*")
    got = [page.url.rsplit("/", 1)[1] for page in pages]
    assert set(got) == items, "each got a different item"
    lead = signed_in(browser, console, "lee", viewport={"width": 1100, "height": 900})
    lead.goto("/review")
    expect(lead.get_by_text("Every open item (lead view): 2")).to_be_visible()
    shot(lead, "review-queue.png")
    for page in pages:
        decide(page, "r", "not the registered photo", negative=False)


def register_with_a_case(console: Console, bank: str, name: str) -> tuple[str, str, str]:
    """Register a photo through the admin API; (entry id, case number, PIN)."""
    answer = httpx2.post(
        f"{console.url}/banks/{bank}/images",
        params={"reason": "request 17"},
        content=photo_bytes(name),
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=60,
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    return body["entry_id"], body["case"], body["pin"]


def report_result(eraser: Deployment, action_id: str) -> None:
    """What a removal service does once the content is down."""
    result = ActionResultReported(action_id=action_id, outcome="done", reason="removed")
    publisher = UploadPublisher(eraser.kafka, eraser.topics.action_results)
    publisher._producer.send(
        eraser.topics.action_results,
        key=action_id.encode(),
        value=encode(new_event(result, id=f"result-{action_id}", source="urn:platform")),
    )
    publisher.close()


def open_case(page: Page, number: str, pin: str) -> None:
    page.goto("/case")
    page.get_by_label("Case number").fill(number)
    page.get_by_label("PIN").fill(pin)
    page.get_by_role("button", name="Show my case").click()


def test_a_requester_sees_counts_withdraws_and_wrong_pins_are_limited(eraser, console, browser):
    _, number, pin = register_with_a_case(console, "kids", "motorcycle_left.png")
    exact = eraser.upload("post-moto-exact", photo_bytes("motorcycle_left.png"), by_file=True)
    review_item(eraser, "post-moto-weak", weak_copy("motorcycle_left.png"))
    report_result(eraser, action_of(eraser, exact))

    phone = browser.new_context(base_url=console.url, viewport={"width": 390, "height": 844})
    page = phone.new_page()
    open_case(page, number, pin)
    expect(page.get_by_role("heading", name=f"Case {number}")).to_be_visible()
    deadline = time.monotonic() + 10
    while page.locator("#taken-down").inner_text() != "1" and time.monotonic() < deadline:
        page.reload()
    expect(page.locator("#actioned")).to_have_text("1")
    expect(page.locator("#taken-down")).to_have_text("1")
    expect(page.locator("#under-review")).to_have_text("1")
    assert not page.locator("img").count(), "no pictures on the requester's page"
    assert "post-moto" not in page.content(), "no content ids either"
    shot(page, "case-status.png")

    page.get_by_label("I want to stop eraser").check()
    page.get_by_role("button", name="Withdraw my photos").click()
    expect(page.get_by_text("your photos are no longer matched")).to_be_visible()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        probe = eraser.upload(f"moto-probe-{time.monotonic()}", photo_bytes("motorcycle_left.png"))
        if eraser.wait_for_verdicts([probe], timeout_s=5)[probe].verdict == "clean":
            break
    else:
        raise AssertionError("the withdrawal did not reach the matchers within 10 s")

    stranger = browser.new_context(base_url=console.url).new_page()
    wrong = f"{(int(pin) + 1) % 10**8:08d}"
    for _ in range(5):
        open_case(stranger, number, wrong)
        expect(stranger.get_by_role("alert")).to_have_text(
            "that case number and PIN do not match a case"
        )
    open_case(stranger, number, pin)
    expect(stranger.get_by_role("alert")).to_contain_text("too many wrong PINs")
    lead = signed_in(browser, console, "lee")
    lead.goto("/review")
    lead.get_by_role("link").filter(has_text=re.compile("^[0-9a-f]{8}$")).first.click()
    decide(lead, "r", "case withdrawn", negative=False)
