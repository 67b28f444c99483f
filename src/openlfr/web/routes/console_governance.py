"""The governance pages of the console: watchlists, deployments (and their cameras), users and
API tokens (the audit log's pages are :mod:`openlfr.web.routes.console_audit`).

Server-rendered: every form POSTs with its CSRF token (checked by ``page_actor``) and, on
success, redirects (303) to the page that shows the result. A broken rule, a refusal or a bad
upload shows the same form again, its fields kept, with the message on the page (never a
traceback). Buttons a role may not use are not shown (:func:`authz.allowed`), and the services
refuse them anyway (:func:`authz.require`, audited).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from openlfr.governance import deployments as deps
from openlfr.governance import profiles, purge, stills, urgent
from openlfr.governance import users as users_svc
from openlfr.governance import watchlists as wls
from openlfr.governance.authz import Actor, Forbidden, NotFound, Perm, RuleError, allowed
from openlfr.governance.times import form_time, form_value
from openlfr.governance.views import (
    CATEGORY_WORDS,
    ROLE_WORDS,
    CameraView,
    DeploymentView,
    WatchlistView,
)
from openlfr.store.enums import Category, Role
from openlfr.video.sources import SourceError, split_camera
from openlfr.vision.registry import default_backend
from openlfr.vision.thresholds import check_threshold
from openlfr.web import tokens
from openlfr.web.deps import PageActor, web
from openlfr.web.problems import SHOWN_ON_FORMS, http_status
from openlfr.web.render import people_zone, render
from openlfr.web.routes.api_deployments import CameraIn, DeploymentIn, create_plan
from openlfr.web.routes.api_watchlists import (
    MAX_UPLOAD_IMAGES,
    UPLOAD_MAX_BYTES,
    UploadProblem,
    image_response,
    read_image_upload,
    upload_label,
)

router = APIRouter(prefix="/console", include_in_schema=False)

#: Image slots on the "add a subject" form.
IMAGE_SLOTS = 3
#: Choices as people read them (the words of governance.views, in one place).
CATEGORY_LABELS = {c.value: CATEGORY_WORDS[c] for c in Category}
ROLE_LABELS = {r.value: ROLE_WORDS[r] for r in Role}


def may(actor: Actor) -> dict[str, bool]:
    """What the actor's role may do, for hiding buttons: ``may.watchlist_approve`` …"""
    return {p.name.lower(): allowed(actor, p) for p in Perm}


def _date(request: Request) -> Any:
    """The pages' ``date`` filter (:func:`openlfr.web.render.format_date` in the zone of
    people), for times the templates get from a function: ``iso(...)``, ``when(entry)``."""
    return web(request).templates.env.filters["date"]


def _page(request: Request, actor: Actor, name: str, ctx: dict[str, Any],
          status: int = 200) -> Response:
    ctx.setdefault("iso", _date(request))
    ctx.setdefault("may", may(actor))
    ctx.setdefault("nav", "console")
    return render(request, name, ctx, actor=actor, status=status)


#: The value of the ``confirm`` field that an irreversible action needs (``confirm_button``).
CONFIRMED = "yes"
Confirm = Annotated[str, Form(max_length=5)]


def confirm_first(request: Request, actor: Actor, confirm: str, *, button: str,
                  question: str, back: str, fields: dict[str, str] | None = None
                  ) -> Response | None:
    """None when the form of an irreversible action carries ``confirm=yes`` (its button's
    dialog, or this page, asked); else, and nothing done, a page asking ``question`` whose
    form sends the same ``fields`` again with the confirmation (works without
    JavaScript)."""
    if confirm == CONFIRMED:
        return None
    return _page(request, actor, "confirm.html", {
        "button": button, "question": question, "back": back,
        "fields": {k: v for k, v in (fields or {}).items() if v},  # "": not given
        "action": request.url.path})


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _status_of(exc: Exception) -> int:
    if isinstance(exc, UploadProblem):
        return exc.status
    return 400 if isinstance(exc, ValidationError) else http_status(exc)


def _message(exc: Exception) -> str:
    if isinstance(exc, Forbidden):
        return f"Refused: {exc}"
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                         for e in exc.errors())
    return str(exc) or "the request is not valid"


#: What a page action may fail with and show on the page (anything else is a real error).
EXPECTED: tuple[type[Exception], ...] = (*SHOWN_ON_FORMS, ValidationError)


# -- watchlists ---------------------------------------------------------------------------------

def _watchlists_ctx(request: Request, actor: Actor) -> dict[str, Any]:
    return {"items": wls.list_watchlists(web(request).db, actor),
            "form": {"name": "", "purpose": "", "max_subjects": ""},
            "min_reason": wls.MIN_REASON}


@router.get("/watchlists")
def watchlists_page(request: Request, actor: PageActor) -> Response:
    return _page(request, actor, "gov_watchlists.html", _watchlists_ctx(request, actor))


@router.post("/watchlists")
def watchlist_create(request: Request, actor: PageActor,
                     name: Annotated[str, Form(max_length=200)] = "",
                     purpose: Annotated[str, Form(max_length=5000)] = "",
                     max_subjects: Annotated[str, Form(max_length=10)] = "") -> Response:
    try:
        limit = None
        if max_subjects.strip():
            if not max_subjects.strip().isdigit():
                raise RuleError(f"max subjects {max_subjects!r}: a whole number")
            limit = int(max_subjects)
        info = wls.create_watchlist(web(request).system, actor, name, purpose,
                                    max_subjects=limit)
    except EXPECTED as exc:
        ctx = _watchlists_ctx(request, actor)
        ctx.update(error=_message(exc),
                   form={"name": name, "purpose": purpose, "max_subjects": max_subjects})
        return _page(request, actor, "gov_watchlists.html", ctx, _status_of(exc))
    return _see_other(f"/console/watchlists/{info.id}?done=created")


_DONE = {
    "created": "Created.", "added": "Subject added, its images checked and stored encrypted.",
    "approved": "Approved.", "removed": "Subject removed with its images.",
    "destroyed": "Destroyed: its subjects, images and data key are gone.",
    "destroy_pending": "Its subjects and images are deleted and it can no longer be used, "
                       "but the purge is pending: another program holds the database open "
                       "(a backup?), so deleted data may remain in the database files. The "
                       "next retention run completes the purge.",
    "remove_pending": "Subject removed, but the purge of its images is pending: another "
                      "program holds the database open (a backup?), so they may remain in "
                      "the database files until the next retention run.",
    "authorised": "Authorised.",
    "proposed": "Published as proposed: the public consultation is open.",
    "responded": "The response to the consultation is recorded and published.",
    "started": "Started: its cameras open within seconds.",
    "resumed": "Resumed: its cameras open within seconds.", "stopped": "Stopped.",
    "override": "Threshold override recorded.", "saved": "Saved.",
    "profile": "Jurisdiction profile changed.",
    "user": "User added.", "active": "Account changed.", "revoked": "Token revoked.",
    "role": "Role changed: the account's sessions and API tokens have ended.",
    "totp_removed": "Second factor removed.", "policy": "Second-factor rule saved.",
    "urgent_started": "Started as an urgent use: its cameras open within seconds; an "
                      "authorising officer must authorise it within 24 hours.",
    "urgent_authorised": "Urgent use authorised: it runs on as an authorised deployment.",
    "urgent_refused": "Urgent use refused: it has stopped and its results are deleted.",
}


def _done(request: Request) -> str | None:
    return _DONE.get(request.query_params.get("done", ""))


def _subject_form(values: dict[str, str] | None = None) -> dict[str, Any]:
    form: dict[str, Any] = {"reference": "", "category": "", "reason": "", "expires": "",
                            "is_minor": "", "minor_justification": ""}
    form.update(values or {})
    form.setdefault("sources", [""] * IMAGE_SLOTS)
    return form


def _watchlist_ctx(request: Request, actor: Actor, watchlist_id: int) -> dict[str, Any]:
    return {"wl": wls.show_watchlist(web(request).db, actor, watchlist_id),
            "categories": CATEGORY_LABELS, "form": _subject_form(), "slots": IMAGE_SLOTS,
            "min_reason": wls.MIN_REASON, "min_justification": wls.MIN_JUSTIFICATION,
            "max_mib": UPLOAD_MAX_BYTES // (1024 * 1024), "done": _done(request),
            "purge_pending": purge.is_pending(web(request).db, "watchlist", watchlist_id)}


def _watchlist_error(request: Request, actor: Actor, watchlist_id: int, exc: Exception,
                     form: dict[str, Any] | None = None, where: str = "") -> Response:
    ctx = _watchlist_ctx(request, actor, watchlist_id)
    ctx["done"] = None
    ctx["error"] = _message(exc)
    ctx["error_where"] = where
    if form is not None:
        ctx["form"] = form
    return _page(request, actor, "gov_watchlist.html", ctx, _status_of(exc))


@router.get("/watchlists/{watchlist_id}")
def watchlist_page(request: Request, watchlist_id: int, actor: PageActor) -> Response:
    return _page(request, actor, "gov_watchlist.html",
                 _watchlist_ctx(request, actor, watchlist_id))


def _subject_values(form: Any) -> dict[str, Any]:
    """The form's text fields, kept for showing the form again."""
    values: dict[str, Any] = {}
    for name in ("reference", "category", "reason", "expires", "is_minor",
                 "minor_justification"):
        value = form.get(name)
        values[name] = value.strip()[:20000] if isinstance(value, str) else ""
    sources = [v[:500] if isinstance(v, str) else "" for v in form.getlist("source")]
    values["sources"] = (sources + [""] * IMAGE_SLOTS)[:max(IMAGE_SLOTS, len(sources))]
    return values


async def _subject_images(form: Any, sources: list[str]) -> list[tuple[bytes, str]]:
    """The chosen files with their sources, each checked (size, type by content)."""
    files = form.getlist("image")
    if len(files) > MAX_UPLOAD_IMAGES:
        raise UploadProblem(f"{len(files)} images: at most {MAX_UPLOAD_IMAGES}")
    images: list[tuple[bytes, str]] = []
    for i, item in enumerate(files):
        source = sources[i].strip() if i < len(sources) else ""
        if not isinstance(item, UploadFile) or not (item.filename or "").strip():
            if source:
                raise UploadProblem(f"image {i + 1}: a source is given but no file chosen")
            continue  # an empty slot
        label = upload_label(len(images) + 1, item)
        if not source:
            raise UploadProblem(f"{label}: the source of the image is required (where it "
                                "comes from: custody record, court file, family…)")
        images.append((await read_image_upload(item, label), source))
    if not images:
        raise UploadProblem("choose at least one reference image (JPEG, PNG, WebP, BMP or "
                            "TIFF) and give its source")
    return images


@router.post("/watchlists/{watchlist_id}/subjects")
async def subject_add(request: Request, watchlist_id: int, actor: PageActor) -> Response:
    form = await request.form()  # parsed (and CSRF-checked) by page_actor already
    values = _subject_values(form)
    try:
        images = await _subject_images(form, values["sources"])
        expires = wls.parse_expiry(values["expires"]) if values["expires"] else None
        await run_in_threadpool(
            wls.add_subject, web(request).system, actor, watchlist_id, values["reference"],
            values["category"], values["reason"], expires, images, bool(values["is_minor"]),
            values["minor_justification"] or None)
    except EXPECTED as exc:
        return await run_in_threadpool(_watchlist_error, request, actor, watchlist_id, exc,
                                       _subject_form(values), "subject")
    return _see_other(f"/console/watchlists/{watchlist_id}?done=added#subjects")


@router.post("/watchlists/{watchlist_id}/approve")
def watchlist_approve(request: Request, watchlist_id: int, actor: PageActor) -> Response:
    try:
        wls.approve_watchlist(web(request).db, actor, watchlist_id)
    except EXPECTED as exc:
        return _watchlist_error(request, actor, watchlist_id, exc, where="approve")
    return _see_other(f"/console/watchlists/{watchlist_id}?done=approved")


@router.post("/watchlists/{watchlist_id}/destroy")
def watchlist_destroy(request: Request, watchlist_id: int, actor: PageActor,
                      reason: Annotated[str, Form(max_length=5000)] = "",
                      confirm: Confirm = "") -> Response:
    ask = confirm_first(request, actor, confirm, button="Destroy",
                        question=f"Destroy watchlist #{watchlist_id} for good? Its subjects, "
                                 "images and data key are deleted.",
                        back=f"/console/watchlists/{watchlist_id}", fields={"reason": reason})
    if ask is not None:
        return ask
    try:
        result = wls.destroy_watchlist(web(request).system, actor, watchlist_id, reason)
    except EXPECTED as exc:
        return _watchlist_error(request, actor, watchlist_id, exc, where="destroy")
    done = "destroyed" if result.destroyed else "destroy_pending"
    return _see_other(f"/console/watchlists/{watchlist_id}?done={done}")


@router.post("/subjects/{subject_id}/remove")
def subject_remove(request: Request, subject_id: int, actor: PageActor,
                   watchlist_id: Annotated[int, Form()],
                   reason: Annotated[str, Form(max_length=5000)] = "",
                   confirm: Confirm = "") -> Response:
    ask = confirm_first(request, actor, confirm, button="Remove the subject",
                        question=f"Remove subject #{subject_id} and their images for good?",
                        back=f"/console/watchlists/{watchlist_id}#subject-{subject_id}",
                        fields={"watchlist_id": str(watchlist_id), "reason": reason})
    if ask is not None:
        return ask
    try:
        result = wls.remove_subject(web(request).db, actor, subject_id, reason or None)
    except EXPECTED as exc:
        return _watchlist_error(request, actor, watchlist_id, exc, where="subjects")
    done = "removed" if result.destroyed else "remove_pending"
    return _see_other(f"/console/watchlists/{watchlist_id}?done={done}#subjects")


@router.get("/subject-images/{image_id}")
def subject_image(request: Request, image_id: int, actor: PageActor) -> Response:
    """The decrypted reference image (audited as ``subject_image.view``; never cached)."""
    return image_response(wls.subject_image(web(request).system, actor, image_id))


# -- deployments --------------------------------------------------------------------------------

def _when(text: str, field: str, zone: tzinfo = UTC) -> datetime:
    """A time from the form (:func:`openlfr.governance.times.form_time`: the browser's
    ``2026-12-01T08:00`` is in the zone of people, as the field's label says; or the one time
    format)."""
    return form_time(text, field, zone=zone)


def parse_cameras(text: str) -> list[CameraIn]:
    """One camera per line: ``NAME=SOURCE``."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            name, source = split_camera(line)
        except SourceError as exc:  # say which line of the field
            raise RuleError(f"cameras, line {n}: {exc}", field="cameras") from None
        out.append(CameraIn(name=name, source=source))
    return out


DEPLOYMENT_TEXT = ("name", "site", "location", "purpose", "legal_basis", "dpia_ref",
                   "equality_ref", "planned_start", "planned_end", "threshold", "backend",
                   "urgency_reason", "cameras", "alternatives", "consultation_days",
                   "notice_at", "target_fpir", "fria_ref", "eu_db_ref", "lease_seconds")
DEPLOYMENT_FLAGS = ("two_person_rule", "signage", "public_notice")


async def _deployment_form(request: Request) -> dict[str, Any]:
    form = await request.form()
    values: dict[str, Any] = {}
    for name in DEPLOYMENT_TEXT:
        v = form.get(name)
        values[name] = v[:20000] if isinstance(v, str) else ""
    for name in DEPLOYMENT_FLAGS:
        values[name] = bool(form.get(name))
    ids = []
    for v in form.getlist("watchlist_ids"):
        if isinstance(v, str) and v.isdigit():
            ids.append(int(v))
    values["watchlist_ids"] = ids
    return values


def _blank_deployment(zone: tzinfo = UTC) -> dict[str, Any]:
    start = (datetime.now(UTC) + timedelta(hours=1)).replace(minute=0, second=0,
                                                             microsecond=0)
    values: dict[str, Any] = {n: "" for n in DEPLOYMENT_TEXT}
    values.update({n: False for n in DEPLOYMENT_FLAGS}, watchlist_ids=[], backend=default_backend(),
                  planned_start=form_value(start, zone),
                  planned_end=form_value(start + timedelta(hours=6), zone),
                  target_fpir=f"{deps.DEFAULT_TARGET_FPIR:g}",
                  lease_seconds=str(deps.DEFAULT_LEASE_S))
    return values


def cameras_text(cameras: Sequence[CameraView]) -> str:
    return "\n".join(f"{c.name}={c.source}" for c in cameras)


def _values_of(view: DeploymentView, zone: tzinfo = UTC) -> dict[str, Any]:
    values = {n: getattr(view, n, None) or "" for n in DEPLOYMENT_TEXT}
    values.update({n: bool(getattr(view, n)) for n in DEPLOYMENT_FLAGS},
                  planned_start=form_value(view.planned_start, zone),
                  planned_end=form_value(view.planned_end, zone),
                  threshold=f"{view.threshold:.4f}",
                  cameras=cameras_text(view.cameras),
                  watchlist_ids=[w.id for w in view.watchlists],
                  backend=view.model_id,
                  consultation_days=("" if view.consultation_days is None
                                     else str(view.consultation_days)),
                  notice_at=("" if view.notice_at is None
                             else form_value(view.notice_at, zone)),
                  target_fpir="" if view.target_fpir is None else f"{view.target_fpir:g}",
                  lease_seconds=str(view.lease_seconds))
    return values


def _choosable_watchlists(request: Request, actor: Actor) -> list[WatchlistView]:
    if not allowed(actor, Perm.WATCHLIST_READ):
        return []
    return wls.list_watchlists(web(request).db, actor, include_destroyed=False)


def _form_ctx(request: Request, actor: Actor, values: dict[str, Any],
              view: DeploymentView | None = None) -> dict[str, Any]:
    from openlfr.governance.models import list_models

    return {"form": values, "dep": view, "watchlists": _choosable_watchlists(request, actor),
            "recognisers": list_models(web(request).db),
            "consultation_after_days": web(request).system.settings.consultation_after_days}


@router.get("/deployments")
def deployments_page(request: Request, actor: PageActor) -> Response:
    return _page(request, actor, "gov_deployments.html",
                 {"items": deps.list_deployments(web(request).db, actor)})


@router.get("/deployments/new")
def deployment_new(request: Request, actor: PageActor) -> Response:
    return _page(request, actor, "gov_deployment_form.html",
                 _form_ctx(request, actor, _blank_deployment(people_zone(request))))


def _body(values: dict[str, Any], zone: tzinfo = UTC) -> DeploymentIn:
    threshold = values["threshold"].strip()
    number = check_threshold(threshold) if threshold else None  # empty: the current floor
    return DeploymentIn(
        name=values["name"], site=values["site"], location=values["location"],
        purpose=values["purpose"], legal_basis=values["legal_basis"],
        dpia_ref=values["dpia_ref"], equality_ref=values["equality_ref"],
        planned_start=_when(values["planned_start"], "planned_start", zone),
        planned_end=_when(values["planned_end"], "planned_end", zone), threshold=number,
        backend=values["backend"] or default_backend(), two_person_rule=values["two_person_rule"],
        signage=values["signage"], public_notice=values["public_notice"],
        urgency_reason=values["urgency_reason"].strip() or None,
        watchlist_ids=values["watchlist_ids"], cameras=parse_cameras(values["cameras"]),
        alternatives=values["alternatives"].strip() or None,
        consultation_days=_days(values["consultation_days"]),
        notice_at=(_when(values["notice_at"], "notice_at", zone)
                   if values["notice_at"].strip() else None),
        target_fpir=_rate(values["target_fpir"]) or deps.DEFAULT_TARGET_FPIR,
        fria_ref=values["fria_ref"].strip() or None,
        eu_db_ref=values["eu_db_ref"].strip() or None,
        lease_seconds=_lease(values["lease_seconds"]))


def _lease(text: str) -> int:
    """A node's lease from the form, in whole seconds (empty: the default)."""
    text = text.strip()
    if not text:
        return deps.DEFAULT_LEASE_S
    if not text.isdigit() or not deps.LEASE_MIN_S <= int(text[:6]) <= deps.LEASE_MAX_S:
        raise RuleError(f"a node's lease lasts {deps.LEASE_MIN_S} to {deps.LEASE_MAX_S} "
                        f"whole seconds (got {text[:20]!r})", field="lease_seconds")
    return int(text)


def _rate(text: str) -> float | None:
    """The plan's target false-alert rate from the form (empty: none)."""
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text[:30])
    except ValueError:
        value = -1.0
    if not 0.0 < value < 1.0:
        raise RuleError(f"the target false-alert rate must be a number between 0 and 1, e.g. "
                        f"0.001 (got {text[:20]!r})", field="target_fpir")
    return value


def _days(text: str) -> int | None:
    """The consultation period from the form: empty for none, else whole days."""
    text = text.strip()
    if not text:
        return None
    if not text.isdigit():
        raise RuleError(f"the consultation period must be a whole number of days (got "
                        f"{text[:20]!r})", field="consultation_days")
    return int(text[:6])


@router.post("/deployments")
async def deployment_create(request: Request, actor: PageActor) -> Response:
    values = await _deployment_form(request)
    db, zone = web(request).db, people_zone(request)
    try:
        dep_id = await run_in_threadpool(lambda: create_plan(db, actor, _body(values, zone),
                                                                 web(request).system.keyring))
    except EXPECTED as exc:
        ctx = await run_in_threadpool(_form_ctx, request, actor, values)
        ctx["error"] = _message(exc)
        return _page(request, actor, "gov_deployment_form.html", ctx, _status_of(exc))
    return _see_other(f"/console/deployments/{dep_id}?done=created")


def _deployment_ctx(request: Request, actor: Actor, deployment_id: int) -> dict[str, Any]:
    view = deps.show(web(request).db, actor, deployment_id)
    editable = view.status in ("draft", "authorised")
    db = web(request).db
    profile = profiles.current(db)
    ctx: dict[str, Any] = {"dep": view, "done": _done(request), "editable": editable,
                           "profile": profile.value,
                           "profile_rules": profiles.rules_of(profile),
                           "ranks": [r for r, _ in profiles.RANKS],
                           "criteria": deps.criteria_of(db, actor, deployment_id),
                           "notifications": deps.notifications(db, actor, deployment_id),
                           "stills": stills.held(deployment_id),
                           "below_floor": view.threshold < view.floor,
                           "override": deps.override_chance(web(request).db, actor,
                                                            deployment_id),
                           "urgent": urgent.urgent_use(web(request).db, actor, deployment_id),
                           "urgent_may_start": urgent.may_start(web(request).db, actor)}
    if editable and allowed(actor, Perm.DEPLOYMENT_EDIT):
        ctx.update(_form_ctx(request, actor, _values_of(view, people_zone(request)), view))
    return ctx


def _deployment_error(request: Request, actor: Actor, deployment_id: int, exc: Exception,
                      where: str, values: dict[str, Any] | None = None) -> Response:
    ctx = _deployment_ctx(request, actor, deployment_id)
    ctx.update(done=None, error=_message(exc), error_where=where)
    if values is not None:
        ctx["form"] = values
    return _page(request, actor, "gov_deployment.html", ctx, _status_of(exc))


@router.get("/deployments/{deployment_id}")
def deployment_page(request: Request, deployment_id: int, actor: PageActor) -> Response:
    from openlfr.governance.fieldtests import list_field_tests

    ctx = _deployment_ctx(request, actor, deployment_id)
    ctx["field_tests"] = list_field_tests(web(request).db, actor, deployment_id)
    return _page(request, actor, "gov_deployment.html", ctx)


@router.post("/deployments/{deployment_id}/edit")
async def deployment_edit(request: Request, deployment_id: int, actor: PageActor) -> Response:
    values = await _deployment_form(request)
    db = web(request).db

    def save() -> None:
        view = deps.show(db, actor, deployment_id)
        body = _body(values, people_zone(request))
        changes: dict[str, Any] = {
            k: getattr(body, k) for k in ("name", "site", "location", "purpose",
                                          "legal_basis", "dpia_ref", "equality_ref",
                                          "planned_start", "planned_end", "two_person_rule",
                                          "signage", "public_notice", "urgency_reason",
                                          "watchlist_ids", "consultation_days")}
        # the profiles' fields: an empty one (or a form without it) keeps the stored value
        for name in ("notice_at", "fria_ref", "eu_db_ref"):
            if values[name].strip():
                changes[name] = getattr(body, name)
        if values["target_fpir"].strip():
            changes["target_fpir"] = body.target_fpir
        if values["lease_seconds"].strip():
            changes["lease_seconds"] = body.lease_seconds
        if body.alternatives is not None or view.alternatives:
            changes["alternatives"] = body.alternatives
        if body.threshold is not None:
            changes["threshold"] = body.threshold
        # the page shows camera sources without their secrets: a line whose name and text are
        # unchanged keeps its stored source (deps.edit)
        if values["cameras"].strip() != cameras_text(view.cameras).strip():
            changes["cameras"] = [deps.CameraSpec(c.name, c.source) for c in body.cameras]
        deps.edit(db, actor, deployment_id, keyring=web(request).system.keyring, **changes)

    try:
        await run_in_threadpool(save)
    except EXPECTED as exc:
        return await run_in_threadpool(_deployment_error, request, actor, deployment_id, exc,
                                       "edit", values)
    return _see_other(f"/console/deployments/{deployment_id}?done=saved")


def authorisation_decision(form: Any) -> deps.Decision:
    """What the authorisation form recorded (the profile decides what is needed)."""
    def text(name: str) -> str | None:
        v = form.get(name)
        return v[:5000].strip() or None if isinstance(v, str) else None

    when = text("authority_date") or ""
    try:
        day = date.fromisoformat(when[:10]) if when else None
    except ValueError:
        raise RuleError(f"the date of the authority's decision must be a date as YYYY-MM-DD "
                        f"(got {when[:20]!r})", field="authority_date") from None
    return deps.Decision(rank=text("rank"), criteria_approved=bool(form.get("criteria_approved")),
                         representative=bool(form.get("representative")),
                         authority_ref=text("authority_ref"),
                         authority_name=text("authority_name"), authority_date=day,
                         authority_scope=text("authority_scope"))


@router.post("/deployments/{deployment_id}/authorise")
async def deployment_authorise(request: Request, deployment_id: int,
                               actor: PageActor) -> Response:
    st = web(request)
    form = await request.form()

    def run() -> None:
        deps.authorise(st.db, st.system.keyring, actor, deployment_id,
                       consultation_after_days=st.system.settings.consultation_after_days,
                       decision=authorisation_decision(form))

    try:
        await run_in_threadpool(run)
    except EXPECTED as exc:
        return await run_in_threadpool(_deployment_error, request, actor, deployment_id, exc,
                                       "authorise")
    return _see_other(f"/console/deployments/{deployment_id}?done=authorised")


@router.get("/deployments/{deployment_id}/notifications/{notification_id}")
def notification_page(request: Request, deployment_id: int, notification_id: int,
                      actor: PageActor) -> Response:
    """A use notification (eu-ai-act), printable; ``?format=json`` gives its JSON body."""
    rows = deps.notifications(web(request).db, actor, deployment_id)
    row = next((r for r in rows if r["id"] == notification_id), None)
    if row is None:
        raise NotFound(f"deployment {deployment_id} has no notification {notification_id}")
    if request.query_params.get("format") == "json":
        return JSONResponse(row["body"])
    return _page(request, actor, "gov_notification.html", {"n": row, "b": row["body"],
                                                           "dep_id": deployment_id})


def _settings_ctx(request: Request) -> dict[str, Any]:
    profile = profiles.current(web(request).db)
    return {"profile": profile.value, "default": profiles.DEFAULT_PROFILE.value,
            "profiles": [(p.value, profiles.rules_of(p)) for p in profiles.Profile],
            "done": _done(request)}


@router.get("/settings")
def settings_page(request: Request, actor: PageActor) -> Response:
    """The installation's settings: the jurisdiction profile (administrators change it)."""
    return _page(request, actor, "gov_settings.html", _settings_ctx(request))


@router.post("/settings/profile")
async def settings_profile(request: Request, actor: PageActor) -> Response:
    form = await request.form()
    chosen = form.get("profile")

    def run() -> None:
        profiles.set_profile(web(request).db, actor,
                             chosen if isinstance(chosen, str) else "")

    try:
        await run_in_threadpool(run)
    except EXPECTED as exc:
        ctx = await run_in_threadpool(_settings_ctx, request)
        return _error_page(request, actor, "gov_settings.html", ctx, exc)
    return _see_other("/console/settings?done=profile")


@router.post("/deployments/{deployment_id}/propose")
def deployment_propose(request: Request, deployment_id: int, actor: PageActor) -> Response:
    try:
        deps.propose(web(request).db, actor, deployment_id)
    except EXPECTED as exc:
        return _deployment_error(request, actor, deployment_id, exc, "consultation")
    return _see_other(f"/console/deployments/{deployment_id}?done=proposed")


@router.post("/deployments/{deployment_id}/consultation-response")
def deployment_response(request: Request, deployment_id: int, actor: PageActor,
                        response: Annotated[str, Form(max_length=20000)] = "") -> Response:
    try:
        deps.record_response(web(request).db, actor, deployment_id, response)
    except EXPECTED as exc:
        return _deployment_error(request, actor, deployment_id, exc, "consultation")
    return _see_other(f"/console/deployments/{deployment_id}?done=responded")


@router.post("/deployments/{deployment_id}/override-threshold")
def deployment_override(request: Request, deployment_id: int, actor: PageActor,
                        reason: Annotated[str, Form(max_length=5000)] = "") -> Response:
    try:
        deps.override_threshold(web(request).db, actor, deployment_id, reason)
    except EXPECTED as exc:
        return _deployment_error(request, actor, deployment_id, exc, "override")
    return _see_other(f"/console/deployments/{deployment_id}?done=override")


@router.post("/deployments/{deployment_id}/start")
def deployment_start(request: Request, deployment_id: int, actor: PageActor) -> Response:
    try:
        deps.start(web(request).db, actor, deployment_id)
    except EXPECTED as exc:
        return _deployment_error(request, actor, deployment_id, exc, "run")
    return _see_other(f"/console/deployments/{deployment_id}?done=started")


@router.post("/deployments/{deployment_id}/resume")
def deployment_resume(request: Request, deployment_id: int, actor: PageActor) -> Response:
    try:
        deps.resume(web(request).db, actor, deployment_id)
    except EXPECTED as exc:
        return _deployment_error(request, actor, deployment_id, exc, "run")
    return _see_other(f"/console/deployments/{deployment_id}?done=resumed")


@router.post("/deployments/{deployment_id}/stop")
def deployment_stop(request: Request, deployment_id: int, actor: PageActor,
                    reason: Annotated[str, Form(max_length=5000)] = "",
                    confirm: Confirm = "") -> Response:
    ask = confirm_first(request, actor, confirm, button="Stop (final)",
                        question=f"Stop deployment #{deployment_id} for good? It cannot be "
                                 "started again.",
                        back=f"/console/deployments/{deployment_id}", fields={"reason": reason})
    if ask is not None:
        return ask
    try:
        deps.stop(web(request).db, actor, deployment_id, reason)
    except EXPECTED as exc:
        return _deployment_error(request, actor, deployment_id, exc, "run")
    return _see_other(f"/console/deployments/{deployment_id}?done=stopped")


# -- users and tokens ---------------------------------------------------------------------------

def _users_ctx(request: Request, actor: Actor) -> dict[str, Any]:
    db = web(request).db
    return {"users": users_svc.list_users(db, actor), "tokens": tokens.list_tokens(db, actor),
            "roles": ROLE_LABELS, "form": {"name": "", "role": "operator"},
            "token_form": {"user": "", "name": "", "role": ""}, "done": _done(request),
            "min_password": users_svc.MIN_PASSWORD,
            "totp_policies": users_svc.totp_policies(db, actor)}


def _error_page(request: Request, actor: Actor, template: str, ctx: dict[str, Any],
                exc: Exception, where: str | None = None, **forms: Any) -> Response:
    """``template`` shown again with ``exc`` in words (at its status): ``where`` names the
    form it came from, ``forms`` keep what was typed."""
    ctx.update(done=None, error=_message(exc), **forms)
    if where is not None:
        ctx["error_where"] = where
    return _page(request, actor, template, ctx, _status_of(exc))


def _users_error(request: Request, actor: Actor, exc: Exception, where: str,
                 **forms: dict[str, str]) -> Response:
    return _error_page(request, actor, "gov_users.html", _users_ctx(request, actor), exc,
                       where, **forms)


@router.get("/users")
def users_page(request: Request, actor: PageActor) -> Response:
    return _page(request, actor, "gov_users.html", _users_ctx(request, actor))


@router.post("/users")
def user_add(request: Request, actor: PageActor,
             name: Annotated[str, Form(max_length=64)] = "",
             role: Annotated[str, Form(max_length=40)] = "",
             password: Annotated[str, Form(max_length=1024)] = "",
             one_time: Annotated[str, Form(max_length=5)] = "") -> Response:
    try:
        users_svc.add_user(web(request).db, actor, name.strip(), users_svc.parse_role(role),
                           password, one_time=bool(one_time))
    except EXPECTED as exc:
        return _users_error(request, actor, exc, "user", form={"name": name, "role": role})
    return _see_other("/console/users?done=user")


@router.post("/users/{name}/role")
def user_role(request: Request, name: str, actor: PageActor,
              role: Annotated[str, Form(max_length=40)] = "",
              confirm: Confirm = "") -> Response:
    ask = confirm_first(request, actor, confirm, button="Change the role",
                        question=f"Give {name} the role {role.replace('_', ' ')}? Their "
                                 "sessions and API tokens end.",
                        back="/console/users", fields={"role": role})
    if ask is not None:
        return ask
    try:
        users_svc.set_role(web(request).db, actor, name, users_svc.parse_role(role))
    except EXPECTED as exc:
        return _users_error(request, actor, exc, "users")
    return _see_other("/console/users?done=role")


@router.post("/users/{name}/reset")
def user_reset(request: Request, name: str, actor: PageActor,
               remove_totp: Annotated[str, Form(max_length=5)] = "",
               confirm: Confirm = "") -> Response:
    ask = confirm_first(request, actor, confirm, button="Reset the password",
                        question=f"Reset the password of {name}? A one-time password is shown "
                                 "once; their sessions and API tokens end.",
                        back="/console/users", fields={"remove_totp": remove_totp})
    if ask is not None:
        return ask
    try:
        password = users_svc.reset_password(web(request).db, actor, name,
                                            remove_totp=bool(remove_totp))
    except EXPECTED as exc:
        return _users_error(request, actor, exc, "users")
    ctx = _users_ctx(request, actor)
    ctx.update(reset_user=name, reset_password=password)
    return _page(request, actor, "gov_users.html", ctx)


@router.post("/users/{name}/totp/remove")
def user_totp_remove(request: Request, name: str, actor: PageActor,
                     confirm: Confirm = "") -> Response:
    ask = confirm_first(request, actor, confirm, button="Remove the second factor",
                        question=f"Remove the second factor of {name}? They must set it up "
                                 "again.", back="/console/users")
    if ask is not None:
        return ask
    try:
        users_svc.totp_remove(web(request).system, actor, name)
    except EXPECTED as exc:
        return _users_error(request, actor, exc, "users")
    return _see_other("/console/users?done=totp_removed")


@router.post("/roles/totp")
def totp_policy(request: Request, actor: PageActor,
                role: Annotated[str, Form(max_length=40)] = "",
                required: Annotated[str, Form(max_length=5)] = "") -> Response:
    try:
        users_svc.set_totp_required(web(request).db, actor, users_svc.parse_role(role),
                                    required == "1")
    except EXPECTED as exc:
        return _users_error(request, actor, exc, "policy")
    return _see_other("/console/users?done=policy#policy")


@router.post("/users/{name}/active")
def user_active(request: Request, name: str, actor: PageActor,
                active: Annotated[str, Form(max_length=5)] = "",
                confirm: Confirm = "") -> Response:
    if active != "1":  # deactivating ends the sessions and tokens for good
        ask = confirm_first(request, actor, confirm, button="Deactivate",
                            question=f"Deactivate {name}? Their sessions and API tokens end "
                                     "for good.", back="/console/users",
                            fields={"active": active})
        if ask is not None:
            return ask
    try:
        users_svc.set_active(web(request).db, actor, name, active == "1")
    except EXPECTED as exc:
        return _users_error(request, actor, exc, "users")
    return _see_other("/console/users?done=active")


@router.post("/tokens")
def token_create(request: Request, actor: PageActor,
                 user: Annotated[str, Form(max_length=64)] = "",
                 name: Annotated[str, Form(max_length=100)] = "",
                 role: Annotated[str, Form(max_length=40)] = "") -> Response:
    try:
        info, secret = tokens.create_token(web(request).db, actor, user, name,
                                           users_svc.parse_role(role) if role else None)
    except EXPECTED as exc:
        return _users_error(request, actor, exc, "token",
                            token_form={"user": user, "name": name, "role": role})
    ctx = _users_ctx(request, actor)
    ctx.update(new_token=secret, new_token_info=info)
    return _page(request, actor, "gov_users.html", ctx, 201)


@router.post("/tokens/{token_id}/revoke")
def token_revoke(request: Request, token_id: int, actor: PageActor,
                 confirm: Confirm = "") -> Response:
    ask = confirm_first(request, actor, confirm, button="Revoke",
                        question=f"Revoke token #{token_id}? Every request with it will be "
                                 "refused.", back="/console/users#tokens")
    if ask is not None:
        return ask
    try:
        tokens.revoke_token(web(request).db, actor, token_id)
    except EXPECTED as exc:
        return _users_error(request, actor, exc, "tokens")
    return _see_other("/console/users?done=revoked#tokens")
