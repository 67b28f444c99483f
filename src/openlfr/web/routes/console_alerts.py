"""The operator console: live alerts, decided by people.

Pages (signed-in users; every check is the governance services' own, through
:func:`openlfr.governance.authz.require`, refusals audited):

* ``GET /console/alerts`` — the alert queue (per deployment, ``?deployment=ID``; ``?status=``
  pending, decided or all), each alert a card with the probe crop and the watchlist reference
  image side by side, score, threshold, camera, time and the words "possible match"; camera
  health of the running deployments.
* ``GET /console/alerts/{id}`` — one alert with its history; ``…/card`` the card alone (the
  page's script inserts new alerts with it).
* ``GET /console/alerts/{id}/crop.jpg`` and ``…/reference.jpg`` — the images, decrypted on
  demand, ``Cache-Control: no-store``; each view is audited by the service.
* ``POST /console/alerts/{id}/decide`` (confirm / reject / no action, with a reason),
  ``…/outcome``, ``…/hold``, ``…/release`` — plain forms with the CSRF token, answered with a
  redirect (or, for the page's script, the updated card).
* ``GET /console/alerts/stream`` — Server-Sent Events (:mod:`openlfr.web.events`): new alerts
  and camera health, pushed by the server.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, tzinfo
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from openlfr.governance import alerts as svc
from openlfr.governance import dashboard, times
from openlfr.governance import deployments as deps
from openlfr.governance.authz import Actor, NotFound, Perm, RuleError, allowed, require
from openlfr.governance.views import AlertView, DeploymentView
from openlfr.governance.watchlists import subject_image
from openlfr.store.enums import Decision
from openlfr.web import events, sessions, tokens
from openlfr.web.deps import PageActor, bearer_token, session_cookie, web
from openlfr.web.render import format_clock, people_zone, render, safe_next

log = logging.getLogger("openlfr.web.console_alerts")

router = APIRouter(prefix="/console/alerts", include_in_schema=False)

#: The reasons an operator picks with one click (free text may follow, or replace them).
REASONS: dict[str, str] = {
    "not_same": "Not the same person",
    "unclear": "Image too unclear to tell",
    "not_found": "Person could not be found in time",
    "dealt_with": "Already dealt with",
    "other": "Other (write it below)",
}
SAVED = {"confirm": "Your confirmation is recorded.", "reject": "Recorded as a false alert.",
         "no_action": "Recorded: no action.", "outcome": "The outcome is recorded.",
         "hold": "The alert is held past the retention period.",
         "release": "The hold is released."}

_broker_lock = threading.Lock()


# -- shared with the API ---------------------------------------------------------------------

def broker(request: Request) -> events.AlertBroker:
    """This app's alert broker, created on first use and subscribed to the background jobs'
    alerts."""
    state = request.app.state
    with _broker_lock:
        found: events.AlertBroker | None = getattr(state, "alert_broker", None)
        if found is None:
            st = web(request)
            found = events.AlertBroker(st.db)
            runner = st.runner
            if runner is not None and hasattr(runner, "add_alert_listener"):
                runner.add_alert_listener(found.on_alert)
            state.alert_broker = found
    return found


def camera_health(request: Request, deployment_id: int | None = None) -> list[dict[str, Any]]:
    """Per camera of each running or paused deployment: its state as the run wrote it in the
    database (so a run of another process, e.g. ``openlfr watch --deployment``, shows too) —
    connecting, live, retrying since when with the last error, ended — and, when this server
    runs it, frames per second and drops (counts only; blocking: call from a thread)."""
    runner = web(request).runner
    runs: dict[int, Any] = dict(getattr(runner, "runs", {}) or {})
    found = deps.live_camera_states(web(request).db, deployment_id)
    out = []
    for dep_id, name, status, cameras in found:
        figures = dashboard.run_figures(runs, dep_id, status)
        for cam in cameras:
            state = dashboard.shown_state(status, cam)
            label = state
            since = cam.state_since.isoformat() if cam.state_since else None
            if state in ("retrying", "failed", "unknown") and since:
                label = f"{state} since {format_clock(cam.state_since, people_zone(request))}"
            if cam.last_error and state in ("retrying", "failed", "unknown"):
                label += f": {cam.last_error}"
            f = figures.get(cam.name)
            out.append({"deployment_id": dep_id, "deployment": name, "camera": cam.name,
                        "state": state, "label": label, "connected": state == "live",
                        "since": since, "error": cam.last_error,
                        "fps_in": round(float(f.fps_in), 1) if f else 0.0,
                        "fps_processed": round(float(f.fps_processed), 1) if f else 0.0,
                        "frames": int(f.frames_in) if f else int(cam.frames),
                        "dropped": int(f.dropped) if f else 0,
                        "reconnects": int(f.reconnects) if f else 0})
    return out


def image_response(data: bytes) -> Response:
    media = "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg"
    return Response(data, media_type=media,
                    headers={"Cache-Control": "no-store, private", "Pragma": "no-cache"})


def reference_image(request: Request, actor: Actor, alert_id: int) -> bytes:
    st = web(request)
    view = svc.get_alert(st.db, actor, alert_id)
    if view.subject_image_id is None:
        raise NotFound(f"alert {alert_id} has no reference image (purged, or the subject "
                       "was removed)")
    return subject_image(st.system, actor, view.subject_image_id)


# -- pages -----------------------------------------------------------------------------------

def _context(actor: Actor) -> dict[str, Any]:
    return {"reasons": REASONS, "may_decide": allowed(actor, Perm.ALERT_ADJUDICATE),
            "may_hold": allowed(actor, Perm.ALERT_HOLD), "label": svc.LABEL}


def _deployment_choices(request: Request, actor: Actor,
                        current: int | None) -> list[DeploymentView]:
    """Deployments that can have alerts (running first), and the one asked for."""
    items = deps.list_deployments(web(request).db, actor)
    order = {"running": 0, "paused": 1, "authorised": 2, "ended": 3, "draft": 4}
    return sorted((d for d in items if d.status != "draft" or d.id == current),
                  key=lambda d: (order.get(d.status, 9), -d.id))


#: Alerts on one page of the queue (older and newer pages are a link away).
PAGE_SIZE = 50
#: The queue's filters, as their query parameters (the page's URL is its bookmark).
FILTER_LABELS = {"deployment": "Deployment", "camera": "Camera", "status": "Status",
                 "since": "Seen from", "until": "Seen before",
                 "min_score": "Score from", "max_score": "Score up to", "after": "Pages"}


def viewer_session(request: Request) -> str | None:
    """The secret of the caller's sign-in (the session cookie, or an API token): what a
    view of an alert's card is counted per (only a digest of it is kept)."""
    return bearer_token(request) or request.cookies.get(session_cookie(request))


def _count_views(request: Request, actor: Actor, shown: list[AlertView]) -> None:
    secret = viewer_session(request)
    if secret is not None and shown:
        svc.record_views(web(request).db, actor, shown, secret)


def _form_value(value: datetime | None, zone: tzinfo) -> str:
    """A time as a ``datetime-local`` input in the zone of people shows it."""
    return times.form_value(value, zone)


@router.get("")
def queue(request: Request, actor: PageActor,
          deployment: Annotated[str | None, Query(max_length=40)] = None,
          camera: Annotated[str | None, Query(max_length=200)] = None,
          status: Annotated[str | None, Query(max_length=40)] = None,
          since: Annotated[str | None, Query(max_length=80)] = None,
          until: Annotated[str | None, Query(max_length=80)] = None,
          min_score: Annotated[str | None, Query(max_length=40)] = None,
          max_score: Annotated[str | None, Query(max_length=40)] = None,
          before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
          after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
          saved: Annotated[str | None, Query(max_length=20)] = None) -> Response:
    st = web(request)
    raw = {"deployment": deployment, "camera": camera, "status": status, "since": since,
           "until": until, "min_score": min_score, "max_score": max_score}
    where, errors = svc.parse_filter(
        deployment=deployment, camera=camera, status=status, since=since, until=until,
        min_score=min_score, max_score=max_score, default_status="pending", form=True,
        zone=people_zone(request))
    if before is not None and after is not None:
        errors.append(RuleError("give before or after, not both: showing the newest alerts",
                                field="after"))
        before = after = None
    page = svc.search_alerts(st.db, actor, where, before=before, after=after, limit=PAGE_SIZE)
    choices = _deployment_choices(request, actor, where.deployment_id)
    current = next((d for d in choices if d.id == where.deployment_id), None)
    if where.deployment_id is not None and current is None:
        raise NotFound(f"no deployment {where.deployment_id}")
    _count_views(request, actor, list(page.items))
    # the filters as given (what was wrong stays in its box, to be corrected)
    bad = {e.field for e in errors}
    kept = {k: v.strip() for k, v in raw.items() if v is not None and v.strip()}
    kept["status"] = where.status if "status" not in bad else kept.get("status", "")
    filters = {k: v for k, v in kept.items() if v}

    def link(**cursor: int) -> str:
        return "/console/alerts?" + urlencode({**filters, **cursor})

    cameras = sorted({c.name for d in choices for c in d.cameras
                      if current is None or d.id == current.id})
    dep = where.deployment_id
    only_simple = set(filters) <= {"deployment", "status"}
    return render(request, "console_alerts.html", {
        **_context(actor), "page": page, "items": page.items, "deployments": choices,
        "current": current, "deployment": dep, "status": where.status,
        "filters": filters, "cameras": cameras,
        "form": {"camera": kept.get("camera", ""),
                 "since": _form_value(where.since, people_zone(request)) if "since" not in bad
                 else kept.get("since", ""),
                 "until": _form_value(where.until, people_zone(request)) if "until" not in bad
                 else kept.get("until", ""),
                 "min_score": kept.get("min_score", ""), "max_score": kept.get("max_score", "")},
        "errors": errors, "bad": bad, "filter_labels": FILTER_LABELS,
        "newer_url": link(after=page.newer) if page.newer is not None else None,
        "older_url": link(before=page.older) if page.older is not None else None,
        "newest_url": link() if (before is not None or after is not None) else None,
        "live_insert": page.newer is None and only_simple,
        "status_filters": svc.STATUS_FILTERS, "page_saved": SAVED.get(saved or ""),
        "health": camera_health(request, dep),
        "previews": _preview_urls(request, dep),
        "preview_enabled": bool(getattr(web(request).runner, "preview", False)),
        "stream_url": "/console/alerts/stream" + (f"?deployment={dep}" if dep else ""),
        "here": str(request.url.path) + (f"?{request.url.query}" if request.url.query else "")},
        actor=actor, status=400 if errors else 200)


def _preview_urls(request: Request, deployment_id: int | None) -> list[tuple[str, str]]:
    feeds = preview_feeds(request, deployment_id)
    if feeds is None:
        return []
    return [(name, f"/console/alerts/preview/{deployment_id}/{quote(name, safe='')}.mjpg")
            for name in feeds.cameras]


@router.get("/stream")
async def stream(request: Request, actor: PageActor,
                 deployment: Annotated[int | None, Query(ge=1)] = None) -> Response:
    """Server-Sent Events: ``alert`` (a stored alert: ids, camera, score, threshold, no
    pixels), ``health`` (camera state, fps, drops), ``resync``, ``bye``; keep-alive
    comments."""
    from starlette.concurrency import run_in_threadpool

    await run_in_threadpool(require, web(request).db, actor, Perm.ALERT_READ, "alert",
                            "stream")
    b = broker(request)
    sub = b.subscribe(actor, deployment)
    # the credential the caller was resolved from (a bearer token wins over the cookie),
    # checked again while the stream lasts: a revoked token or an ended session stops it
    bearer = bearer_token(request)
    cookie = request.cookies.get(session_cookie(request))

    def signed_in() -> bool:
        db = web(request).db
        if bearer is not None:
            return tokens.resolve_token(db, bearer) == actor
        info = sessions.resolve_session(db, cookie) if cookie else None
        return info is not None and info.actor == actor

    return StreamingResponse(
        events.stream(b, sub, lambda: camera_health(request, deployment), signed_in),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.get("/preview/{deployment_id}/{camera}.mjpg")
async def preview(request: Request, deployment_id: int, camera: str,
                  actor: PageActor) -> Response:
    """The privacy-masked live view of one camera of a deployment running on this server
    (``openlfr serve --preview``): faces that are not alerts are pixelated before a frame
    leaves the pipeline; frames are rendered only while someone watches and kept in memory
    only. Opening it is audited (``preview.view``)."""
    from starlette.concurrency import run_in_threadpool

    from openlfr.video.preview import BOUNDARY

    st = web(request)
    await run_in_threadpool(require, st.db, actor, Perm.ALERT_READ, "deployment",
                            str(deployment_id))
    feeds = preview_feeds(request, deployment_id)
    if feeds is None or camera not in feeds.cameras:
        raise NotFound(f"no live preview of camera {camera!r} of deployment {deployment_id} "
                       "on this server")

    await run_in_threadpool(deps.record_preview_view, st.db, actor, deployment_id, camera)
    feeds.watch(camera)

    async def frames() -> Any:
        seq = 0
        try:
            while not feeds.closing and not events.shutting_down():
                if await request.is_disconnected():
                    break
                seq, jpeg = await run_in_threadpool(feeds.next_frame, camera, seq, 1.0)
                if jpeg is not None:
                    yield feeds.multipart_part(jpeg)
        finally:
            feeds.unwatch(camera)

    return StreamingResponse(frames(),
                             media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                             headers={"Cache-Control": "no-store"})


def preview_feeds(request: Request, deployment_id: int | None) -> Any:
    """The preview feeds of a deployment running here, if the preview is enabled."""
    runner = web(request).runner
    if deployment_id is None or runner is None or not hasattr(runner, "preview_feeds"):
        return None
    return runner.preview_feeds(deployment_id)


def _views(request: Request, actor: Actor, alert_id: int) -> Any:
    """Who was shown the alert's card, for those who may read audit data (else None)."""
    if not allowed(actor, Perm.AUDIT_READ):
        return None
    return svc.alert_view_counts(web(request).db, actor, alert_id)


def _own_page(alert_id: int, here: str) -> bool:
    return here.split("?")[0].split("#")[0] == f"/console/alerts/{alert_id}"


@router.get("/{alert_id}")
def alert_page(request: Request, alert_id: int, actor: PageActor,
               saved: Annotated[str | None, Query(max_length=20)] = None) -> Response:
    view = svc.get_alert(web(request).db, actor, alert_id)
    _count_views(request, actor, [view])
    return render(request, "console_alert.html", {
        **_context(actor), "a": view, "saved": SAVED.get(saved or ""),
        "views": _views(request, actor, alert_id),
        "here": f"/console/alerts/{alert_id}"}, actor=actor)


@router.get("/{alert_id}/card")
def alert_card(request: Request, alert_id: int, actor: PageActor,
               saved: Annotated[str | None, Query(max_length=20)] = None,
               here: Annotated[str | None, Query(max_length=300)] = None) -> Response:
    """One card (the page's script inserts or replaces cards with it); on the alert's own
    page (``here``) the card is the full one, with the decision history."""
    view = svc.get_alert(web(request).db, actor, alert_id)
    _count_views(request, actor, [view])
    back = safe_next(here, "/console/alerts")
    full = _own_page(alert_id, back)
    return render(request, "console_alert_card.html", {
        **_context(actor), "a": view, "saved": SAVED.get(saved or ""), "full": full,
        "views": _views(request, actor, alert_id) if full else None,
        "here": back}, actor=actor)


ImageUse = Annotated[str, Query(alias="in", max_length=10, description=(
    "card (shown on its card: counted with the card's view), enlarge (audited "
    "alert.enlarge) or open (audited on its own)"))]


@router.get("/{alert_id}/crop.jpg")
def crop(request: Request, alert_id: int, actor: PageActor, use: ImageUse = "open") -> Response:
    """The probe crop, decrypted now, never cached: on its card counted with the card's view
    (``alert.view``, once per session), enlarged audited ``alert.enlarge``, opened on its own
    audited ``alert.view_crop``."""
    return image_response(svc.alert_image(web(request).system, actor, alert_id, "crop", use,
                                          viewer_session(request)))


@router.get("/{alert_id}/reference.jpg")
def reference(request: Request, alert_id: int, actor: PageActor,
              use: ImageUse = "open") -> Response:
    """The watchlist reference image of the alert: on its card counted with the card's view,
    enlarged audited ``alert.enlarge``, opened on its own audited ``subject_image.view``."""
    return image_response(svc.alert_image(web(request).system, actor, alert_id, "reference",
                                          use, viewer_session(request)))


# -- forms -----------------------------------------------------------------------------------

def _done(request: Request, alert_id: int, saved: str, here: str, fragment: str) -> Response:
    back = safe_next(here, f"/console/alerts/{alert_id}")
    if fragment:
        query = urlencode({"saved": saved, "here": back})
        return RedirectResponse(f"/console/alerts/{alert_id}/card?{query}", status_code=303)
    sep = "&" if "?" in back else "?"
    back = back.split("#")[0]
    if "saved=" in back:  # do not pile up messages on repeated decisions
        from urllib.parse import parse_qsl, urlsplit

        parts = urlsplit(back)
        kept = [(k, v) for k, v in parse_qsl(parts.query) if k != "saved"]
        back = parts.path + (f"?{urlencode(kept)}" if kept else "")
        sep = "&" if kept else "?"
    return RedirectResponse(f"{back}{sep}saved={saved}#alert-{alert_id}", status_code=303)


def _failed(request: Request, actor: Actor, alert_id: int, message: str, here: str,
            fragment: str) -> Response:
    st = web(request)
    view = svc.get_alert(st.db, actor, alert_id)
    back = safe_next(here, f"/console/alerts/{alert_id}")
    name = "console_alert_card.html" if fragment else "console_alert.html"
    full = not fragment or _own_page(alert_id, back)
    return render(request, name, {**_context(actor), "a": view, "error": message,
                                  "full": full,
                                  "views": _views(request, actor, alert_id) if full else None,
                                  "here": back}, actor=actor, status=400)


def compose_reason(decision: Decision, choice: str, text: str) -> str | None:
    """The recorded reason: a preset (one click) and/or free text. A reject or a no action
    needs one; "other" needs the text."""
    text = text.strip()
    if decision == Decision.CONFIRM:
        return text or None
    if choice == "other" and not text:
        raise RuleError("you chose “other”: write the reason in the box")
    preset = REASONS.get(choice) if choice != "other" else None
    reason = ": ".join(p for p in (preset, text) if p)
    if not reason:
        what = "reject the alert" if decision == Decision.REJECT else "take no action"
        raise RuleError(f"choose or write a reason to {what}")
    return reason


@router.post("/{alert_id}/decide")
def decide(request: Request, alert_id: int, actor: PageActor,
           decision: Annotated[str, Form(max_length=20)] = "",
           reason_choice: Annotated[str, Form(max_length=20)] = "",
           reason: Annotated[str, Form(max_length=svc.MAX_TEXT)] = "",
           here: Annotated[str, Form(max_length=300)] = "",
           fragment: Annotated[str, Form(max_length=5)] = "") -> Response:
    # page_actor has checked the CSRF token (a change made with the session cookie)
    try:
        if not decision:
            raise RuleError("choose confirm, reject or no action")
        choice = svc.parse_decision(decision)
        svc.adjudicate(web(request).db, actor, alert_id, choice,
                       compose_reason(choice, reason_choice, reason))
    except RuleError as exc:
        return _failed(request, actor, alert_id, str(exc), here, fragment)
    return _done(request, alert_id, choice.value, here, fragment)


@router.post("/{alert_id}/outcome")
def outcome(request: Request, alert_id: int, actor: PageActor,
            engaged: Annotated[str, Form(max_length=5)] = "",
            action: Annotated[str, Form(max_length=20)] = "",
            notes: Annotated[str, Form(max_length=svc.MAX_TEXT)] = "",
            not_subject: Annotated[str, Form(max_length=5)] = "",
            stopped: Annotated[str, Form(max_length=5)] = "",
            stop_minutes: Annotated[str, Form(max_length=20)] = "",
            perceived_ethnicity: Annotated[str, Form(max_length=60)] = "",
            perceived_sex: Annotated[str, Form(max_length=20)] = "",
            here: Annotated[str, Form(max_length=300)] = "",
            fragment: Annotated[str, Form(max_length=5)] = "") -> Response:
    try:
        if engaged not in ("yes", "no"):
            raise RuleError("say whether the person was engaged")
        if not action:
            raise RuleError("choose the action taken")
        svc.record_outcome(web(request).db, actor, alert_id, engaged == "yes",
                           svc.parse_action(action), notes or None,
                           not_subject=not_subject == "yes",
                           stop=svc.stop_from_form(stopped, stop_minutes, perceived_ethnicity,
                                                   perceived_sex))
    except RuleError as exc:
        return _failed(request, actor, alert_id, str(exc), here, fragment)
    return _done(request, alert_id, "outcome", here, fragment)


@router.post("/{alert_id}/hold")
def hold(request: Request, alert_id: int, actor: PageActor,
         reason: Annotated[str, Form(max_length=svc.MAX_TEXT)] = "",
         here: Annotated[str, Form(max_length=300)] = "",
         fragment: Annotated[str, Form(max_length=5)] = "") -> Response:
    try:
        svc.hold_alert(web(request).db, actor, alert_id, reason)
    except RuleError as exc:
        return _failed(request, actor, alert_id, str(exc), here, fragment)
    return _done(request, alert_id, "hold", here, fragment)


@router.post("/{alert_id}/release")
def release(request: Request, alert_id: int, actor: PageActor,
            here: Annotated[str, Form(max_length=300)] = "",
            fragment: Annotated[str, Form(max_length=5)] = "") -> Response:
    try:
        svc.release_hold(web(request).db, actor, alert_id)
    except RuleError as exc:
        return _failed(request, actor, alert_id, str(exc), here, fragment)
    return _done(request, alert_id, "release", here, fragment)
