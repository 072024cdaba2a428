"""Finds the tiles of a collage, so a photo posted as one tile among others can be searched alone.

A collage shrinks each photo to a half or a third of the side and sets others beside it, so no
signal of the whole upload is near the photo's. Cut on its grid, the collage gives each photo back
as a view of its own (``signals.py`` hashes each with PDQ). A 2x2 or 3x3 grid is used only where
the picture shows one: at each of the grid's lines, within 2% of the side, a seam across the
image: a gutter (a flat line) or a hard edge (over most of its length, a jump between the lines
either side three times the image's usual one). Photographs rarely have such lines at all those
places, so most uploads cost two passes over the thumbnail and nothing more.
"""

from __future__ import annotations

import itertools

import numpy as np

from services.ingest.trimming import grey, peeled_box

GRIDS = (2, 3)
_WINDOW = 0.02  # a seam may sit this far (share of the side) from the grid's line
_FLAT = 6.0  # a gutter line's standard deviation is below this (0-255)
_EDGE = 3.0  # a hard seam's jump is this many times the image's median jump between lines
_SEAM_SHARE = 0.6  # of the line's length that must jump (the rest may be alike by chance)
_MIN_TILE = 48  # px: smaller tiles hold too little for a hash


def collage_tiles(pixels: np.ndarray, shade: np.ndarray | None = None) -> list[np.ndarray]:
    """The tiles of the finest 2x2 or 3x3 grid the image shows seams for; none if it shows none.

    ``shade``: the image's :func:`~services.ingest.trimming.grey`, if the caller has it already.
    """
    shade = grey(pixels) if shade is None else shade
    usual = float(np.median(np.abs(shade[2::3, ::3] - shade[:-2:3, ::3]))) + 1.0  # a sample
    for grid in sorted(GRIDS, reverse=True):
        rows = _seams(shade, grid, usual)
        columns = _seams(shade.T, grid, usual) if rows is not None else None
        if rows is not None and columns is not None:
            return _cut(pixels, shade, [0, *rows, shade.shape[0]], [0, *columns, shade.shape[1]])
    return []


def _seams(grey: np.ndarray, grid: int, usual: float) -> list[int] | None:
    """Where the seams between the ``grid`` bands of rows are, if every one is there.

    Only the rows near the grid's lines are looked at; a hard edge across row r is a jump from
    row r - 1 to r + 1, since scaling and JPEG spread an edge over two rows.
    """
    height = grey.shape[0]
    reach = max(2, round(height * _WINDOW))
    found = []
    for line in range(1, grid):
        centre = round(height * line / grid)
        start, stop = max(1, centre - reach), min(height - 1, centre + reach + 1)
        band = grey[start - 1 : stop + 1]
        flat = band[1:-1].std(axis=1) < _FLAT
        jumps = np.abs(band[2:] - band[:-2]) > _EDGE * usual
        hits = np.flatnonzero(flat | (jumps.mean(axis=1) >= _SEAM_SHARE)) + start
        if len(hits) == 0:
            return None
        found.append(int(hits[np.argmin(np.abs(hits - centre))]))
    return found


def _cut(
    pixels: np.ndarray, grey: np.ndarray, rows: list[int], columns: list[int]
) -> list[np.ndarray]:
    """Each cell of the grid, with any gutter peeled off its sides."""
    tiles = []
    for top, bottom in itertools.pairwise(rows):
        for left, right in itertools.pairwise(columns):
            cell = grey[top:bottom, left:right]
            t, b, lft, rgt = peeled_box(cell)
            if min(b - t, rgt - lft) >= _MIN_TILE:
                tiles.append(
                    np.ascontiguousarray(pixels[top + t : top + b, left + lft : left + rgt])
                )
    return tiles
