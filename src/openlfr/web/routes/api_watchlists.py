"""Governed watchlists over JSON: ``/api/v1/watchlists``, ``/api/v1/subjects`` and
``/api/v1/subject-images`` (subject images are uploaded as ``multipart/form-data``).

Every route calls the governance services (:mod:`openlfr.governance.watchlists`), which check
the caller's role with :func:`~openlfr.governance.authz.require` (a refusal is audited, 403).
Uploads are checked here first — size (:data:`UPLOAD_MAX_BYTES`, else 413) and type by content
(JPEG, PNG, WebP, BMP or TIFF, else 400) — and then by the service: the image header (pixels,
shape, memory needed: a pixel bomb is refused before decoding), a bounded decode (503 when too
many run at once), exactly one face of enrolment quality. Nothing is stored unless every image
passes. Uploaded files are held in memory only, never spooled to a temporary file
(:func:`keep_uploads_in_memory`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as FormFile  # a parsed form's file
from starlette.formparsers import MultiPartParser

from openlfr import errors
from openlfr.governance import watchlists as wls
from openlfr.governance.authz import Actor, Perm, require
from openlfr.governance.views import SubjectView, WatchlistDetail, WatchlistView
from openlfr.vision.registry import default_backend
from openlfr.web.deps import CurrentActor, web

router = APIRouter(prefix="/api/v1", tags=["watchlists"])

#: Largest image file accepted per upload, in bytes (the service's own limit is larger).
UPLOAD_MAX_BYTES = 10 * 1024 * 1024
#: Most images one upload request may carry.
MAX_UPLOAD_IMAGES = 5

_MAGIC: tuple[tuple[bytes, int, str, str], ...] = (
    (b"\xff\xd8\xff", 0, "JPEG", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "PNG", "image/png"),
    (b"WEBP", 8, "WebP", "image/webp"),
    (b"BM", 0, "BMP", "image/bmp"),
    (b"II*\x00", 0, "TIFF", "image/tiff"),
    (b"MM\x00*", 0, "TIFF", "image/tiff"),
)


def keep_uploads_in_memory() -> None:
    """Keep every uploaded file in memory while a request is handled: Starlette spools a file
    part over 1 MB to an (unencrypted) temporary file on disk, and a reference image must never
    lie there. 0 means "never roll over to disk"; the request body limit
    (:data:`openlfr.web.security.BODY_LIMITS`) bounds what is held."""
    MultiPartParser.spool_max_size = 0


class UploadProblem(errors.InvalidInput):
    """An uploaded file refused before decoding; ``status`` is the HTTP answer (400 or 413)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def image_type(data: bytes) -> tuple[str, str] | None:
    """(format name, media type) from the file's first bytes, or None if not an image we take."""
    for magic, offset, name, media in _MAGIC:
        if data[offset:offset + len(magic)] == magic and (name != "WebP"
                                                           or data[:4] == b"RIFF"):
            return name, media
    return None


async def read_image_upload(upload: FormFile, label: str) -> bytes:
    """The bytes of one uploaded image, refused (:class:`UploadProblem`) when empty, over
    :data:`UPLOAD_MAX_BYTES` or not an image by its content (whatever its name says)."""
    data = await upload.read(UPLOAD_MAX_BYTES + 1)
    if len(data) > UPLOAD_MAX_BYTES:
        raise UploadProblem(f"{label}: the file is larger than the limit of "
                            f"{UPLOAD_MAX_BYTES // (1024 * 1024)} MiB", 413)
    if not data:
        raise UploadProblem(f"{label}: the file is empty")
    if image_type(data) is None:
        raise UploadProblem(f"{label}: not an image: the file's content is not JPEG, PNG, "
                            "WebP, BMP or TIFF (whatever its name or declared type says)")
    return data


def upload_label(index: int, upload: FormFile) -> str:
    name = (upload.filename or "").strip()[:80]
    return f"image {index}" + (f" ({name})" if name else "")


async def read_images(uploads: list[UploadFile], sources: list[str]
                      ) -> list[tuple[bytes, str]]:
    """The (bytes, source) pairs of an upload request, each checked."""
    if not uploads:
        raise UploadProblem("at least one image is required")
    if len(uploads) > MAX_UPLOAD_IMAGES:
        raise UploadProblem(f"{len(uploads)} images: at most {MAX_UPLOAD_IMAGES} per request")
    if len(sources) != len(uploads):
        raise UploadProblem(f"give one source per image: {len(uploads)} image(s), "
                            f"{len(sources)} source(s)")
    out = []
    for i, (upload, source) in enumerate(zip(uploads, sources, strict=True), 1):
        label = upload_label(i, upload)
        if not source.strip():
            raise UploadProblem(f"{label}: the source of the image is required (where it "
                                "comes from: custody record, court file, family…)")
        out.append((await read_image_upload(upload, label), source.strip()))
    return out


# -- models -----------------------------------------------------------------------------------

class WatchlistIn(BaseModel):
    name: str = Field(max_length=200)
    purpose: str = Field(max_length=5000, description="The deployment purpose it serves.")
    backend: str = Field(default_factory=default_backend, max_length=40)
    max_subjects: int | None = Field(default=None, ge=1)


class ReasonIn(BaseModel):
    reason: str = Field(min_length=1, max_length=5000)


class OptionalReasonIn(BaseModel):
    reason: str | None = Field(default=None, max_length=5000)


class DestroyOut(BaseModel):
    """``destroyed`` is true only when nothing of the watchlist can be recovered from the data
    directory; else ``purge_pending`` (a reader held the database) until the retention job
    completes it. ``key_destroyed``: the data key's file is deleted."""

    watchlist_id: int
    subjects: int
    images: int
    key_destroyed: bool
    destroyed: bool
    purge_pending: bool


class RemovedOut(BaseModel):
    """``destroyed``: the subject's images are gone from the data directory; else
    ``purge_pending`` until the retention job completes it."""

    subject_id: int
    images_removed: int
    destroyed: bool
    purge_pending: bool




def _upload_error(exc: UploadProblem) -> HTTPException:
    return HTTPException(exc.status, str(exc))


# -- routes -----------------------------------------------------------------------------------

@router.get("/watchlists", response_model=list[WatchlistView])
def list_watchlists(request: Request, actor: CurrentActor,
                    include_destroyed: bool = True) -> list[WatchlistView]:
    """Every watchlist, its state, size, editors and approver."""
    return wls.list_watchlists(web(request).db, actor, include_destroyed)


@router.post("/watchlists", status_code=201, response_model=WatchlistView)
def create_watchlist(request: Request, body: WatchlistIn, actor: CurrentActor
                     ) -> WatchlistView:
    """A new, empty draft watchlist (operators, supervisors, authorising officers)."""
    return wls.create_watchlist(web(request).system, actor, body.name, body.purpose,
                                body.backend, body.max_subjects)


@router.get("/watchlists/{watchlist_id}", response_model=WatchlistDetail)
def show_watchlist(request: Request, watchlist_id: int, actor: CurrentActor
                   ) -> WatchlistDetail:
    """A watchlist with its subjects and each image's source and digest (never the image)."""
    return wls.show_watchlist(web(request).db, actor, watchlist_id)


async def _check_edit(request: Request, actor: Actor, object_type: str, object_id: int) -> None:
    await run_in_threadpool(require, web(request).db, actor, Perm.WATCHLIST_EDIT, object_type,
                            str(object_id))


@router.post("/watchlists/{watchlist_id}/subjects", status_code=201,
             response_model=SubjectView)
async def add_subject(
    request: Request, watchlist_id: int, actor: CurrentActor,
    reference: Annotated[str, Form(max_length=200, description="Name or case reference.")],
    category: Annotated[str, Form(max_length=60)],
    reason: Annotated[str, Form(max_length=5000, description="Why the subject is included.")],
    expires: Annotated[str, Form(max_length=60, description="2027-01-31 (the end of that day, "
                                                 "UTC), an ISO time with its zone, or a "
                                                 "duration: 90d, 12w, 48h.")],
    image: Annotated[list[UploadFile], File(description="Reference images.")],
    source: Annotated[list[str], Form(description="The source of each image, in order.")],
    is_minor: Annotated[bool, Form()] = False,
    minor_justification: Annotated[str | None, Form(max_length=5000)] = None,
) -> SubjectView:
    """Add a subject with its reference images (multipart). Each image must hold exactly one
    face of enrolment quality; one failure adds nothing (400, or 413 for a file too large)."""
    await _check_edit(request, actor, "watchlist", watchlist_id)
    try:
        images = await read_images(image, source)
    except UploadProblem as exc:
        raise _upload_error(exc) from None
    expires_at = wls.parse_expiry(expires)
    info = await run_in_threadpool(
        wls.add_subject, web(request).system, actor, watchlist_id, reference, category,
        reason, expires_at, images, is_minor, minor_justification)
    return info


@router.post("/subjects/{subject_id}/images", status_code=201, response_model=SubjectView)
async def add_images(
    request: Request, subject_id: int, actor: CurrentActor,
    image: Annotated[list[UploadFile], File()],
    source: Annotated[list[str], Form()],
) -> SubjectView:
    """More reference images of an existing subject (same checks)."""
    await _check_edit(request, actor, "subject", subject_id)
    try:
        images = await read_images(image, source)
    except UploadProblem as exc:
        raise _upload_error(exc) from None
    info = await run_in_threadpool(wls.add_image, web(request).system, actor, subject_id,
                                   images)
    return info


@router.post("/subjects/{subject_id}/remove", response_model=RemovedOut)
def remove_subject(request: Request, subject_id: int, body: OptionalReasonIn,
                   actor: CurrentActor) -> dict[str, Any]:
    """Take a subject and its images off its watchlist (an approved one goes back to draft)."""
    r = wls.remove_subject(web(request).db, actor, subject_id, body.reason)
    return {"subject_id": subject_id, "images_removed": r.images, "destroyed": r.destroyed,
            "purge_pending": r.purge_pending}


@router.post("/watchlists/{watchlist_id}/approve", response_model=WatchlistView)
def approve(request: Request, watchlist_id: int, actor: CurrentActor) -> WatchlistView:
    """Approve (an authorising officer who neither built nor changed it)."""
    return wls.approve_watchlist(web(request).db, actor, watchlist_id)


@router.post("/watchlists/{watchlist_id}/destroy", response_model=DestroyOut)
def destroy(request: Request, watchlist_id: int, body: ReasonIn,
            actor: CurrentActor) -> dict[str, Any]:
    """Delete its subjects, images and data key (crypto-shredding); the record stays.
    ``destroyed: false, purge_pending: true`` when another connection kept the purge from
    completing (the retention job completes it)."""
    r = wls.destroy_watchlist(web(request).system, actor, watchlist_id, body.reason)
    return r.as_dict()


def image_response(data: bytes) -> Response:
    """A decrypted reference image: never cached, never sniffed."""
    kind = image_type(data)
    return Response(data, media_type=kind[1] if kind else "application/octet-stream",
                    headers={"Cache-Control": "no-store, private",
                             "Content-Disposition": "inline"})


@router.get("/subject-images/{image_id}", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}})
def subject_image(request: Request, image_id: int, actor: CurrentActor) -> Response:
    """The reference image itself, decrypted (audited ``subject_image.view``; not cached)."""
    return image_response(wls.subject_image(web(request).system, actor, image_id))
