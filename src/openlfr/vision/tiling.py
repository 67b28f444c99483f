"""Small faces in large frames: detection on overlapping tiles and on regions of interest at
the frame's own resolution, merged into one list of faces in frame coordinates.

A detector run on a whole 1080p or 4K frame scaled down to 640 pixels sees a 30-pixel face as
10 or 5 pixels, below what it can find. Here the frame is cut into overlapping tiles (or into a
few regions around faces already tracked) that are detected unscaled, so a face keeps its
pixels; the faces of all pieces are merged by non-maximum suppression.

Seams: a face that touches a piece's edge inside the frame is cut by it, so it is dropped from
that piece; any face narrower and shorter than the overlap lies whole in a neighbouring tile,
and larger faces are the caller's downscaled pass's to find (a face wider than the overlap is
wide enough to survive the downscale). The coordinates of every face returned are those of the
full frame, so crops for recognition are taken from the full-resolution frame.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence

import cv2
import numpy as np

from openlfr.vision.imageio import ImageArray, as_image
from openlfr.vision.protocols import Detector
from openlfr.vision.types import Face

Region = tuple[int, int, int, int]  # x0, y0, x1, y1 (x1, y1 exclusive)

#: YuNet pads its input to a multiple of this: tiles are sized to it.
ALIGN = 32
#: Faces larger than this (pixels) are detected in a region of interest scaled down to it:
#: YuNet finds them as well and the region costs less.
ROI_FACE = 64.0


def tile_grid(width: int, height: int, tile: int = 640, overlap: int = 128) -> list[Region]:
    """Overlapping tiles covering a ``width`` x ``height`` frame: as few as tiles of at most
    ``tile`` pixels a side allow, spread evenly, neighbours overlapping by at least
    ``overlap`` pixels, sides rounded up to a multiple of 32 where the frame allows."""
    if tile < 2 * ALIGN or overlap < 0 or overlap >= tile:
        raise ValueError("tiles need a side of at least 64 pixels and an overlap below it")
    xs = _spans(width, tile, overlap)
    ys = _spans(height, tile, overlap)
    return [(x0, y0, x1, y1) for y0, y1 in ys for x0, x1 in xs]


def _spans(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    if length <= tile:
        return [(0, length)]
    count = math.ceil((length - overlap) / (tile - overlap))
    side = math.ceil((length + (count - 1) * overlap) / count)
    side = min(length, math.ceil(side / ALIGN) * ALIGN)
    starts = np.linspace(0, length - side, count).round().astype(int).tolist()
    return [(s, s + side) for s in starts]


def detect_regions(detector: Detector, image: ImageArray, regions: Iterable[Region],
                   scales: Sequence[float] | None = None, edge: int = 2) -> list[Face]:
    """The faces found in each region of ``image``, in frame coordinates, without the faces
    cut by a region's edge inside the frame (within ``edge`` pixels of it). A region is
    detected at its own resolution, or scaled by its entry of ``scales`` (at most 1).
    Not merged: see :func:`merge_faces`."""
    h, w = image.shape[:2]
    found: list[Face] = []
    for n, (x0, y0, x1, y1) in enumerate(regions):
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 - x0 < 16 or y1 - y0 < 16:
            continue
        scale = min(1.0, scales[n]) if scales is not None else 1.0
        pw, ph = max(round((x1 - x0) * scale), 16), max(round((y1 - y0) * scale), 16)
        piece = np.ascontiguousarray(image[y0:y1, x0:x1])
        if (pw, ph) != (x1 - x0, y1 - y0):
            piece = as_image(cv2.resize(piece, (pw, ph), interpolation=cv2.INTER_AREA))
        sx, sy = (x1 - x0) / pw, (y1 - y0) / ph
        for face in detector.detect(piece):
            fx, fy, fw, fh = face.box
            if ((x0 > 0 and fx <= edge) or (y0 > 0 and fy <= edge)
                    or (x1 < w and fx + fw >= pw - edge)
                    or (y1 < h and fy + fh >= ph - edge)):
                continue  # cut by an inner edge: whole in a neighbour, or too big to be here
            if (sx, sy) != (1.0, 1.0):
                face = Face((fx * sx, fy * sy, fw * sx, fh * sy),
                            (face.landmarks * np.array([sx, sy], dtype=np.float32)
                             ).astype(np.float32), face.score)
            found.append(face.shifted(x0, y0))
    return found


def detect_tiled(detector: Detector, image: ImageArray, tile: int = 640,
                 overlap: int = 128) -> list[Face]:
    """Every face of ``image`` found on overlapping tiles at its own resolution, merged."""
    h, w = image.shape[:2]
    return merge_faces(detect_regions(detector, image, tile_grid(w, h, tile, overlap)))


def merge_faces(faces: Sequence[Face], iou: float = 0.4, contained: float = 0.75) -> list[Face]:
    """Non-maximum suppression across pieces: of faces that overlap by more than ``iou``
    (intersection over union), or of which one lies mostly (``contained`` of its area) inside
    the other, the highest-scoring is kept. Largest first, as a detector returns them."""
    order = sorted(faces, key=lambda f: f.score, reverse=True)
    kept: list[Face] = []
    for face in order:
        if all(not _same(face.box, other.box, iou, contained) for other in kept):
            kept.append(face)
    kept.sort(key=lambda f: f.box[2] * f.box[3], reverse=True)
    return kept


def _same(a: tuple[float, float, float, float], b: tuple[float, float, float, float],
          iou: float, contained: float) -> bool:
    ix = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    iy = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return False
    inter = ix * iy
    area_a, area_b = a[2] * a[3], b[2] * b[3]
    union = area_a + area_b - inter
    return inter > iou * union or inter > contained * min(area_a, area_b)


def roi_regions(boxes: Iterable[tuple[float, float, float, float]], width: int, height: int,
                expand: float = 1.0, min_side: int = 96
                ) -> tuple[list[Region], list[float]]:
    """Regions to detect around predicted face ``boxes`` (x, y, w, h), and the scale to detect
    each at: each box grown by ``expand`` times its larger side on every side (room to move and
    to grow), at least ``min_side`` pixels square, clipped to the frame. A region is scaled so
    that its smallest face is at most :data:`ROI_FACE` pixels (never enlarged). Overlapping
    regions are joined where one region costs no more pixels than the two."""
    regions: list[list[int]] = []
    sides: list[float] = []
    for x, y, bw, bh in boxes:
        if not all(math.isfinite(v) for v in (x, y, bw, bh)) or bw <= 0 or bh <= 0:
            continue
        pad = expand * max(bw, bh)
        cx, cy = x + bw / 2, y + bh / 2
        half = max((max(bw, bh) + 2 * pad) / 2, min_side / 2)
        x0, y0 = max(int(cx - half), 0), max(int(cy - half), 0)
        x1, y1 = min(math.ceil(cx + half), width), min(math.ceil(cy + half), height)
        if x1 - x0 >= 16 and y1 - y0 >= 16:
            regions.append([x0, y0, x1, y1])
            sides.append(max(bw, bh))
    scales = [min(1.0, ROI_FACE / side) for side in sides]
    joined = True
    while joined:  # a handful of regions: quadratic is fine
        joined = False
        for i, j in itertools.combinations(range(len(regions)), 2):
            a, b = regions[i], regions[j]
            if not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]):
                continue
            union = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
            scale = max(scales[i], scales[j])  # the smaller face keeps its pixels
            if _cost(union, scale) > _cost(a, scales[i]) + _cost(b, scales[j]):
                continue  # cheaper as two (e.g. a large face's region beside a small one's)
            regions[i], scales[i] = union, scale
            del regions[j], scales[j]
            joined = True
            break
    return [(r[0], r[1], r[2], r[3]) for r in regions], scales


def _cost(region: list[int], scale: float) -> float:
    """Pixels a detector sees for ``region`` scaled by ``scale`` (its cost is about linear)."""
    return (region[2] - region[0]) * (region[3] - region[1]) * scale * scale
