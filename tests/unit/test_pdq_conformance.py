"""eraser's PDQ against the vectors Meta publishes: partner hash lists are made with that code.

The images and expected hashes are in tests/data/pdq (BSD, from facebook/ThreatExchange). Meta's
own test allows 16 bits between its Python port and the expected hash; eraser must register
exactly what ``pdqhash.compute`` gives for the whole decoded image, and scan uploads (decoded at a
reduced scale when large) within 10 bits of it.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pdqhash
import pytest
from PIL import Image, ImageOps

from services.ingest.decoding import decode
from services.ingest.hashing import distance, pdq_dihedral, to_hex
from services.ingest.signals import DECODE_SIDE
from services.registrar import measure

VECTORS = Path(__file__).parents[1] / "data" / "pdq"
META_TOLERANCE = 16
SCAN_TOLERANCE = 10


def _expected() -> dict[str, str]:
    lines = (VECTORS / "expected.tsv").read_text().splitlines()
    return dict(line.split("\t") for line in lines if line and not line.startswith("#"))


EXPECTED = _expected()
FILES = sorted(name for name in EXPECTED if "@" not in name)
TURNS = ("rotate-90", "rotate-180", "rotate-270", "flip-x", "flip-y", "flip-plus-1", "flip-minus-1")


def _reference(data: bytes) -> tuple[str, int]:
    """pdqhash.compute on every pixel of the upright decoded image: the reference."""
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    bits, quality = pdqhash.compute(np.asarray(image))
    return to_hex(bits), int(quality)


def test_every_vector_is_present():
    assert len(FILES) == 10
    assert all((VECTORS / name).is_file() for name in FILES)


@pytest.mark.parametrize("name", FILES)
def test_the_reference_is_what_meta_expects(name):
    reference, _ = _reference((VECTORS / name).read_bytes())
    assert distance(reference, EXPECTED[name]) <= META_TOLERANCE


@pytest.mark.parametrize("name", FILES)
def test_a_registration_holds_the_reference_hash(name):
    data = (VECTORS / name).read_bytes()
    assert measure(data).signals.pdq[0] == _reference(data)[0]


@pytest.mark.parametrize("name", FILES)
def test_an_upload_is_scanned_within_10_bits_of_the_reference(name):
    data = (VECTORS / name).read_bytes()
    reference, quality = _reference(data)
    scanned = pdq_dihedral(decode(data, 10**8, DECODE_SIDE).pixels).original
    if quality < 50:
        pytest.skip(f"quality {quality}: below PDQ's floor, matched on by no bank")
    assert distance(scanned, reference) <= SCAN_TOLERANCE
    assert distance(scanned, EXPECTED[name]) <= META_TOLERANCE


def test_the_turns_of_an_upload_are_the_turned_files_meta_hashed():
    data = (VECTORS / "bridge-1-original.jpg").read_bytes()
    scanned = pdq_dihedral(decode(data, 10**8, DECODE_SIDE).pixels).dihedral
    for turn, code in zip(TURNS, scanned[1:], strict=True):
        assert distance(code, EXPECTED[f"bridge-1-original.jpg@{turn}"]) <= META_TOLERANCE


def test_a_transparent_image_is_registered_and_scanned_as_partner_lists_hash_it():
    """HMA (python-threatexchange) hashes the colour channels as stored, alpha ignored."""
    photo = Image.open(VECTORS / "q1050.jpg").convert("RGBA")
    alpha = np.zeros((256, 256), dtype=np.uint8)
    alpha[64:192, 64:192] = 255  # a sticker: the middle shows, the rest is see-through
    photo.putalpha(Image.fromarray(alpha))
    buffer = io.BytesIO()
    photo.save(buffer, "PNG")
    data = buffer.getvalue()
    reference = to_hex(pdqhash.compute(np.asarray(photo.convert("RGB")))[0])

    assert measure(data).signals.pdq[0] == reference
    scanned = decode(data, 10**8, DECODE_SIDE)
    assert distance(pdq_dihedral(scanned.pixels).original, reference) > 31  # over white
    assert pdq_dihedral(scanned.stored_colours).original == reference
