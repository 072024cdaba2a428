import io
import pickle
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image, ImageOps

from services.ingest.embedding import Embedder, read_legacy_torch
from services.ingest.hashing import distance, pdq
from services.ingest.keypoints import KeypointExtractor
from services.ingest.signals import SignalModels, image_signals, reference_signals
from services.ingest.trimming import content_views
from tests.images import photo


@pytest.fixture(scope="module")
def embedder():
    return Embedder()


def pixels(image):
    return np.asarray(image.convert("RGB"))


def test_embeddings_are_normalised_and_tell_copies_from_other_photos(embedder):
    cat = photo("chelsea.png")
    original = embedder.embed(pixels(cat))
    cropped = embedder.embed(pixels(cat.crop((30, 30, cat.width - 30, cat.height - 30))))
    other = embedder.embed(pixels(photo("coffee.png")))
    assert original.shape == (1280,)
    assert np.linalg.norm(original) == pytest.approx(1.0, abs=1e-4)
    assert original @ cropped > 0.9 > original @ other


def test_the_weights_reader_refuses_anything_but_tensors():
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    data = b"".join(pickle.dumps(x) for x in (1, 1001, {})) + pickle.dumps({"x": Evil()})
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load builtins\.print"):
        read_legacy_torch(data)


def test_borders_and_frames_are_cut_away():
    cat = photo("chelsea.png")
    padded = ImageOps.expand(cat, border=60, fill=(255, 255, 255))
    (view,) = content_views(pixels(padded))
    assert abs(view.shape[0] - cat.height) <= 2 and abs(view.shape[1] - cat.width) <= 2
    assert distance(pdq(view)[0], pdq(pixels(cat))[0]) <= 10
    assert content_views(pixels(cat)) == []


def test_upload_signals_cover_rotations_flips_and_content_views(embedder):
    framed = ImageOps.expand(photo("coffee.png"), border=80, fill=(0, 0, 0))
    signals = image_signals(pixels(framed), SignalModels.load())
    assert len(signals.pdq) in (10, 12)  # 8 for the whole image, 2 per content view
    assert signals.embeddings.shape == (1 + (len(signals.pdq) - 8) // 2, 1280)
    assert signals.keypoints is not None and len(signals.keypoints) > 100
    plain = image_signals(pixels(photo("coffee.png")), SignalModels())
    assert len(plain.pdq) == 8 and plain.embeddings.size == 0 and plain.keypoints is None


def test_a_scan_on_two_threads_gives_the_signals_of_a_scan_on_one(embedder):
    from services.bench.hard_edits import collage

    threads = []

    class NotingThreads(KeypointExtractor):
        def extract(self, pixels):
            threads.append(threading.current_thread().name)
            return super().extract(pixels)

    models = SignalModels(embedder, NotingThreads())
    framed = pixels(ImageOps.expand(photo("coffee.png"), border=80, fill=(0, 0, 0)))
    others = [photo("coffee.png"), photo("astronaut.png")]
    tiled = pixels(collage(2, 3, others)(photo("chelsea.png")))
    scanned = []
    with ThreadPoolExecutor(1, "beside") as beside:
        for image in (framed, tiled):
            alone = image_signals(image, models)
            scanned.append(alone)
            overlapped = image_signals(image, models, beside=beside)
            assert overlapped.pdq == alone.pdq and overlapped.tiles == alone.tiles
            assert np.array_equal(overlapped.embeddings, alone.embeddings)
            for mine, theirs in zip(
                (overlapped.keypoints.positions, overlapped.keypoints.descriptors),
                (alone.keypoints.positions, alone.keypoints.descriptors),
                strict=True,
            ):
                assert np.array_equal(mine, theirs)
    assert [name.split("_")[0] for name in threads] == ["MainThread", "beside"] * 2
    assert len(scanned[0].pdq) > 8 and scanned[1].tiles == 4  # a content view, a collage


def test_a_failure_on_the_second_thread_is_the_scans_failure():
    class Broken:
        def embed_many(self, views):
            raise ValueError("model fell over")

    with ThreadPoolExecutor(1) as beside, pytest.raises(ValueError, match="model fell over"):
        image_signals(pixels(photo("coffee.png")), SignalModels(Broken()), beside=beside)


def test_registration_signals_include_crops_an_embedding_and_keypoints(embedder):
    signals = reference_signals(
        pixels(photo("astronaut.png")), SignalModels(embedder, KeypointExtractor())
    )
    assert signals.keypoints is not None and len(signals.keypoints) > 100
    assert len(signals.pdq) == len(signals.pdq_quality) == 10  # the image and 9 crops
    assert signals.embeddings.shape == (1, 1280)
    jpeg = io.BytesIO()
    photo("astronaut.png").crop((0, 0, 410, 410)).save(jpeg, "JPEG", quality=80)
    corner = pdq(np.asarray(Image.open(jpeg).convert("RGB")))[0]
    assert (
        min(distance(corner, code) for code in signals.pdq) <= 31 < distance(corner, signals.pdq[0])
    )


def test_the_mirrored_hash_of_a_view_is_the_mirror_images_hash():
    from services.ingest.hashing import pdq_dihedral
    from services.ingest.signals import MIRRORED

    coffee = pixels(photo("coffee.png"))
    mirrored = pdq(np.ascontiguousarray(coffee[:, ::-1]))[0]
    assert distance(pdq_dihedral(coffee).dihedral[MIRRORED], mirrored) <= 16


def test_a_transparent_upload_is_also_searched_by_its_colours_as_stored():
    image = pixels(photo("coffee.png"))
    stored = image[::-1].copy()  # whatever lies under the transparency
    opaque = image_signals(image, SignalModels())
    transparent = image_signals(image, SignalModels(), stored_colours=stored)
    assert transparent.pdq[:8] == opaque.pdq[:8]
    assert transparent.pdq[8] == pdq(stored)[0]
    assert len(transparent.pdq) == len(opaque.pdq) + 2


def test_a_collage_is_cut_into_its_tiles_and_a_photograph_is_not():
    from services.bench.hard_edits import collage
    from services.ingest.signals import thumbnail
    from services.ingest.tiles import collage_tiles

    cat, others = photo("chelsea.png"), [photo("coffee.png"), photo("astronaut.png")]
    for grid, cell in ((2, 3), (3, 4)):
        upload = thumbnail(pixels(collage(grid, cell, others)(cat)))
        tiles = collage_tiles(upload)
        assert len(tiles) == grid * grid
        assert min(distance(pdq(tile)[0], pdq(pixels(cat))[0]) for tile in tiles) <= 31
    assert collage_tiles(pixels(cat)) == []
    assert collage_tiles(pixels(photo("astronaut.png"))) == []
