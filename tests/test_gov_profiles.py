"""The jurisdiction profile: one installation-wide setting, administrators only, audited."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from openlfr.errors import Forbidden, InvalidInput
from openlfr.governance import profiles
from openlfr.store.models import AuditRecord
from tests.govfix import Gov


def _changes(gov: Gov) -> list[dict[str, object]]:
    with gov.db.reading() as s:
        rows = s.scalars(select(AuditRecord).where(AuditRecord.action == "profile.change")
                         .order_by(AuditRecord.seq)).all()
        return [json.loads(r.details) for r in rows]


def test_default_then_changed_by_an_administrator_and_audited(gov: Gov) -> None:
    with gov.db.reading() as s:
        assert profiles.active_profile(s) is profiles.DEFAULT_PROFILE
    assert profiles.set_profile(gov.db, gov.actors["admin"], "eu-ai-act")
    assert not profiles.set_profile(gov.db, gov.actors["admin"], profiles.Profile.EU_AI_ACT)
    with gov.db.reading() as s:
        assert profiles.active_profile(s) is profiles.Profile.EU_AI_ACT
    assert _changes(gov) == [{"from": "uk-app", "to": "eu-ai-act"}]


def test_only_an_administrator_and_only_a_known_profile(gov: Gov) -> None:
    with pytest.raises(Forbidden):
        profiles.set_profile(gov.db, gov.actors["ao1"], "eu-ai-act")
    with pytest.raises(InvalidInput, match="choose one of uk-app, eu-ai-act"):
        profiles.set_profile(gov.db, gov.actors["admin"], "us-federal")
    with gov.db.reading() as s:
        assert profiles.active_profile(s) is profiles.DEFAULT_PROFILE
    assert _changes(gov) == []
