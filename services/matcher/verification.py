"""Geometric verification: do an upload's keypoints and an entry's agree on one transform?

The matcher's check for copies that global hashes miss (an overlay over part of the picture, a
small rotation, the picture inside a screenshot). Each upload keypoint is paired with its nearest
entry keypoint by descriptor, if clearly nearer than the second nearest (Lowe's ratio test); RANSAC
then finds the rotation, scale and shift that most pairs agree on. The answer is how many distinct
keypoints agree. Unrelated photographs score a few: at most 9 on the accuracy benchmark
(docs/benchmarks.md).

A transform that collapses the upload to a speck, or pairs that bunch in a corner, would let
chance agreements count, so transforms must keep the scale within 1:5 either way, and the agreeing
points must spread over a twentieth of both images' keypoint extents.
"""

from __future__ import annotations

import cv2
import faiss
import numpy as np

from services.shared.keypoints import Keypoints

RATIO = 0.8
REPROJECTION_PX = 6.0  # in the 512 px frame both images are scaled to
MIN_SCALE, MAX_SCALE = 0.2, 5.0
MIN_SPREAD = 0.05
_MIN_PAIRS = 6
_RANSAC_ITERATIONS = 500


def agreeing_keypoints(upload: Keypoints, entry: Keypoints, needed: int = _MIN_PAIRS) -> int:
    """How many keypoints of ``upload`` map onto ``entry``'s under one similarity transform.

    0 whenever fewer than ``needed`` could: with fewer pairs than that, no transform is sought.
    """
    needed = max(needed, _MIN_PAIRS)
    if len(upload) < needed or len(entry) < needed:
        return 0
    near, source = _paired(upload, entry)
    if len(source) < needed:
        return 0
    target = entry.positions[near]
    cv2.setRNGSeed(0)  # the same upload gets the same answer, replayed after a crash or not
    transform, inliers = cv2.estimateAffinePartial2D(
        upload.positions[source],
        target,
        method=cv2.RANSAC,
        ransacReprojThreshold=REPROJECTION_PX,
        maxIters=_RANSAC_ITERATIONS,
    )
    if transform is None:
        return 0
    scale = float(np.sqrt(abs(np.linalg.det(transform[:, :2]))))
    agreeing = inliers.ravel().astype(bool)
    if not MIN_SCALE <= scale <= MAX_SCALE or not agreeing.any():
        return 0
    spread = min(
        _extent(upload.positions[source][agreeing]) / _extent(upload.positions),
        _extent(target[agreeing]) / _extent(entry.positions),
    )
    return len(np.unique(near[agreeing])) if spread >= MIN_SPREAD else 0


def _paired(upload: Keypoints, entry: Keypoints) -> tuple[np.ndarray, np.ndarray]:
    """(entry keypoint, upload keypoint) pairs that pass the ratio test."""
    index = faiss.IndexBinaryFlat(256)
    index.add(np.ascontiguousarray(entry.descriptors))
    distances, nearest = index.search(np.ascontiguousarray(upload.descriptors), 2)
    clear = distances[:, 0] < RATIO * distances[:, 1]
    return nearest[clear, 0], np.flatnonzero(clear)


def _extent(points: np.ndarray) -> float:
    """The area of the points' bounding box (at least one square pixel)."""
    return max(1.0, float(np.prod(points.max(axis=0) - points.min(axis=0))))
