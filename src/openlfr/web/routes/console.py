"""The console's pages (signed-in users). This round: the home page and residents' questions;
the operator console and the governance pages add their modules beside this one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from openlfr.governance import dashboard, questions, urgent
from openlfr.governance.authz import PERMISSIONS, Actor, RuleError
from openlfr.web.deps import PageActor, web
from openlfr.web.problems import http_status
from openlfr.web.render import render

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("")
def home(request: Request, actor: PageActor) -> Response:
    """What waits for the signed-in person (:func:`openlfr.governance.dashboard.home`), and
    the console's areas their role may open."""
    st = web(request)
    runs = dict(getattr(st.runner, "runs", {}) or {})
    perms = [p.value for p, roles in PERMISSIONS.items() if actor.role in roles]
    done = ("Your account is updated." if request.query_params.get("done") == "account"
            else None)
    return render(request, "console_home.html", {
        "home": dashboard.home(st.db, actor, runs), "perms": perms,
        "may_questions": questions.may(actor, questions.QUESTION_READ),
        "urgent_waiting": urgent.waiting(st.db, actor),
        "done": done}, actor=actor)


@router.get("/questions")
def question_list(request: Request, actor: PageActor,
                  status: str | None = "open") -> Response:
    status = status if status in ("open", "answered", "closed") else None
    items = questions.list_questions(web(request).db, actor, status)
    return render(request, "console_questions.html", {
        "items": items, "status": status,
        "may_answer": questions.may(actor, questions.QUESTION_ANSWER)}, actor=actor)


@router.post("/questions/{question_id}/answer")
def answer(request: Request, question_id: int, actor: PageActor,
           answer: Annotated[str, Form(max_length=20000)] = "",
           close: Annotated[str, Form(max_length=10)] = "") -> Response:
    # page_actor checked the CSRF token (a session's change)
    try:
        if answer.strip():
            questions.answer_question(web(request).db, actor, question_id, answer,
                                      close=bool(close))
        elif close:
            questions.close_question(web(request).db, actor, question_id)
        else:
            raise RuleError("write an answer, or choose to close the question")
    except RuleError as exc:
        return _refused(request, actor, question_id, exc)
    return RedirectResponse(f"/console/questions?status=open#q{question_id}", status_code=303)


def _refused(request: Request, actor: Actor, question_id: int, exc: RuleError) -> Response:
    """The questions page again, with why the action on ``question_id`` was refused (its status
    from the one table: 400 for bad input, 409 for a question in the wrong state)."""
    items = questions.list_questions(web(request).db, actor, None)
    return render(request, "console_questions.html", {
        "items": items, "status": None, "error": f"Question {question_id}: {exc}",
        "may_answer": questions.may(actor, questions.QUESTION_ANSWER)},
        actor=actor, status=http_status(exc))


@router.post("/questions/{question_id}/publish")
def publish(request: Request, question_id: int, actor: PageActor,
            public_text: Annotated[str, Form(max_length=20000)] = "",
            withdraw: Annotated[str, Form(max_length=10)] = "") -> Response:
    """Publish an answered question (the text as edited here) with its answer, personal
    details removed; or withdraw the publication. Both audited by the service."""
    try:
        if withdraw:
            questions.unpublish_answer(web(request).db, actor, question_id)
        else:
            questions.publish_answer(web(request).db, actor, question_id, public_text)
    except RuleError as exc:
        return _refused(request, actor, question_id, exc)
    return RedirectResponse(f"/console/questions?status=all#q{question_id}", status_code=303)
