"""Residents' questions for overseers: ``/api/v1/questions`` (read: authorising officers,
supervisors, admins, auditors; answer and close: all but auditors; every answer audited)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from openlfr.governance import questions
from openlfr.governance.views import QuestionView
from openlfr.web.deps import CurrentActor, web

router = APIRouter(prefix="/api/v1/questions", tags=["questions"])


class AnswerIn(BaseModel):
    answer: str = Field(max_length=questions.MAX_ANSWER * 2)
    close: bool = Field(default=False, description="Close the question with this answer.")


@router.get("", response_model=list[QuestionView])
def list_questions(request: Request, actor: CurrentActor,
                   status: Annotated[str | None, Query(max_length=20)] = None,
                   deployment_id: int | None = None) -> list[QuestionView]:
    """Questions and objections, newest first (``status``: open, answered or closed)."""
    return questions.list_questions(web(request).db, actor, status, deployment_id)


@router.get("/{question_id}", response_model=QuestionView)
def get_question(request: Request, question_id: int, actor: CurrentActor) -> QuestionView:
    return questions.get_question(web(request).db, actor, question_id)


@router.post("/{question_id}/answer", response_model=QuestionView)
def answer_question(request: Request, question_id: int, body: AnswerIn,
                    actor: CurrentActor) -> QuestionView:
    """Answer (audited ``question.answer``); ``close`` closes it at the same time."""
    return questions.answer_question(web(request).db, actor, question_id, body.answer,
                                     body.close)


@router.post("/{question_id}/close", response_model=QuestionView)
def close_question(request: Request, question_id: int, actor: CurrentActor) -> QuestionView:
    """Close without (further) answer (audited ``question.close``)."""
    return questions.close_question(web(request).db, actor, question_id)


class PublishIn(BaseModel):
    public_text: str | None = Field(
        default=None, max_length=questions.MAX_TEXT * 2,
        description="The question as it is to be published (edited to remove personal "
                    "details); default the question as sent. Both texts are redacted again.")


@router.post("/{question_id}/publish", response_model=QuestionView)
def publish_answer(request: Request, question_id: int, body: PublishIn,
                   actor: CurrentActor) -> QuestionView:
    """Publish the question and its answer on the deployment's public page, personal details
    removed (audited ``question.publish``)."""
    return questions.publish_answer(web(request).db, actor, question_id,
                                    body.public_text)


@router.post("/{question_id}/unpublish", response_model=QuestionView)
def unpublish_answer(request: Request, question_id: int,
                     actor: CurrentActor) -> QuestionView:
    """Take the published question and answer off the public page (audited
    ``question.unpublish``)."""
    return questions.unpublish_answer(web(request).db, actor, question_id)
