"""Embed the images of an evaluation dataset once, optionally resuming from a template cache.

The cache (``--cache DIR``, off by default) is one ``.npz`` per model id in ``DIR``, keyed by
the SHA-256 of each image file's bytes, so renaming or moving a dataset does not invalidate it
and a changed file is embedded again. It also remembers images without a usable face (and why),
so a resumed run does not retry them. Writes are atomic (temporary file + ``os.replace``) and
happen every :data:`SAVE_EVERY` new images, so an interrupted run loses little.

The cache holds biometric templates of the dataset's people: it is for evaluation data only,
never for images from a live deployment.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from openlfr.errors import InvalidInput
from openlfr.evaluation.verify import FailedImage, _progress, embed_image
from openlfr.vision import FaceEngine
from openlfr.vision.types import FloatArray, Template

#: New entries between two saves of the cache.
SAVE_EVERY = 250


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _safe_name(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model_id) or "model"


class TemplateCache:
    """Templates (and failure reasons) of one model, keyed by image SHA-256, in one ``.npz``."""

    def __init__(self, directory: Path, model_id: str) -> None:
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise FileNotFoundError(f"--cache {self.directory}: not a directory")
        self.model_id = model_id
        self.path = self.directory / f"{_safe_name(model_id)}.npz"
        self._vectors: dict[str, FloatArray] = {}
        self._failed: dict[str, str] = {}
        self._dirty = 0
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        try:
            with np.load(self.path, allow_pickle=False) as data:
                stored = str(data["model_id"])
                if stored != self.model_id:
                    raise InvalidInput(f"template cache {self.path} holds {stored!r} templates, "
                                        f"not {self.model_id!r}")
                for digest, vec in zip(data["digests"], data["vectors"], strict=True):
                    self._vectors[str(digest)] = np.asarray(vec, dtype=np.float32)
                for digest, reason in zip(data["fail_digests"], data["fail_reasons"],
                                          strict=True):
                    self._failed[str(digest)] = str(reason)
        except (OSError, KeyError, EOFError) as exc:
            raise InvalidInput(f"template cache {self.path} is unreadable ({exc}); "
                                "delete it to start again") from exc

    def __len__(self) -> int:
        return len(self._vectors) + len(self._failed)

    def get(self, digest: str) -> FloatArray | str | None:
        """The cached vector, the cached failure reason, or ``None`` if unknown."""
        if digest in self._vectors:
            return self._vectors[digest]
        return self._failed.get(digest)

    def put(self, digest: str, value: FloatArray | str) -> None:
        if isinstance(value, str):
            self._failed[digest] = value
            self._vectors.pop(digest, None)
        else:
            self._vectors[digest] = np.asarray(value, dtype=np.float32)
            self._failed.pop(digest, None)
        self._dirty += 1
        if self._dirty >= SAVE_EVERY:
            self.save()

    def save(self) -> None:
        """Write the cache atomically (no-op when nothing changed)."""
        if not self._dirty and self.path.exists():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        digests = sorted(self._vectors)
        dim = len(next(iter(self._vectors.values()))) if self._vectors else 0
        vectors = (np.stack([self._vectors[d] for d in digests]) if digests
                   else np.empty((0, dim), dtype=np.float32))
        fails = sorted(self._failed)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, model_id=np.array(self.model_id),
                         digests=np.array(digests, dtype=str), vectors=vectors,
                         fail_digests=np.array(fails, dtype=str),
                         fail_reasons=np.array([self._failed[d] for d in fails], dtype=str))
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._dirty = 0


@dataclass
class Embedded:
    """Templates of a list of images: ``vectors[i]`` belongs to ``paths[index[i]]``."""

    paths: list[str]
    vectors: FloatArray
    index: np.ndarray
    failed: list[FailedImage] = field(default_factory=list)
    cached: int = 0

    def row_of(self) -> dict[int, int]:
        """Image position → row of ``vectors``."""
        return {int(i): r for r, i in enumerate(self.index)}


def embed_paths(
    engine: FaceEngine,
    root: Path,
    rel_paths: Sequence[str],
    cache_dir: Path | None = None,
    progress: bool = True,
) -> Embedded:
    """Embed ``root / p`` for each ``p`` (the central face of each image); failures are kept
    with their reason. With ``cache_dir``, known images are read from the cache and new ones
    added to it."""
    cache = TemplateCache(cache_dir, engine.model_id) if cache_dir is not None else None
    rows: list[FloatArray] = []
    index: list[int] = []
    failed: list[FailedImage] = []
    hits = 0
    dim = 0
    try:
        with _progress(progress) as bar:
            task = bar.add_task(f"embedding ({engine.backend})", total=len(rel_paths))
            for i, rel in enumerate(rel_paths):
                path = Path(root) / rel
                result: FloatArray | str | None = None
                digest = ""
                if cache is not None:
                    try:
                        digest = sha256_file(path)
                    except OSError as exc:
                        result = f"unreadable: {exc.strerror or exc}"
                    else:
                        result = cache.get(digest)
                        hits += result is not None
                if result is None:
                    made = embed_image(engine, path)
                    result = made.vector if isinstance(made, Template) else made
                    if cache is not None and digest:
                        cache.put(digest, result)
                if isinstance(result, str):
                    failed.append(FailedImage(rel, result))
                else:
                    rows.append(np.asarray(result, dtype=np.float32))
                    dim = len(result)
                    index.append(i)
                bar.advance(task)
    finally:
        if cache is not None:
            cache.save()
    vectors = np.stack(rows) if rows else np.empty((0, dim), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True) if len(rows) else None
    if norms is not None:
        vectors = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
    return Embedded(list(rel_paths), vectors, np.array(index, dtype=np.int64), failed, hits)
