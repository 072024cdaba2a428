"""Finding and embedding faces, and registering them only as the registrant chose."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from services.bench.face_data import sdist_portraits
from services.ingest import faces as face_module
from services.ingest.faces import FaceModels, faces_seen
from services.ingest.fetching import MediaFetcher
from services.ingest.handler import IngestProcessor
from services.ingest.signals import SignalModels
from services.registrar import FaceChoiceError, face_entries, measure
from services.shared.config import MediaSettings, TopicSettings
from services.shared.metrics import IngestMetrics
from services.shared.schemas import UploadReceived, new_event

CACHE = Path(__file__).parents[2] / ".cache" / "test-faces"


@pytest.fixture(scope="module")
def photos():
    return sdist_portraits(CACHE)


@pytest.fixture(scope="module")
def models():
    return FaceModels()


def pixels(data):
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def side_by_side(*datas):
    images = [Image.open(io.BytesIO(d)).convert("RGB").resize((600, 800)) for d in datas]
    group = Image.new("RGB", (600 * len(images), 800))
    for n, image in enumerate(images):
        group.paste(image, (600 * n, 0))
    buffer = io.BytesIO()
    group.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_the_same_person_is_close_and_other_people_are_not(photos, models):
    def face(name):
        (found,) = models.faces(pixels(photos[name].data), 5)
        assert found.embedding.shape == (128,)
        assert np.linalg.norm(found.embedding) == pytest.approx(1, abs=1e-4)
        return found.embedding

    obama, other_obama = face("obama"), face("impostor_1")
    assert obama @ other_obama > 0.6
    for name in ("biden", "person_a_1", "person_b_2", "impostor_2"):
        assert obama @ face(name) < 0.4, name


def test_boxes_are_reported_in_the_stored_images_pixels(photos, models):
    (found,) = models.faces(pixels(photos["obama"].data), 5)
    (seen,) = faces_seen([found], 2.0)
    assert (seen.box.x, seen.box.width) == (round(found.box[0] * 2), round(found.box[2] * 2))


def test_a_photo_without_faces_costs_only_the_detector(models):
    assert models.faces(np.full((480, 640, 3), 120, np.uint8), 5) == []


def test_a_model_file_that_is_not_the_expected_one_is_refused(monkeypatch):
    monkeypatch.setattr(face_module, "_DETECTOR", (face_module._DETECTOR[0], "0" * 64))
    with pytest.raises(RuntimeError, match="not the expected file"):
        FaceModels()


def test_sface_is_given_only_its_image_as_input():
    model = face_module._only_real_inputs(face_module._model_bytes(*face_module._EMBEDDER))
    assert [i.name for i in onnx.load_from_string(model).graph.input] == ["data"]


def test_a_group_photo_is_refused_unless_the_childs_face_is_picked(photos, models):
    group = side_by_side(photos["biden"].data, photos["obama"].data)
    with_faces = SignalModels(faces=models)
    with pytest.raises(FaceChoiceError, match="2 faces: pick"):
        measure(group, with_faces, faces=True)
    # Faces are numbered largest first, as the preview shows them: his is on the right.
    found = models.detect(pixels(group))
    number = next(n for n, f in enumerate(found, start=1) if f.box[0] >= 600)
    picked = measure(group, with_faces, faces=True, face=number)
    (entry,) = face_entries(picked, "kids", "child-1")
    (alone,) = models.faces(pixels(photos["obama"].data), 1)
    assert picked.faces[0].embedding @ alone.embedding > 0.6  # the one picked, not the other
    assert entry.subject == "child-1" and entry.signals.face and not entry.signals.pdq
    with pytest.raises(FaceChoiceError, match="no face 3"):
        measure(group, with_faces, faces=True, face=3)
    with pytest.raises(FaceChoiceError, match="no face found"):
        measure(_flat(), with_faces, faces=True)


def _flat():
    buffer = io.BytesIO()
    Image.new("RGB", (300, 300), (90, 140, 200)).save(buffer, "PNG")
    return buffer.getvalue()


def test_ingest_looks_for_faces_only_while_some_bank_holds_faces(photos):
    wanted = [False]
    processor = IngestProcessor(
        TopicSettings(),
        MediaFetcher(MediaSettings()),
        64_000_000,
        IngestMetrics(),
        SignalModels(faces=FaceModels()),
        faces_wanted=lambda: wanted[0],
    )
    upload = UploadReceived(
        content_id="c-1", media_b64=base64.b64encode(photos["obama"].data).decode()
    )
    event = new_event(upload, id="u-1", source="test")
    assert processor.scan(event).faces == []
    wanted[0] = True  # a bank turned faces on
    (face,) = processor.scan(event).faces
    assert face.box.width > 50
