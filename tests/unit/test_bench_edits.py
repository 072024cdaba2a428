"""The accuracy benchmark's harder edits do what they say, and its precision bound is right."""

import numpy as np
import pytest
from PIL import Image

from services.bench import hard_edits
from services.bench.precision import FalseMatches, by_signal, upper_bound
from services.ingest.hashing import distance, pdq
from tests.images import photo


@pytest.fixture(scope="module")
def astronaut():
    return photo("astronaut.png").resize((256, 256))


def pixels(image):
    return np.asarray(image.convert("RGB"))


def test_every_harder_edit_makes_an_image_in_its_class(astronaut):
    edits = hard_edits.hard_edits([photo("coffee.png"), photo("chelsea.png")])
    assert {edit_class for edit_class, _, _ in edits} == set(hard_edits.CLASSES)
    for _, name, edit in edits:
        out = edit(astronaut)
        assert out.mode == "RGB" and min(out.size) >= 64, name


def test_a_collage_holds_the_photo_scaled_down_in_its_tile(astronaut):
    fillers = [photo("coffee.png"), photo("chelsea.png")]
    canvas = hard_edits.collage(3, 4, fillers)(astronaut)
    side = (1080 - 6 * 4) // 3
    assert canvas.width == 3 * (side + 6) + 6
    tile = canvas.crop((12 + side, 12 + side, 12 + 2 * side, 12 + 2 * side))
    assert distance(pdq(pixels(tile))[0], pdq(pixels(astronaut))[0]) <= 31  # a PDQ match


def test_a_half_crop_keeps_the_left_55_percent(astronaut):
    kept = hard_edits.crop_box(0, 0, 0.55, 1)(astronaut)
    assert kept.size == (141, 256)
    assert np.array_equal(pixels(kept), pixels(astronaut)[:, :141])


def test_a_perspective_warp_moves_the_corners_and_fills_outside(astronaut):
    warped = hard_edits.perspective([(0, 0), (0.9, 0.2), (0.9, 0.8), (0, 1)])(astronaut)
    assert warped.size == astronaut.size
    assert tuple(pixels(warped)[2, 250]) == (128, 128, 128)  # beyond the receding right side
    assert tuple(pixels(warped)[128, 240]) == (128, 128, 128)
    assert tuple(pixels(warped)[128, 220]) != (128, 128, 128)  # the photo, up to 90% across


def test_an_occlusion_covers_30_percent(astronaut):
    plain = Image.new("RGB", (200, 100), (255, 255, 255))
    for shape in ("box", "disc", "emoji"):
        covered = pixels(hard_edits.occlude(shape, 0.3, (0.5, 0.5))(plain))
        changed = (covered != 255).any(axis=2).mean()
        assert 0.27 <= changed <= 0.33, shape


def test_a_squeezed_meme_keeps_the_size_and_adds_white_bars(astronaut):
    meme = pixels(hard_edits.meme(squeeze=True)(astronaut))
    assert meme.shape == (256, 256, 3)
    assert (meme[:5] == 255).all() and (meme[-5:] == 255).all()


def test_the_upper_bound_matches_the_exact_binomial_answers():
    assert upper_bound(0, 1000) == pytest.approx(1 - 0.05 ** (1 / 1000), rel=1e-6)
    assert upper_bound(1, 1000) == pytest.approx(0.0047350, rel=1e-4)  # Clopper-Pearson
    assert upper_bound(5, 1_000_000) == pytest.approx(1.0513e-5, rel=1e-3)
    assert upper_bound(3, 3) == 1.0


def test_false_matches_are_counted_per_signal_on_test_distractors_only():
    found = {(5, 0): {"pdq"}, (5, 1): {"pdq", "embedding"}, (6, 2): {"keypoints"}, (9, 0): {"pdq"}}
    rows = {f.signal: f for f in by_signal(found, [5, 6, 7], originals=10)}
    assert rows["pdq"] == FalseMatches("pdq", 2, 1, 3, 10)
    assert rows["any"].pairs == 3 and rows["any"].uploads == 2
    assert rows["embedding"].comparisons == 30
    assert rows["any"].per_day(entries=10) == 1e6  # the bound says nothing at this size
    big = FalseMatches("pdq", 0, 0, 10_000, 80)
    assert big.per_day(entries=80) == pytest.approx(1e6 * 80 * upper_bound(0, 800_000))
