"""Enrolment: turn photos into watchlist references, accepting only clean single-face photos.

An image is accepted only when exactly one face in it meets the enrolment quality policy. Every
refusal carries a named reason; one bad photo never stops the others.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from openlfr.errors import InvalidInput
from openlfr.vision.engine import ENROL_PADDING, FaceEngine
from openlfr.vision.imageio import (
    IMAGE_SUFFIXES,
    MAX_FILE_BYTES,
    ImageArray,
    ImageBusy,
    ImageError,
    as_image,
    decode_image,
    is_image_file,
)
from openlfr.vision.quality import ENROLMENT, QualityPolicy
from openlfr.vision.types import Face, Template
from openlfr.watchlist.store import Reference, Watchlist


@dataclass(frozen=True)
class ImageOutcome:
    path: str
    subject_id: str
    accepted: bool
    reason: str = ""
    reference_id: str = ""
    quality: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "subject": self.subject_id,
            "accepted": self.accepted,
            "reason": self.reason,
            "reference_id": self.reference_id,
            "quality": self.quality,
        }


@dataclass(frozen=True)
class EnrolJob:
    """One image to enrol for one subject."""

    path: Path
    subject_id: str
    display_name: str


@dataclass(frozen=True)
class Assessment:
    """What enrolment found in one image: the accepted face and its template, or why not."""

    face: Face | None
    template: Template | None
    reason: str


def plan(path: Path, subject_id: str | None = None, display_name: str | None = None
         ) -> list[EnrolJob]:
    """The images to enrol from a file or a folder of ``<subject>/<images>``.

    A single image belongs to ``subject_id`` (default: the file's stem). In a folder, each
    sub-folder's name is the subject id; images lying directly in the folder need ``subject_id``.
    """
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_file():
        sid = subject_id or path.stem
        return [EnrolJob(path, sid, display_name or sid)]
    jobs: list[EnrolJob] = []
    loose = sorted(p for p in path.iterdir() if is_image_file(p))
    if loose:
        if subject_id is None:
            raise InvalidInput(
                f"{path} holds images directly ({loose[0].name}, …): put each subject's images "
                "in a sub-folder named after the subject, or give --subject"
            )
        jobs += [EnrolJob(p, subject_id, display_name or subject_id) for p in loose]
    for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images = sorted(p for p in sub.rglob("*") if is_image_file(p))
        name = sub.name.replace("_", " ")
        jobs += [EnrolJob(p, sub.name, name) for p in images]
    if not jobs:
        looked = ", ".join(sorted(IMAGE_SUFFIXES))
        raise InvalidInput(f"{path}: no images found (looked for {looked})")
    return jobs


def assess(engine: FaceEngine, image: ImageArray, policy: QualityPolicy = ENROLMENT,
           flip: bool = False) -> Assessment:
    """Find exactly one enrolment-quality face (padding the image for tight crops).

    ``flip``: the template is the normalised mean of the face's and its mirror image's
    (the probe side is unchanged, so it stays comparable with live templates)."""
    faces = engine.detect(image, policy)
    if not faces:
        faces = engine.detect(image, policy, pad=ENROL_PADDING)
    if not faces:
        return Assessment(None, None, "no_face: no face found in the image")
    good = [f for f in faces if f.quality is not None and f.quality.ok]
    if len(good) > 1:
        return Assessment(None, None,
                          f"multiple_faces: {len(good)} faces of enrolment quality; "
                          "crop the photo to the one person")
    if not good:
        best = faces[0]
        reasons = "; ".join(best.quality.reasons) if best.quality else "quality"
        return Assessment(best, None, reasons)
    template = engine.embed(image, good)[0]
    if flip:
        mirror = as_image(np.ascontiguousarray(cv2.flip(image, 1)))
        other = engine.embed(mirror, [good[0].mirrored(image.shape[1])])[0]
        mean = template.vector + other.vector
        template = Template((mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32),
                            template.model_id)
    return Assessment(good[0], template, "")


def enrol(
    engine: FaceEngine,
    watchlist: Watchlist,
    jobs: Iterable[EnrolJob],
    metadata: dict[str, str] | None = None,
    on_result: Callable[[ImageOutcome], None] | None = None,
    flip: bool = False,
) -> list[ImageOutcome]:
    """Enrol each job's image into ``watchlist`` (in memory; the caller saves); ``flip``: see
    :func:`assess`."""
    if watchlist.model_id != engine.model_id:
        raise InvalidInput(
            f"the watchlist holds {watchlist.model_id!r} templates but the engine makes "
            f"{engine.model_id!r}; scores of different models are not comparable"
        )
    outcomes: list[ImageOutcome] = []
    for job in jobs:
        outcome = _enrol_one(engine, watchlist, job, metadata or {}, flip)
        outcomes.append(outcome)
        if on_result is not None:
            on_result(outcome)
    return outcomes


def _enrol_one(engine: FaceEngine, watchlist: Watchlist, job: EnrolJob,
               metadata: dict[str, str], flip: bool = False) -> ImageOutcome:
    label = str(job.path)
    try:
        size = job.path.stat().st_size
        if size > MAX_FILE_BYTES:
            return ImageOutcome(label, job.subject_id, False,
                                f"unreadable: too large: {size:,} bytes, more than the limit "
                                f"of {MAX_FILE_BYTES:,}")
        data = job.path.read_bytes()
    except OSError as exc:
        return ImageOutcome(label, job.subject_id, False,
                            f"unreadable: cannot read it ({exc.strerror or exc})")
    digest = hashlib.sha256(data).hexdigest()
    ref_id = f"{job.subject_id}/{digest[:12]}"
    subject = watchlist.subjects.get(job.subject_id)
    if subject is not None and any(r.image_sha256 == digest for r in subject.references):
        return ImageOutcome(label, job.subject_id, False,
                            "duplicate: this image is already enrolled for this subject")
    try:
        image = decode_image(data, label)
    except ImageError as exc:
        return ImageOutcome(label, job.subject_id, False, f"unreadable: {exc.detail}")
    except ImageBusy as exc:
        return ImageOutcome(label, job.subject_id, False, f"busy: {exc}")
    found = assess(engine, image, flip=flip)
    quality = found.face.quality.as_dict() if found.face and found.face.quality else {}
    if found.template is None:
        return ImageOutcome(label, job.subject_id, False, found.reason, quality=quality)
    watchlist.ensure_subject(job.subject_id, job.display_name, metadata)
    reference = Reference(
        id=ref_id,
        source=str(job.path),
        image_sha256=digest,
        added_at=datetime.now(UTC).isoformat(timespec="seconds"),
        quality=quality,
    )
    watchlist.add_reference(job.subject_id, reference, found.template.vector)
    return ImageOutcome(label, job.subject_id, True, reference_id=ref_id, quality=quality)
