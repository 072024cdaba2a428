import base64

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from services.ingest.keypoints import KeypointExtractor
from services.matcher.verification import agreeing_keypoints
from services.shared.keypoints import (
    MAX_KEYPOINTS,
    RECORD,
    Keypoints,
    keypoints_from_text,
    keypoints_to_text,
)
from services.shared.schemas import BankPolicy
from tests.images import photo

MATCH = BankPolicy().keypoint_threshold


@pytest.fixture(scope="module")
def extractor():
    return KeypointExtractor()


def keypoints_of(extractor, image):
    return extractor.extract(np.asarray(image.convert("RGB")))


def stickered(image):
    covered = image.copy()
    draw = ImageDraw.Draw(covered)
    w, h = image.size
    draw.ellipse((w // 5, h // 5, w // 5 + w // 3, h // 5 + h // 3), fill=(250, 200, 0))
    draw.rectangle((w // 2, h // 2, w // 2 + w // 5, h // 2 + h // 6), fill=(20, 20, 200))
    return covered


def screenshot(image):
    canvas = Image.new("RGB", (image.width + 120, image.height + 400), (245, 245, 245))
    draw = ImageDraw.Draw(canvas)
    for row in range(10, 180, 24):  # a header of UI text lines
        draw.rectangle((20, row, 20 + (row * 7) % 300 + 80, row + 10), fill=(60, 60, 60))
    canvas.paste(image.resize((image.width * 3 // 4, image.height * 3 // 4)), (60, 200))
    return canvas


def test_keypoints_survive_the_wire_to_an_eighth_of_a_pixel(extractor):
    found = keypoints_of(extractor, photo("astronaut.png"))
    back = keypoints_from_text(keypoints_to_text(found))
    assert 100 < len(found) <= MAX_KEYPOINTS
    assert np.array_equal(back.descriptors, found.descriptors)
    assert np.abs(back.positions - found.positions).max() <= 1 / 16


@pytest.mark.parametrize(
    "text",
    [
        "not base64!",
        base64.b64encode(b"\0" * (RECORD.itemsize + 1)).decode(),  # not whole records
        base64.b64encode(b"\0" * RECORD.itemsize * (MAX_KEYPOINTS + 1)).decode(),  # too many
    ],
)
def test_malformed_keypoints_are_refused(text):
    with pytest.raises(ValueError):
        keypoints_from_text(text)


@pytest.mark.parametrize(
    "edit",
    [
        stickered,
        screenshot,
        lambda im: im.rotate(9, resample=Image.Resampling.BICUBIC),
        lambda im: im.crop((im.width // 4, 0, im.width, im.height * 3 // 4)),
        lambda im: ImageOps.expand(im, border=90, fill=(0, 0, 0)),
    ],
    ids=["sticker", "screenshot", "rotation", "crop", "border"],
)
def test_an_edited_copy_agrees_with_its_original(extractor, edit):
    original = photo("chelsea.png")
    agreeing = agreeing_keypoints(
        keypoints_of(extractor, edit(original)), keypoints_of(extractor, original)
    )
    assert agreeing >= 2 * MATCH


@pytest.mark.parametrize(
    "other", ["coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png"]
)
def test_unrelated_photographs_do_not_agree(extractor, other):
    cat = keypoints_of(extractor, photo("chelsea.png"))
    assert agreeing_keypoints(keypoints_of(extractor, photo(other)), cat) < MATCH


def test_too_few_keypoints_agree_with_nothing(extractor):
    flat = keypoints_of(extractor, Image.new("RGB", (300, 200), (120, 130, 140)))
    assert len(flat) == 0
    assert agreeing_keypoints(flat, keypoints_of(extractor, photo("chelsea.png"))) == 0
    assert agreeing_keypoints(Keypoints.empty(), Keypoints.empty()) == 0


def test_a_registration_with_keypoints_needs_an_embedding_to_be_shortlisted(extractor):
    from pydantic import ValidationError

    from services.shared.schemas import Signals

    text = keypoints_to_text(keypoints_of(extractor, photo("chelsea.png")))
    with pytest.raises(ValidationError, match="keypoints need an embedding"):
        Signals(keypoints=text)
    with pytest.raises(ValidationError):
        Signals(pdq=["0" * 64], keypoints="A" * 24_004)  # over 500 records


def test_asking_for_more_agreement_than_there_is_gives_zero_and_never_changes_a_count(extractor):
    original = keypoints_of(extractor, photo("chelsea.png"))
    copy = keypoints_of(extractor, stickered(photo("chelsea.png")))
    agreeing = agreeing_keypoints(copy, original)
    assert agreeing >= 2 * MATCH
    assert agreeing_keypoints(copy, original, needed=agreeing) == agreeing
    assert agreeing_keypoints(copy, original, needed=len(original) + 1) == 0
