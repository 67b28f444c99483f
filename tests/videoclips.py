"""Short test clips composed with OpenCV from real face photos (registry-package images).

A clip is a 640x360 MJPG AVI at 15 fps on a textured, deterministic background: a face walking
in from the left and coming closer (``walk_in``), or an empty scene with a moving object and no
face (``empty_scene``). Faces are cut from the photos as head-and-shoulders sprites around the
face YuNet finds, scaled so the face is about ``face_width`` pixels wide.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

WIDTH, HEIGHT, FPS = 640, 360, 15.0


def background(seed: int = 7) -> np.ndarray:
    """A room-like backdrop: a vertical gradient, a floor, some panels and fine texture."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, HEIGHT, dtype=np.float32)[:, None]
    base = np.empty((HEIGHT, WIDTH, 3), dtype=np.float32)
    base[..., 0] = 150 - 60 * y
    base[..., 1] = 140 - 40 * y
    base[..., 2] = 120 - 20 * y
    base[int(HEIGHT * 0.8):] = (70, 80, 95)
    for i in range(6):
        x0 = 20 + i * 105
        colour = rng.integers(60, 200, size=3).tolist()
        cv2.rectangle(base, (x0, 40), (x0 + 70, 180), colour, -1)
    base += rng.normal(0, 6, base.shape).astype(np.float32)
    return np.clip(base, 0, 255).astype(np.uint8)


@lru_cache(maxsize=8)
def _sprite_source(path: str) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    from openlfr.vision import get_engine, load_image

    image = load_image(path)
    faces = get_engine("sface").detect(image)
    if not faces:
        raise ValueError(f"{path}: no face to make a sprite from")
    return image, faces[0].box


def sprite(path: Path, face_width: float) -> np.ndarray:
    """A head-and-shoulders cut of the photo, scaled so the face is ``face_width`` wide."""
    image, (x, y, w, h) = _sprite_source(str(path))
    x0, y0 = max(int(x - 0.6 * w), 0), max(int(y - 0.6 * h), 0)
    x1 = min(int(x + 1.6 * w), image.shape[1])
    y1 = min(int(y + 1.9 * h), image.shape[0])
    cut = image[y0:y1, x0:x1]
    scale = face_width / w
    size = (max(int(cut.shape[1] * scale), 1), max(int(cut.shape[0] * scale), 1))
    return cv2.resize(cut, size, interpolation=cv2.INTER_AREA)


def paste(frame: np.ndarray, patch: np.ndarray, cx: float, top: float) -> None:
    """Paste ``patch`` centred horizontally on ``cx`` with its top at ``top`` (clipped)."""
    ph, pw = patch.shape[:2]
    x0, y0 = int(cx - pw / 2), int(top)
    fx0, fy0 = max(x0, 0), max(y0, 0)
    fx1, fy1 = min(x0 + pw, frame.shape[1]), min(y0 + ph, frame.shape[0])
    if fx1 <= fx0 or fy1 <= fy0:
        return
    frame[fy0:fy1, fx0:fx1] = patch[fy0 - y0: fy1 - y0, fx0 - x0: fx1 - x0]


def write_clip(path: Path, frames: Sequence[np.ndarray], fps: float = FPS) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps,
                             (frames[0].shape[1], frames[0].shape[0]))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path}")
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def walk_in_frames(face: Path, n: int = 40, start_width: float = 55.0,
                   end_width: float = 105.0, seed: int = 7) -> list[np.ndarray]:
    """A person walking in from the left, coming closer, then standing still."""
    bg = background(seed)
    frames = []
    arrive = int(n * 0.6)
    for i in range(n):
        k = min(i / max(arrive, 1), 1.0)
        width = start_width + (end_width - start_width) * k
        cx = -40 + (WIDTH * 0.5 + 40) * k
        frame = bg.copy()
        paste(frame, sprite(face, width), cx, 60 - 20 * k)
        frames.append(frame)
    return frames


def walk_in(path: Path, face: Path, n: int = 40, **kwargs: float) -> Path:
    return write_clip(path, walk_in_frames(face, n, **kwargs))


def empty_frames(n: int = 30, seed: int = 7, prop: Path | None = None) -> list[np.ndarray]:
    """A scene with nobody in it; ``prop`` (a photo without a face) slides across."""
    bg = background(seed)
    thing = None
    if prop is not None:
        thing = cv2.resize(cv2.imread(str(prop)), (120, 80), interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(n):
        frame = bg.copy()
        if thing is not None:
            paste(frame, thing, 60 + i * 15, 220)
        frames.append(frame)
    return frames


def empty_scene(path: Path, n: int = 30, prop: Path | None = None) -> Path:
    return write_clip(path, empty_frames(n, prop=prop))


def corrupt_middle_frame(path: Path, fraction: float = 0.5, length: int = 2000) -> None:
    """Overwrite bytes in the middle of the file (inside one frame's JPEG data) with noise."""
    data = bytearray(path.read_bytes())
    start = int(len(data) * fraction)
    noise = np.random.default_rng(3).integers(0, 256, size=length, dtype=np.uint8).tobytes()
    data[start: start + length] = noise
    path.write_bytes(bytes(data))


class ClipSet:
    """The shared test material: three clips and a watchlist holding Obama (from obama.jpg).

    ``obama`` walks in (obama2.jpg, a different photo of the watchlisted person), ``stranger``
    walks in (biden.jpg, not on the watchlist), ``empty`` has nobody in it.
    """

    def __init__(self, root: Path, face_images: dict[str, Path], no_face: Path) -> None:
        from openlfr.vision import get_engine
        from openlfr.watchlist import Watchlist
        from openlfr.watchlist.enrol import enrol, plan

        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.obama = walk_in(root / "obama.avi", face_images["obama2"])
        self.stranger = walk_in(root / "stranger.avi", face_images["biden"])
        self.empty = empty_scene(root / "empty.avi", prop=no_face)
        engine = get_engine("sface")
        wl = Watchlist(model_id=engine.model_id, dim=engine.embedder.dim)
        outcomes = enrol(engine, wl, plan(face_images["obama"], "obama", "Barack Obama"))
        assert outcomes[0].accepted, outcomes[0].reason
        self.reference_id = outcomes[0].reference_id
        self.watchlist = root / "obama.watchlist"
        wl.save(self.watchlist)


_CLIP_SETS: dict[str, ClipSet] = {}


def clip_set(tmp_path_factory: object, face_images: dict[str, Path], no_face: Path) -> ClipSet:
    """One :class:`ClipSet` per test session (built on first use)."""
    if "main" not in _CLIP_SETS:
        root = tmp_path_factory.mktemp("videoclips")  # type: ignore[attr-defined]
        _CLIP_SETS["main"] = ClipSet(Path(root), face_images, no_face)
    return _CLIP_SETS["main"]


def load_gallery(watchlist: Path) -> tuple[object, dict[str, str]]:
    """The gallery of a watchlist file and its subjects' display names."""
    from openlfr.watchlist import Watchlist

    wl = Watchlist.load(watchlist)
    return wl.gallery(), {sid: s.display_name for sid, s in wl.subjects.items()}


def wait_until(predicate: Callable[[], object], timeout: float = 120.0,
               step: float = 0.02) -> bool:
    """Poll until ``predicate()`` holds; False after ``timeout`` s. The bound is a safety net
    for a test that would otherwise hang: tests assert on counts and states, never on how long
    the wait took."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def wait_for(predicate: Callable[[], object], timeout: float = 120.0) -> None:
    """:func:`wait_until`, failing the test when the bound passes."""
    assert wait_until(predicate, timeout), "timed out"
