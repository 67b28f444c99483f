"""The console's home page, the refusal page, and words instead of codes (SQLite and PostgreSQL).

* The home page shows each signed-in person what waits for them, each item a link to where it
  is dealt with, and no part their role may not read.
* A refused page knows who is signed in (their name, the console's navigation, no sign-in
  prompt) and says in words which roles may do this.
* No page a person reads — the console as each role, the refusal page, the public pages —
  shows an internal code (``watchlist.read``, ``no_action``, ``authorising_officer``…).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from html.parser import HTMLParser

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from openlfr.governance import auditing, questions
from openlfr.governance.authz import PERMISSIONS, Perm
from openlfr.governance.views import PERM_WORDS, WORDS, words
from openlfr.store import enums
from openlfr.store.enums import AlertStatus, Decision, Role
from openlfr.store.models import Adjudication, Alert, Watchlist
from tests.govfix import ACCOUNT, Gov
from tests.test_web_governance import people  # noqa: F401 (the fixture)
from tests.test_web_public import Demo, public_urls

#: Elements inside a line of text (any other one starts or ends a block).
INLINE = {"a", "abbr", "b", "code", "em", "i", "kbd", "small", "span", "strong", "sub", "sup",
          "time"}


class VisibleText(HTMLParser):
    """The text a person sees on a page: no markup, no script or style; blocks apart."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._hidden += 1
        elif tag not in INLINE:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._hidden:
            self._hidden -= 1
        elif tag not in INLINE:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def visible(html: str) -> str:
    parser = VisibleText()
    parser.feed(html)
    return " ".join("".join(parser.parts).split())


#: Every stored code that is not a plain word: the permissions, and the enums' values with
#: an underscore.
CODES = sorted({p.value for p in Perm} | {
    m.value for e in vars(enums).values()
    if isinstance(e, type) and issubclass(e, StrEnum) and e is not StrEnum
    for m in e if "_" in m.value})
CODE = re.compile(r"(?<![\w/.-])(?:" + "|".join(re.escape(c) for c in CODES) + r")(?![\w-])")
SNAKE = re.compile(r"\b[a-z][a-z0-9]*_[a-z0-9_]+\b")


def codes_in(html: str) -> list[str]:
    text = visible(html)
    return sorted(set(CODE.findall(text)) | set(SNAKE.findall(text)))


def test_every_code_has_words() -> None:
    assert set(PERM_WORDS) == {p.value for p in Perm}
    for code in CODES:
        # a permission and an audit action may share a code (watchlist.approve: what one may
        # do, and what was done): permissions have their own words
        said = PERM_WORDS[code] if code in PERM_WORDS else words(code)
        assert code in WORDS or code in PERM_WORDS, code
        assert not SNAKE.search(said) and "." not in said, code
    assert words(Role.AUTHORISING_OFFICER) == "authorising officer"
    assert words(Decision.NO_ACTION) == words("no_action") == "no action"
    assert words("something_new.here") == "something new here"  # never the bare code
    assert words(None) == ""


def seed(gov: Gov, demo: Demo) -> dict[str, int]:
    """The demo's data, plus what makes the console's pages show codes if any slipped: a
    decision of no action, a pending alert, an open question, a check of the audit chain."""
    with gov.db.session() as s:
        alerts = s.scalars(select(Alert).where(Alert.deployment_id == demo.ended)
                           .order_by(Alert.id)).all()
        for a in alerts:
            decision = {AlertStatus.CONFIRMED: Decision.CONFIRM,
                        AlertStatus.REJECTED: Decision.REJECT,
                        AlertStatus.NO_ACTION: Decision.NO_ACTION}[a.status]
            s.add(Adjudication(alert_id=a.id, user_name="op1", decision=decision,
                               reason=None if decision == Decision.CONFIRM else "not him"))
        pending = Alert(deployment_id=demo.running, camera="cam-north", track_id=9,
                        pipeline_id="p9", score=0.55, threshold=0.48, model_id="sface-2021dec",
                        seen_at=datetime.now(UTC), status=AlertStatus.PENDING)
        s.add(pending)
        wl = s.scalars(select(Watchlist)).first()
        assert wl is not None
        s.flush()
        ids = {"alert": pending.id, "decided": alerts[-1].id, "watchlist": wl.id}
    ids["question"] = questions.submit_question(gov.db, demo.running, "question",
                                                "Is my face kept?", None)
    auditing.verify(gov.db, gov.actors["au1"])
    return ids


def console_urls(role: Role, demo: Demo, ids: dict[str, int]) -> list[str]:
    """The console's main pages a role may open (the audit log page aside)."""
    may = {p for p, roles in PERMISSIONS.items() if role in roles}
    urls = ["/console", "/console/deployments", f"/console/deployments/{demo.running}",
            f"/console/deployments/{demo.ended}", f"/console/deployments/{demo.draft}",
            "/account/password", "/account/totp"]
    if Perm.ALERT_READ in may:
        urls += ["/console/alerts", f"/console/alerts?status=decided&deployment={demo.ended}",
                 f"/console/alerts/{ids['alert']}", f"/console/alerts/{ids['decided']}"]
    if Perm.WATCHLIST_READ in may:
        urls += ["/console/watchlists", f"/console/watchlists/{ids['watchlist']}"]
    if Perm.QUESTION_READ in may:
        urls += ["/console/questions?status=all"]
    if Perm.AUDIT_READ in may:
        urls += [f"/console/audit/art12/{demo.ended}", "/console/reports"]
    if Perm.USER_MANAGE in may:
        urls += ["/console/users"]
    if Perm.DEPLOYMENT_EDIT in may:
        urls += ["/console/deployments/new"]
    return urls


def test_no_internal_code_on_any_page(gov: Gov, demo: Demo, client: TestClient,
                                      people: Callable[[str], TestClient],  # noqa: F811
                                      ) -> None:
    ids = seed(gov, demo)
    found: dict[str, list[str]] = {}
    for role, name in ACCOUNT.items():
        person = people(name)
        for url in console_urls(role, demo, ids):
            r = person.get(url)
            assert r.status_code == 200, (name, url, r.status_code)
            if codes_in(r.text):
                found[f"{name} {url}"] = codes_in(r.text)
        # a refusal, in words
        refused = person.get("/console/users" if role != Role.ADMIN else "/console/alerts")
        assert refused.status_code == 403
        if codes_in(refused.text):
            found[f"{name} refused"] = codes_in(refused.text)
    for url in public_urls(demo):
        r = client.get(url)
        if r.headers["content-type"].startswith("text/html") and codes_in(r.text):
            found[url] = codes_in(r.text)
    assert not found, found
    # the test would see a code: the raw one is in the HTML a page is made from
    assert codes_in("<p>Status: no_action, needs watchlist.read</p>") == [
        "no_action", "watchlist.read"]
    assert codes_in("<ul><li><code>alert.read</code></li><li>risk_of_harm</li></ul>") == [
        "alert.read", "risk_of_harm"]
    assert codes_in("<script>var a = 'no_action';</script><p>no action</p>") == []


def test_the_refusal_page_knows_who_is_signed_in(app: FastAPI,
                                                 people: Callable[[str], TestClient],  # noqa: F811
                                                 ) -> None:
    r = people("op1").get("/console/users")
    assert r.status_code == 403
    text = visible(r.text)
    assert "Refused" in text
    assert "Only an administrator may manage user accounts: op1 is an operator." in text
    assert "You are signed in as op1, an operator." in text
    assert "Sign out op1" in text and 'href="/console"' in r.text
    assert "Staff sign-in" not in text and 'href="/login"' not in r.text
    # two roles named, in words
    admin = people("admin").get("/console/alerts")
    assert admin.status_code == 403
    assert ("Only an operator, a supervisor, an authorising officer or an auditor may read "
            "alerts: admin is an administrator.") in visible(admin.text)
    # the API says the same, after "refused:"
    api = people("op1").get("/api/v1/users")
    assert api.status_code == 403
    assert api.json()["detail"] == ("refused: only an administrator may manage user accounts: "
                                    "op1 is an operator")
    # a page not found, signed in: the console's navigation; signed out: the sign-in link
    missing = people("op1").get("/console/deployments/999999")
    assert missing.status_code == 404 and "Sign out op1" in visible(missing.text)
    with TestClient(app) as anon:
        gone = anon.get("/public/deployments/999999")
        assert gone.status_code == 404 and "Staff sign-in" in visible(gone.text)
        assert "signed in as" not in visible(gone.text)


def test_home_page_shows_what_waits_for_each_person(gov: Gov, demo: Demo,
                                                    people: Callable[[str], TestClient],  # noqa: F811
                                                    ) -> None:
    ids = seed(gov, demo)
    op1 = people("op1").get("/console").text
    text = visible(op1)
    assert "Alerts waiting for your decision" in text
    assert "1 possible match waits for your decision" in text
    assert f'href="/console/alerts/{ids["alert"]}"' in op1
    assert "Running deployments" in text and f'href="/console/deployments/{demo.running}"' in op1
    for hidden in ("Waiting for your approval", "Residents' open questions",
                   "The audit log's last check"):
        assert hidden not in text
    assert "1 thing waits for you." in text

    ao1 = people("ao1").get("/console").text
    text = visible(ao1)
    assert "Alerts waiting for your decision" not in text
    assert "1 open question or objection from residents" in text
    assert f'href="/console/questions?status=open#q{ids["question"]}"' in ao1
    # the watchlist of the demo is approved: nothing to approve
    assert "No watchlist or deployment waits for your approval." in text
    assert "Intact: " in text and "Checked by au1" in text
    assert "2 things wait for you." not in text and "1 thing waits for you." in text

    admin = visible(people("admin").get("/console").text)
    assert "Alerts waiting for your decision" not in admin
    assert "Waiting for your approval" not in admin
