"""Analysis zones and privacy masks of one camera.

Polygons are in normalised coordinates (``x`` and ``y`` from 0 to 1 across the frame), so they
survive a change of resolution. **Analysis zones**: a face is analysed only when the centre of
its box lies in one of them (no zone: the whole frame). **Privacy masks**: filled black in the
frame before anything else sees it (detection, tracking, quality, crops, preview, alert
crops), so what lies under them is never analysed nor shown.

The masks are turned into pixel polygons once per frame size (cached) and applied with one copy
and one ``cv2.fillPoly`` per frame.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from openlfr.errors import InvalidInput

#: Points of one polygon, and polygons of one kind per camera.
MIN_POINTS, MAX_POINTS = 3, 64
MAX_POLYGONS = 16
#: The smallest area a polygon may cover (a share of the frame): below it, it is degenerate.
MIN_AREA = 1e-4

Point = tuple[float, float]
Polygon = tuple[Point, ...]
KINDS = ("zones", "masks")


def polygon_area(poly: Sequence[Point]) -> float:
    """The polygon's area, as a share of the frame (shoelace formula)."""
    total = 0.0
    for (x1, y1), (x2, y2) in zip(poly, [*poly[1:], poly[0]], strict=True):
        total += x1 * y2 - x2 * y1
    return abs(total) / 2.0


def check_polygons(value: Any, camera: str, kind: str) -> tuple[Polygon, ...]:
    """``value`` (a list of polygons, each a list of ``[x, y]`` pairs from 0 to 1) checked
    and tidied; a clear :class:`InvalidInput` naming the camera and the field otherwise."""
    where = f"camera {camera}: {kind}"
    if value is None:
        return ()
    if isinstance(value, str):
        value = parse_polygons(value, camera, kind)
    if not isinstance(value, list | tuple):
        raise InvalidInput(f"{where} must be a list of polygons", field=kind)
    if len(value) > MAX_POLYGONS:
        raise InvalidInput(f"{where}: at most {MAX_POLYGONS} polygons per camera "
                           f"({len(value)} given)", field=kind)
    out = []
    for n, poly in enumerate(value, 1):
        if not isinstance(poly, list | tuple):
            raise InvalidInput(f"{where}: polygon {n} must be a list of [x, y] points",
                               field=kind)
        if not MIN_POINTS <= len(poly) <= MAX_POINTS:
            raise InvalidInput(f"{where}: polygon {n} has {len(poly)} points; a polygon has "
                               f"{MIN_POINTS} to {MAX_POINTS}", field=kind)
        points = []
        for point in poly:
            if (not isinstance(point, list | tuple) or len(point) != 2
                    or not all(isinstance(c, int | float) and not isinstance(c, bool)
                               for c in point)):
                raise InvalidInput(f"{where}: polygon {n}: a point must be [x, y] "
                                   f"(got {str(point)[:40]})", field=kind)
            x, y = float(point[0]), float(point[1])
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise InvalidInput(f"{where}: polygon {n}: point [{x:g}, {y:g}] lies outside "
                                   "the frame (coordinates go from 0 to 1)", field=kind)
            points.append((round(x, 5), round(y, 5)))
        if polygon_area(points) < MIN_AREA:
            raise InvalidInput(f"{where}: polygon {n} has no area (its points lie on a line "
                               "or too close together)", field=kind)
        out.append(tuple(points))
    return tuple(out)


def parse_polygons(text: str, camera: str, kind: str) -> list[Any]:
    """Polygons from JSON text (``[[[x, y], ...], ...]``); empty text: none."""
    if not text.strip():
        return []
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"camera {camera}: {kind} is not valid JSON ({exc.msg}); write "
                           "[[[x, y], [x, y], [x, y]], ...] with x and y from 0 to 1",
                           field=kind) from None
    except RecursionError:  # lists nested thousands deep: no polygon looks like that
        raise InvalidInput(f"camera {camera}: {kind} nests its lists too deeply; write "
                           "[[[x, y], [x, y], [x, y]], ...]", field=kind) from None
    if not isinstance(value, list):
        raise InvalidInput(f"camera {camera}: {kind} must be a JSON list of polygons",
                           field=kind)
    return value


def to_json(polygons: Iterable[Polygon]) -> str:
    return json.dumps([[list(p) for p in poly] for poly in polygons], separators=(",", ":"))


def from_json(text: str | None) -> tuple[Polygon, ...]:
    """Stored polygons (already checked when stored)."""
    if not text:
        return ()
    return tuple(tuple((float(x), float(y)) for x, y in poly) for poly in json.loads(text))


def summary(polygons: Sequence[Polygon]) -> dict[str, Any]:
    """Counts and areas (per cent of the frame, as text): what the audit log keeps."""
    return {"count": len(polygons),
            "areas_pct": [f"{100 * polygon_area(p):.1f}" for p in polygons]}


@dataclass
class CameraZones:
    """One camera's zones and masks, with its masks drawn per frame size."""

    zones: tuple[Polygon, ...] = ()
    masks: tuple[Polygon, ...] = ()
    _cache: dict[tuple[int, int], np.ndarray] = field(default_factory=dict, repr=False)
    _pixels: dict[tuple[int, int], list[np.ndarray]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __bool__(self) -> bool:
        return bool(self.zones or self.masks)

    def mask_for(self, height: int, width: int) -> np.ndarray:
        """A ``height`` x ``width`` ``uint8`` image: 255 where the frame is kept, 0 under a
        privacy mask (made once per size)."""
        key = (height, width)
        keep = self._cache.get(key)
        if keep is None:
            keep = np.full((height, width), 255, np.uint8)
            cv2.fillPoly(keep, [_pixels(p, width, height) for p in self.masks], 0)
            with self._lock:
                if len(self._cache) > 8:  # a camera changes resolution rarely
                    self._cache.clear()
                self._cache[key] = keep
        return keep

    def polygons_for(self, height: int, width: int) -> list[np.ndarray]:
        """The masks in pixels of a ``height`` x ``width`` frame (made once per size)."""
        key = (height, width)
        pts = self._pixels.get(key)
        if pts is None:
            pts = [_pixels(p, width, height) for p in self.masks]
            with self._lock:
                if len(self._pixels) > 8:
                    self._pixels.clear()
                self._pixels[key] = pts
        return pts

    def apply(self, image: np.ndarray) -> np.ndarray:
        """The frame with the privacy masks filled black (a copy, so the source's frame is
        never changed; the frame itself when there is no mask). One copy and one
        ``cv2.fillPoly`` of the masked pixels: cheaper than a per-pixel mask."""
        if not self.masks:
            return image
        out = image.copy()
        cv2.fillPoly(out, self.polygons_for(image.shape[0], image.shape[1]),
                     (0,) * (image.shape[2] if image.ndim == 3 else 1))
        return out

    def analysed(self, box: Sequence[float], width: int, height: int) -> bool:
        """Whether a face with box ``(x, y, w, h)`` (pixels) is analysed: its centre lies in an
        analysis zone (or there is none) and outside every privacy mask."""
        cx = (box[0] + box[2] / 2.0) / max(width, 1)
        cy = (box[1] + box[3] / 2.0) / max(height, 1)
        if any(_inside(m, cx, cy) for m in self.masks):
            return False
        return not self.zones or any(_inside(z, cx, cy) for z in self.zones)


def _pixels(poly: Polygon, width: int, height: int) -> np.ndarray:
    return np.array([[round(x * (width - 1)), round(y * (height - 1))] for x, y in poly],
                    np.int32)


def _inside(poly: Polygon, x: float, y: float) -> bool:
    """Point in polygon (even-odd rule)."""
    inside = False
    n = len(poly)
    for i in range(n):
        x1, y1 = poly[i]
        x2, y2 = poly[(i + 1) % n]
        if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
            inside = not inside
    return inside
