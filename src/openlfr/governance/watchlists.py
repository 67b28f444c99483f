"""Governed watchlists, in the database and encrypted (issue #4, point 3).

A watchlist serves one deployment purpose. Each subject carries a category, a written reason
for inclusion, who added it, an expiry and, for an under-18, an extra justification; each
reference image carries its source. An image is accepted only with exactly one face of
enrolment quality. Image bytes and templates are stored only encrypted, under the watchlist's
own data key, with associated data binding each ciphertext to its row
(``subject-image:<id>:image`` / ``subject-image:<id>:template``).

A watchlist is usable only once approved by an authorising officer who neither built nor
changed it (everyone who did is a :class:`~openlfr.store.models.WatchlistEditor`). Any change
to an approved watchlist — a subject or an image added, a subject removed by a person — puts it
back to draft, to be approved again. Destroying it deletes its rows and marks its data key
destroyed in one transaction, then deletes the key's file from the key store (crypto-shredding)
and empties SQLite's log (:mod:`openlfr.governance.purge`): it reports "destroyed" only when
nothing of it can be recovered from the data directory, else a pending purge that the
retention job completes. Removing and expiring subjects report the same way.

Every change checks the actor's permission (:func:`~openlfr.governance.authz.require`) and
writes its audit entry in the same transaction. Audit details hold ids, categories and counts:
never a template, an image, or a subject's name or case reference, since the log is kept for
ever and a subject's personal data must go when the subject goes.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, selectinload

from openlfr.audit import log as audit_log
from openlfr.governance import purge
from openlfr.governance.authz import (
    Actor,
    Conflict,
    NotFound,
    Perm,
    RuleError,
    refuse,
    require,
)
from openlfr.governance.names import check_name, check_text
from openlfr.governance.system import System
from openlfr.governance.times import parse_time, to_utc
from openlfr.governance.views import (
    ImageView,
    SubjectView,
    WatchlistDetail,
    WatchlistView,
)
from openlfr.store.crypto import CryptoError, Keyring, open_sealed, seal
from openlfr.store.db import Database
from openlfr.store.enums import Category, WatchlistStatus, choices
from openlfr.store.models import Subject, SubjectImage, Watchlist, WatchlistEditor, utcnow
from openlfr.watchlist.gallery import Gallery

#: A written reason for inclusion must say something: at least this many characters.
MIN_REASON = 20
#: The extra justification an under-18 subject needs, at least this many characters.
MIN_JUSTIFICATION = 20
#: Largest reference image accepted, in bytes (pixel bombs are refused when decoding).
MAX_IMAGE_BYTES = 20 * 1024 * 1024
#: Reference images analysed (decoded, then searched for a face) at once in this process: one.
#: A large image accepted by the decoder's limits takes up to ~220 MB while it is decoded and
#: ~100 MB while its face is found; one at a time keeps a server's peak within 300 MB however
#: many uploads arrive together (the others wait, then are answered "busy").
_ANALYSIS = threading.BoundedSemaphore(1)
#: Most reference images one subject may have.
MAX_IMAGES_PER_SUBJECT = 20
TEMPLATE_DTYPE = np.dtype("<f4")


# -- what the reading functions return (never a template or image bytes) ----------------------

@dataclass(frozen=True, slots=True)
class DestroyResult:
    """``destroyed``: nothing of the watchlist's data can be recovered from the data
    directory. Otherwise ``purge_pending``: the rows are deleted and, if ``key_destroyed``,
    the data key's file too, but a trace is left (SQLite's log, held by a reader) until the
    retention job completes the purge."""

    watchlist_id: int
    subjects: int
    images: int
    key_destroyed: bool  # the data key's file is deleted
    destroyed: bool
    purge_pending: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class RemovalResult:
    """A subject removed (or subjects expired): ``destroyed`` when none of their data can be
    recovered from the data directory, else ``purge_pending`` (see :class:`DestroyResult`)."""

    subjects: int
    images: int
    destroyed: bool
    purge_pending: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- checks ------------------------------------------------------------------------------------

def parse_category(value: str | Category) -> Category:
    if isinstance(value, Category):
        return value
    key = value.strip().lower().replace("-", "_").replace(" ", "_")
    aliases = {"serious_offence": Category.SERIOUS_OFFENCE,
               "wanted": Category.WANTED_BY_COURT,
               "missing": Category.MISSING_OR_VULNERABLE,
               "vulnerable": Category.MISSING_OR_VULNERABLE}
    try:
        return aliases.get(key) or Category(key)
    except ValueError:
        raise RuleError(f"unknown category {value!r}: choose {choices(Category)}",
                        field="category") from None


def parse_expiry(text: str, now: datetime | None = None) -> datetime:
    """An expiry in the one time format (:func:`openlfr.governance.times.parse_time`: ``90d``,
    ``12w``, ``48h`` from now, an ISO time with its zone), or a date alone (``2027-01-31``:
    the end of that day, UTC)."""
    return parse_time(text, "expires", now, date_only=True)


def _text(value: str | None, what: str, minimum: int = 1) -> str:
    text = check_text((value or "").strip(), what)
    if len(text) < minimum:
        if minimum <= 1:
            raise RuleError(f"{what} is required")
        raise RuleError(f"{what} is required, at least {minimum} characters saying why "
                        f"(got {len(text)})")
    return text


def _check_expiry(expires_at: datetime | None, now: datetime) -> datetime:
    if expires_at is None:
        raise RuleError("an expiry is required: every subject leaves the watchlist at a set time")
    if expires_at.tzinfo is None:
        raise RuleError(f"expiry {expires_at.isoformat()}: give a timezone")
    expires_at = to_utc(expires_at, "expiry")
    if expires_at <= now:
        raise RuleError(f"expiry {expires_at.isoformat()} is not in the future")
    return to_utc(expires_at, "expiry")


# -- images → encrypted references -------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Prepared:
    data: bytes
    source: str
    digest: str
    template: bytes  # float32 little-endian


def _prepare_images(system: System, model_id: str, images: Sequence[tuple[bytes, str]],
                    known_digests: set[str]) -> list[_Prepared]:
    """Check every image (one enrolment-quality face, readable, not a duplicate) and compute
    its template; the first failure raises :class:`RuleError` naming the image and why.

    The cheap checks (source, size, duplicate, the image header: dimensions, shape, memory
    needed) run on every image before any is decoded, so a hostile file is refused at once.
    Decoding is bounded by :mod:`openlfr.vision.imageio` (:class:`~openlfr.vision.imageio.
    ImageBusy` when too many run at once: not the image's fault, the caller answers "busy").
    """
    from openlfr.governance.models import engine_for
    from openlfr.vision import imageio
    from openlfr.vision.imageio import (
        ImageBusy,
        ImageError,
        decode_image,
        probe_image,
        release_memory,
    )
    from openlfr.vision.registry import ModelError
    from openlfr.watchlist.enrol import assess

    if not images:
        raise RuleError("at least one image is required")
    checked: list[tuple[bytes, str, str, str]] = []  # data, source, digest, label
    seen = set(known_digests)
    for i, item in enumerate(images, 1):
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise RuleError(f"image {i}: expected (bytes, source)")
        data, source = item
        source = (source or "").strip()
        label = f"image {i} ({source or 'no source'})"
        if not source:
            raise RuleError(f"{label}: the source of the image is required")
        if not isinstance(data, bytes | bytearray) or not data:
            raise RuleError(f"{label}: empty")
        data = bytes(data)
        if len(data) > MAX_IMAGE_BYTES:
            raise RuleError(f"{label}: {len(data):,} bytes, more than the limit of "
                            f"{MAX_IMAGE_BYTES:,}")
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            raise RuleError(f"{label}: duplicate: this image is already a reference of this "
                            "subject")
        seen.add(digest)
        try:
            probe_image(data, label)
        except ImageError as exc:
            raise RuleError(f"{label}: unreadable: {exc.detail}") from None
        checked.append((data, source, digest, label))
    try:
        engine = engine_for(system.db, model_id, system.settings.data_dir)
    except ModelError as exc:
        raise RuleError(str(exc)) from None
    if engine.model_id != model_id:
        raise RuleError(f"the watchlist holds {model_id!r} templates; this openlfr makes "
                        f"{engine.model_id!r}, and scores of different models are not "
                        "comparable")
    out: list[_Prepared] = []
    for data, source, digest, label in checked:
        if not _ANALYSIS.acquire(timeout=imageio.DECODE_WAIT):
            raise ImageBusy(f"{label}: busy: another upload's images are being checked; try "
                            "again in a moment")
        try:
            try:
                picture = decode_image(data, label)
            except ImageError as exc:
                raise RuleError(f"{label}: unreadable: {exc.detail}") from None
            found = assess(engine, picture)
            del picture
        finally:
            _ANALYSIS.release()
            release_memory()  # what detection freed, back to the system (a server's memory)
        if found.template is None:
            raise RuleError(f"{label}: {found.reason}")
        vector = np.asarray(found.template.vector, dtype=TEMPLATE_DTYPE)
        out.append(_Prepared(data, source, digest, vector.tobytes()))
    return out


def _aad(image_id: int, part: str) -> bytes:
    return f"subject-image:{image_id}:{part}".encode()


def _store_images(session: Session, keyring: Keyring, wl: Watchlist, subject: Subject,
                  prepared: Sequence[_Prepared], actor: Actor) -> list[int]:
    key = keyring.unwrap(session, wl.data_key_id)
    rows = []
    for p in prepared:
        row = SubjectImage(subject_id=subject.id, source=p.source, added_by=actor.name,
                           model_id=wl.model_id, image_digest=p.digest,
                           image_ct=b"", template_ct=b"")
        session.add(row)
        rows.append((row, p))
    session.flush()  # ids, which the associated data binds
    for row, p in rows:
        row.image_ct = seal(key, p.data, _aad(row.id, "image"))
        row.template_ct = seal(key, p.template, _aad(row.id, "template"))
    session.flush()
    return [row.id for row, _ in rows]


# -- helpers -----------------------------------------------------------------------------------

def _watchlist(session: Session, watchlist_id: int, lock: bool = False) -> Watchlist:
    query = select(Watchlist).where(Watchlist.id == int(watchlist_id))
    if lock:
        query = query.with_for_update()
    wl = session.scalars(query).first()
    if wl is None:
        raise NotFound(f"no watchlist {watchlist_id}")
    return wl


def _editable(wl: Watchlist) -> None:
    if wl.status == WatchlistStatus.DESTROYED:
        raise Conflict(f"watchlist {wl.id} has been destroyed")


def _changed(session: Session, wl: Watchlist, actor: Actor) -> bool:
    """Record a change by ``actor``: they become an editor; an approved watchlist goes back to
    draft. Returns whether an approval was withdrawn."""
    now = utcnow()
    wl.changed_at = now
    if not actor.is_system and session.get(WatchlistEditor, (wl.id, actor.name)) is None:
        session.add(WatchlistEditor(watchlist_id=wl.id, user_name=actor.name))
    withdrawn = wl.status == WatchlistStatus.APPROVED
    if withdrawn:
        wl.status = WatchlistStatus.DRAFT
        wl.approved_by = None
        wl.approved_at = None
    session.flush()
    return withdrawn


def _count_subjects(session: Session, watchlist_id: int) -> int:
    return int(session.scalar(select(func.count()).select_from(Subject)
                              .where(Subject.watchlist_id == watchlist_id)) or 0)


def _count_images(session: Session, watchlist_id: int) -> int:
    return int(session.scalar(
        select(func.count()).select_from(SubjectImage).join(Subject)
        .where(Subject.watchlist_id == watchlist_id)) or 0)


def _editors(session: Session, watchlist_id: int) -> list[str]:
    return list(session.scalars(select(WatchlistEditor.user_name)
                                .where(WatchlistEditor.watchlist_id == watchlist_id)
                                .order_by(WatchlistEditor.user_name)))


# -- changes -----------------------------------------------------------------------------------

def create_watchlist(system: System, actor: Actor, name: str, purpose: str,
                     backend: str | None = None, max_subjects: int | None = None
                     ) -> WatchlistView:
    """A new, empty draft watchlist with its own data key; its creator is its first editor.

    Takes the :class:`System` (not only the database): the data key is made with the keyring,
    and the default size limit is ``settings.watchlist_max_subjects``. ``backend=None``: the
    installation's default recogniser (:func:`openlfr.vision.registry.default_backend`)."""
    from openlfr.governance.models import model_id_for
    from openlfr.vision.registry import ModelError, default_backend

    backend = backend or default_backend()

    db = system.db
    require(db, actor, Perm.WATCHLIST_EDIT, "watchlist", "new")
    name = check_name(_text(name, "a watchlist name"), "the watchlist name")
    if len(name) > 200:
        raise RuleError("a watchlist name has at most 200 characters")
    purpose = _text(purpose, "the deployment purpose the watchlist serves", MIN_REASON)
    limit = system.settings.watchlist_max_subjects if max_subjects is None else max_subjects
    if limit < 1:
        raise RuleError(f"max subjects {limit}: must be at least 1")
    if limit > system.settings.watchlist_max_subjects:
        raise RuleError(f"max subjects {limit}: above the configured limit of "
                        f"{system.settings.watchlist_max_subjects}")
    try:
        model_id = model_id_for(db, backend)
    except ModelError as exc:
        raise RuleError(str(exc)) from None
    with db.session() as s:
        key = system.keyring.new_key(s, "watchlist")
        wl = Watchlist(name=name, purpose=purpose, status=WatchlistStatus.DRAFT,
                       model_id=model_id, max_subjects=limit, created_by=actor.name,
                       data_key_id=key.id)
        s.add(wl)
        s.flush()
        if not actor.is_system:
            s.add(WatchlistEditor(watchlist_id=wl.id, user_name=actor.name))
        audit_log.record(s, actor.name, "watchlist.create", "watchlist", wl.id,
                         {"name": name, "model_id": model_id, "max_subjects": limit})
        return _info(s, wl)


def add_subject(system: System, actor: Actor, watchlist_id: int, reference: str,
                category: str | Category, reason: str, expires_at: datetime | None,
                images: Sequence[tuple[bytes, str]], is_minor: bool = False,
                minor_justification: str | None = None) -> SubjectView:
    """Add a subject with its reference images. Every rule is checked and every image enrolled
    (exactly one face of enrolment quality) before anything is written: one failure (a
    :class:`RuleError` naming the image and the reason) adds nothing."""
    db = system.db
    require(db, actor, Perm.WATCHLIST_EDIT, "watchlist", str(watchlist_id))
    now = datetime.now(UTC)
    reference = check_name(_text(reference, "a subject reference (name or case reference)"),
                           "the subject reference")
    if len(reference) > 200:
        raise RuleError("a subject reference has at most 200 characters")
    cat = parse_category(category)
    reason = _text(reason, "a written reason for inclusion", MIN_REASON)
    expires = _check_expiry(expires_at, now)
    justification: str | None = None
    if is_minor or (minor_justification or "").strip():
        is_minor = True
        justification = _text(minor_justification,
                              "a justification for including an under-18 subject",
                              MIN_JUSTIFICATION)
    if len(images) > MAX_IMAGES_PER_SUBJECT:
        raise RuleError(f"{len(images)} images: at most {MAX_IMAGES_PER_SUBJECT} per subject")
    with db.reading() as s:
        wl = _watchlist(s, watchlist_id)
        _editable(wl)
        model_id = wl.model_id
        _check_room(s, wl)
    prepared = _prepare_images(system, model_id, images, set())
    with db.session() as s:
        wl = _watchlist(s, watchlist_id, lock=True)
        _editable(wl)
        _check_room(s, wl)
        subject = Subject(watchlist_id=wl.id, reference=reference, category=cat, reason=reason,
                          is_minor=is_minor, minor_justification=justification,
                          added_by=actor.name, expires_at=expires)
        s.add(subject)
        s.flush()
        image_ids = _store_images(s, system.keyring, wl, subject, prepared, actor)
        withdrawn = _changed(s, wl, actor)
        audit_log.record(s, actor.name, "subject.add", "subject", subject.id, {
            "watchlist_id": wl.id, "category": cat.value, "is_minor": is_minor,
            "expires_at": expires.isoformat(timespec="seconds"), "images": len(image_ids),
            "image_ids": image_ids, "approval_withdrawn": withdrawn})
        s.refresh(subject)
        return _subject_info(subject)


def _check_room(session: Session, wl: Watchlist) -> None:
    n = _count_subjects(session, wl.id)
    if n >= wl.max_subjects:
        raise RuleError(f"watchlist {wl.id} is full: {n} subjects, its limit is "
                        f"{wl.max_subjects}")


def add_image(system: System, actor: Actor, subject_id: int,
              images: Sequence[tuple[bytes, str]]) -> SubjectView:
    """Add reference images to an existing subject (same checks as :func:`add_subject`)."""
    db = system.db
    require(db, actor, Perm.WATCHLIST_EDIT, "subject", str(subject_id))
    with db.reading() as s:
        subject = s.get(Subject, int(subject_id))
        if subject is None:
            raise NotFound(f"no subject {subject_id}")
        wl = _watchlist(s, subject.watchlist_id)
        _editable(wl)
        known = {img.image_digest for img in subject.images}
        if len(known) + len(images) > MAX_IMAGES_PER_SUBJECT:
            raise RuleError(f"subject {subject_id} would have {len(known) + len(images)} "
                            f"images: at most {MAX_IMAGES_PER_SUBJECT}")
        model_id, watchlist_id = wl.model_id, wl.id
    prepared = _prepare_images(system, model_id, images, known)
    with db.session() as s:
        wl = _watchlist(s, watchlist_id, lock=True)
        _editable(wl)
        subject = s.get(Subject, int(subject_id))
        if subject is None:
            raise NotFound(f"no subject {subject_id}")
        clash = {img.image_digest for img in subject.images} & {p.digest for p in prepared}
        if clash:
            raise RuleError("duplicate: an image is already a reference of this subject")
        image_ids = _store_images(s, system.keyring, wl, subject, prepared, actor)
        withdrawn = _changed(s, wl, actor)
        audit_log.record(s, actor.name, "subject_image.add", "subject", subject.id, {
            "watchlist_id": wl.id, "images": len(image_ids), "image_ids": image_ids,
            "approval_withdrawn": withdrawn})
        s.refresh(subject)
        return _subject_info(subject)


def remove_subject(db: Database, actor: Actor, subject_id: int,
                   reason: str | None = None) -> RemovalResult:
    """Take a subject and all its images off its watchlist. A change: an approved watchlist
    goes back to draft. Reports whether the images' ciphertext is gone from the data directory
    or its purge is pending (:mod:`openlfr.governance.purge`)."""
    require(db, actor, Perm.WATCHLIST_EDIT, "subject", str(subject_id))
    with db.session() as s:
        subject = s.get(Subject, int(subject_id))
        if subject is None:
            raise NotFound(f"no subject {subject_id}")
        wl_id, sid = subject.watchlist_id, subject.id
        wl = _watchlist(s, wl_id, lock=True)
        _editable(wl)
        images = len(subject.images)
        s.execute(delete(SubjectImage).where(SubjectImage.subject_id == sid))
        s.execute(delete(Subject).where(Subject.id == sid))
        s.expunge(subject)
        withdrawn = _changed(s, wl, actor)
        details: dict[str, Any] = {"watchlist_id": wl.id, "images": images,
                                   "approval_withdrawn": withdrawn}
        # The reason may well name the person or the case: the log, kept for ever, records
        # only that one was given (as for alert decisions); the subject's data go with it.
        details["reason_given"] = bool(reason and reason.strip())
        audit_log.record(s, actor.name, "subject.remove", "subject", subject_id, details)
    done = purge.finish(db, None, "subject.remove", "subject", subject_id)
    return RemovalResult(1, images, done.done, done.pending)


def approve_watchlist(db: Database, actor: Actor, watchlist_id: int) -> WatchlistView:
    """Approve a watchlist: an authorising officer who neither built nor changed it. Refusing
    an editor is audited (``access.refused``)."""
    require(db, actor, Perm.WATCHLIST_APPROVE, "watchlist", str(watchlist_id))
    if actor.is_system:
        raise RuleError("a watchlist is approved by a person, not by the program")
    refusal: str | None = None
    info: WatchlistView | None = None
    with db.session() as s:
        wl = _watchlist(s, watchlist_id, lock=True)
        _editable(wl)
        editors = _editors(s, wl.id)
        if actor.name in editors:
            refusal = (f"{actor.name} built or changed watchlist {wl.id} and may not approve "
                       f"it: approval needs an authorising officer who is not among its "
                       f"editors ({', '.join(editors)})")
        else:
            if wl.status == WatchlistStatus.APPROVED:
                raise Conflict(f"watchlist {wl.id} is already approved (by "
                               f"{wl.approved_by})")
            subjects = _count_subjects(s, wl.id)
            if subjects == 0:
                raise Conflict(f"watchlist {wl.id} has no subject: there is nothing to "
                               "approve")
            images = _count_images(s, wl.id)
            wl.status = WatchlistStatus.APPROVED
            wl.approved_by = actor.name
            wl.approved_at = utcnow()
            s.flush()
            audit_log.record(s, actor.name, "watchlist.approve", "watchlist", wl.id, {
                "subjects": subjects, "images": images, "editors": editors})
            info = _info(s, wl)
    if refusal is not None or info is None:
        raise refuse(db, actor, Perm.WATCHLIST_APPROVE.value, refusal or "refused",
                     "watchlist", str(watchlist_id))
    return info


def destroy_watchlist(system: System, actor: Actor, watchlist_id: int,
                      reason: str) -> DestroyResult:
    """Delete a watchlist's subjects and images and destroy its data key (crypto-shredding) in
    one transaction; the watchlist row stays, as ``destroyed``, for the record. Audited with
    counts only. Then the key's file is deleted from the key store and SQLite's log emptied
    (:func:`openlfr.governance.purge.finish`); if a reader blocks that, the result (and the
    audit log, ``purge.pending``) says the purge is pending, not done.
    The retention runner calls this as :data:`~openlfr.governance.authz.SYSTEM_ACTOR`."""
    db = system.db
    require(db, actor, Perm.WATCHLIST_DESTROY, "watchlist", str(watchlist_id))
    reason = _text(reason, "a reason for destroying the watchlist")
    with db.session() as s:
        wl = _watchlist(s, watchlist_id, lock=True)
        if wl.status == WatchlistStatus.DESTROYED:
            raise Conflict(f"watchlist {wl.id} was already destroyed")
        subjects = _count_subjects(s, wl.id)
        images = _count_images(s, wl.id)
        ids = select(Subject.id).where(Subject.watchlist_id == wl.id)
        s.execute(delete(SubjectImage).where(SubjectImage.subject_id.in_(ids)))
        s.execute(delete(Subject).where(Subject.watchlist_id == wl.id))
        key_id = wl.data_key_id
        wl.data_key_id = None
        wl.status = WatchlistStatus.DESTROYED
        wl.destroyed_at = utcnow()
        wl.destroy_reason = reason
        s.flush()
        had_key = system.keyring.destroy(s, key_id)
        audit_log.record(s, actor.name, "watchlist.destroy", "watchlist", wl.id, {
            "subjects": subjects, "images": images, "key_destroyed": had_key,
            "reason": reason})
        wl_id = wl.id
    keys = [key_id] if had_key and key_id is not None else []
    done = purge.finish(db, system.keyring, "watchlist.destroy", "watchlist", wl_id, keys)
    return DestroyResult(wl_id, subjects, images, key_destroyed=had_key and
                         done.key_files_left == 0, destroyed=done.done,
                         purge_pending=done.pending)


def expire_subjects(db: Database, actor: Actor, now: datetime | None = None) -> RemovalResult:
    """Remove every subject whose expiry has passed, with its images; one audit entry per
    watchlist, with counts. Reports how many subjects were removed and whether their data is
    gone from the data directory or its purge pending.

    An expiry is a removal the approval already foresaw (the approver saw each expiry), not an
    addition: it leaves the watchlist's approval as it is and makes nobody an editor."""
    require(db, actor, Perm.RETENTION_RUN, "subject", "expired")
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        raise RuleError("expire_subjects: give an aware time")
    total = total_images = 0
    with db.session() as s:
        rows = s.execute(select(Subject.watchlist_id, Subject.id)
                         .where(Subject.expires_at <= now)
                         .order_by(Subject.watchlist_id, Subject.id)).all()
        by_watchlist: dict[int, list[int]] = {}
        for wl_id, sid in rows:
            by_watchlist.setdefault(wl_id, []).append(sid)
        for wl_id, sids in by_watchlist.items():
            images = int(s.scalar(select(func.count()).select_from(SubjectImage)
                                  .where(SubjectImage.subject_id.in_(sids))) or 0)
            s.execute(delete(SubjectImage).where(SubjectImage.subject_id.in_(sids)))
            s.execute(delete(Subject).where(Subject.id.in_(sids)))
            audit_log.record(s, actor.name, "subject.expire", "watchlist", wl_id,
                             {"subjects": len(sids), "images": images})
            total += len(sids)
            total_images += images
    if not total:
        return RemovalResult(0, 0, True, False)
    done = purge.finish(db, None, "subject.expire", "subjects", "expired")
    return RemovalResult(total, total_images, done.done, done.pending)


# -- the live gallery --------------------------------------------------------------------------

def deployment_gallery(session: Session, keyring: Keyring, watchlist_ids: Sequence[int]
                       ) -> tuple[Gallery, dict[str, str]]:
    """The in-memory gallery of approved watchlists: the unexpired subjects' templates,
    decrypted. Gallery subject ids are ``str(subject.id)``, reference ids
    ``str(subject_image.id)``; the dict maps each subject id to its reference (for display).
    Refuses (:class:`RuleError`) a watchlist that is not approved, and watchlists of different
    models. Templates exist only in memory."""
    if not watchlist_ids:
        raise RuleError("no watchlist given")
    now = datetime.now(UTC)
    lists: list[Watchlist] = []
    for wid in dict.fromkeys(int(w) for w in watchlist_ids):
        wl = session.get(Watchlist, wid)
        if wl is None:
            raise NotFound(f"no watchlist {wid}")
        if wl.status != WatchlistStatus.APPROVED:
            raise Conflict(f"watchlist {wl.id} is {wl.status.value}, not approved: it cannot "
                           "be used until an authorising officer who did not build it "
                           "approves it")
        lists.append(wl)
    models = {wl.model_id for wl in lists}
    if len(models) > 1:
        raise RuleError(f"watchlists of different models ({', '.join(sorted(models))}) cannot "
                        "be searched together")
    model_id = models.pop()
    subject_ids: list[str] = []
    reference_ids: list[str] = []
    vectors: list[np.ndarray] = []
    names: dict[str, str] = {}
    for wl in lists:
        try:
            key = keyring.unwrap(session, wl.data_key_id)
        except CryptoError as exc:
            raise CryptoError(f"watchlist {wl.id}: {exc}") from None
        rows = session.execute(
            select(Subject.id, Subject.reference, SubjectImage.id, SubjectImage.template_ct,
                   SubjectImage.model_id)
            .join(SubjectImage, SubjectImage.subject_id == Subject.id)
            .where(Subject.watchlist_id == wl.id, Subject.expires_at > now)
            .order_by(Subject.id, SubjectImage.id)).all()
        for sid, ref, iid, ct, img_model in rows:
            if img_model != model_id:
                raise RuleError(f"subject image {iid} holds a {img_model!r} template, not "
                                f"{model_id!r}")
            plain = open_sealed(key, ct, _aad(iid, "template"))
            vectors.append(np.frombuffer(plain, dtype=TEMPLATE_DTYPE))
            subject_ids.append(str(sid))
            reference_ids.append(str(iid))
            names[str(sid)] = ref
    if vectors:
        dim = len(vectors[0])
    else:
        from openlfr.governance.models import template_dim

        dim = template_dim(session, model_id)
    gallery = Gallery(model_id, dim)
    if vectors:
        gallery.add_many(subject_ids, reference_ids, np.stack(vectors))
    return gallery, names


# -- reading -----------------------------------------------------------------------------------

def _image_info(img: SubjectImage) -> ImageView:
    return ImageView(id=img.id, source=img.source, added_by=img.added_by,
                     created_at=img.created_at, model_id=img.model_id,
                     image_sha256=img.image_digest)


def _subject_info(subject: Subject) -> SubjectView:
    return SubjectView(
        id=subject.id, watchlist_id=subject.watchlist_id, reference=subject.reference,
        category=subject.category.value, reason=subject.reason, is_minor=subject.is_minor,
        minor_justification=subject.minor_justification, added_by=subject.added_by,
        created_at=subject.created_at, expires_at=subject.expires_at,
        images=tuple(_image_info(i) for i in subject.images))


def _fields(session: Session, rows: Sequence[Watchlist]) -> list[dict[str, Any]]:
    """The fields of each watchlist's view, in three queries whatever their number."""
    ids = [wl.id for wl in rows]
    subjects: dict[int, int] = {}
    images: dict[int, int] = {}
    editors: dict[int, list[str]] = {}
    if ids:
        subjects = {w: int(n) for w, n in session.execute(
            select(Subject.watchlist_id, func.count()).where(Subject.watchlist_id.in_(ids))
            .group_by(Subject.watchlist_id))}
        images = {w: int(n) for w, n in session.execute(
            select(Subject.watchlist_id, func.count()).select_from(SubjectImage).join(Subject)
            .where(Subject.watchlist_id.in_(ids)).group_by(Subject.watchlist_id))}
        for w, name in session.execute(
                select(WatchlistEditor.watchlist_id, WatchlistEditor.user_name)
                .where(WatchlistEditor.watchlist_id.in_(ids))
                .order_by(WatchlistEditor.watchlist_id, WatchlistEditor.user_name)):
            editors.setdefault(w, []).append(name)
    return [dict(
        id=wl.id, name=wl.name, purpose=wl.purpose, status=wl.status.value,
        model_id=wl.model_id, max_subjects=wl.max_subjects, created_by=wl.created_by,
        created_at=wl.created_at, changed_at=wl.changed_at, approved_by=wl.approved_by,
        approved_at=wl.approved_at, destroyed_at=wl.destroyed_at,
        destroy_reason=wl.destroy_reason, editors=tuple(editors.get(wl.id, ())),
        subjects=subjects.get(wl.id, 0), images=images.get(wl.id, 0)) for wl in rows]


def _info(session: Session, wl: Watchlist) -> WatchlistView:
    return WatchlistView(**_fields(session, [wl])[0])


def list_watchlists(db: Database, actor: Actor, include_destroyed: bool = True
                    ) -> list[WatchlistView]:
    require(db, actor, Perm.WATCHLIST_READ, "watchlist", "list")
    with db.reading() as s:
        query = select(Watchlist).order_by(Watchlist.id)
        if not include_destroyed:
            query = query.where(Watchlist.status != WatchlistStatus.DESTROYED)
        return [WatchlistView(**f) for f in _fields(s, s.scalars(query).all())]


def show_watchlist(db: Database, actor: Actor, watchlist_id: int) -> WatchlistDetail:
    """A watchlist with its subjects and each image's source and digest (never the image or
    the template)."""
    require(db, actor, Perm.WATCHLIST_READ, "watchlist", str(watchlist_id))
    with db.reading() as s:
        wl = _watchlist(s, watchlist_id)
        rows = s.scalars(select(Subject).where(Subject.watchlist_id == wl.id)
                         .options(selectinload(Subject.images)).order_by(Subject.id)).all()
        return WatchlistDetail(**_fields(s, [wl])[0],
                               subject_list=tuple(_subject_info(x) for x in rows))


def subject_image(system: System, actor: Actor, image_id: int, *, audit: bool = True) -> bytes:
    """The reference image itself, decrypted, for the console: audited as
    ``subject_image.view`` (``audit=False``: the caller audits the view its own way, e.g. an
    alert's card, counted per session by :func:`openlfr.governance.alerts.record_views`)."""
    db = system.db
    require(db, actor, Perm.WATCHLIST_READ, "subject_image", str(image_id))
    with db.session() as s:
        img = s.get(SubjectImage, int(image_id))
        if img is None:
            raise NotFound(f"no subject image {image_id}")
        subject = img.subject
        wl = _watchlist(s, subject.watchlist_id)
        try:
            data = system.keyring.decrypt(s, wl.data_key_id, img.image_ct,
                                          _aad(img.id, "image"))
        except CryptoError as exc:
            raise CryptoError(f"subject image {image_id}: {exc}") from None
        if audit:
            audit_log.record(s, actor.name, "subject_image.view", "subject_image", img.id,
                             {"subject_id": subject.id, "watchlist_id": wl.id})
        return data
