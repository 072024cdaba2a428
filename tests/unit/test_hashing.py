import hashlib

import numpy as np
from PIL import ImageOps

from services.ingest.decoding import decode
from services.ingest.hashing import digests, distance, pdq, pdq_dihedral, to_hex
from tests.images import encode, photo, photo_bytes


def _pixels(image):
    return decode(encode(image, "PNG"), 10**8).pixels


def test_digests_are_those_of_the_bytes():
    data = photo_bytes("coffee.png")
    found = digests(data)
    assert found.sha256 == hashlib.sha256(data).hexdigest()
    assert found.md5 == hashlib.md5(data).hexdigest()


def test_hex_puts_the_first_bit_in_the_most_significant_place():
    bits = np.zeros(256, dtype=np.int64)
    bits[0] = 1
    bits[255] = 1
    assert to_hex(bits) == "8" + "0" * 62 + "1"


def test_pdq_is_stable_under_re_encoding_and_far_between_different_photos():
    original, quality = pdq(_pixels(photo("astronaut.png")))
    recoded, _ = pdq(decode(encode(photo("astronaut.png"), "JPEG", quality=70), 10**8).pixels)
    other, _ = pdq(_pixels(photo("rocket.jpg")))
    assert quality >= 50
    assert distance(original, recoded) <= 10
    assert distance(original, other) > 80


def test_the_rotations_and_flips_of_an_upload_find_the_original():
    image = photo("chelsea.png")
    original, _ = pdq(_pixels(image))
    for edited in (ImageOps.mirror(image), image.rotate(90, expand=True), ImageOps.flip(image)):
        hashes = pdq_dihedral(_pixels(edited))
        assert len(hashes.dihedral) == 8
        assert min(distance(original, h) for h in hashes.dihedral) <= 31
        assert distance(original, hashes.original) > 31


def test_the_first_dihedral_hash_is_the_plain_hash():
    pixels = _pixels(photo("coffee.png"))
    assert pdq_dihedral(pixels).original == pdq(pixels)[0]


def test_a_flat_image_has_low_quality():
    flat = photo("coffee.png").point(lambda _: 128)
    assert pdq(_pixels(flat))[1] < 50
