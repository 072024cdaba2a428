"""A stand-in for a face-swap deepfake: one person's face pasted over another's, in code.

The face benchmark and the face tier's tests use it: person A's face, from a photograph not
registered, is warped by its five landmarks onto person B's face in B's photograph and blended in
(Poisson blending, or a feathered edge), as simple face-swap tools do. Real deepfakes re-render
the face and fit it better; this proxy keeps A's own pixels, so it is easier than some and harder
than others (docs/benchmarks.md says what it measures).
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from services.ingest.faces import Detected, similarity

Blend = Literal["poisson", "feathered"]


def paste_face(
    donor: np.ndarray, donor_face: Detected, target: np.ndarray, target_face: Detected, blend: Blend
) -> np.ndarray:
    """``target`` (HxWx3 RGB) with ``donor``'s face put where ``target_face`` is."""
    height, width = target.shape[:2]
    warp = similarity(donor_face.landmarks, target_face.landmarks)
    moved = cv2.warpAffine(donor, warp, (width, height), flags=cv2.INTER_LINEAR)
    mask = _face_mask(target_face, (height, width))
    if blend == "poisson":
        x, y, w, h = cv2.boundingRect(mask)
        return np.asarray(
            cv2.seamlessClone(moved, target, mask, (x + w // 2, y + h // 2), cv2.NORMAL_CLONE)
        )
    feather = max(3, (target_face.box[2] // 8) | 1)
    alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255, (feather, feather), 0)[..., None]
    return np.asarray((alpha * moved + (1 - alpha) * target).round().astype(np.uint8))


def _face_mask(face: Detected, shape: tuple[int, int]) -> np.ndarray:
    """An ellipse over the inner face: eyebrows to chin, cheek to cheek."""
    eyes, nose, mouth = face.landmarks[:2].mean(0), face.landmarks[2], face.landmarks[3:].mean(0)
    span = float(np.linalg.norm(face.landmarks[0] - face.landmarks[1]))
    centre = (eyes + mouth) / 2 * 0.7 + nose * 0.3
    axes = (max(2, round(span * 1.1)), max(2, round(float(np.linalg.norm(mouth - eyes)) * 1.5)))
    angle = float(np.degrees(np.arctan2(*(face.landmarks[1] - face.landmarks[0])[::-1])))
    mask = np.zeros(shape, dtype=np.uint8)
    cv2.ellipse(mask, (round(centre[0]), round(centre[1])), axes, angle, 0, 360, 255, -1)
    return mask
