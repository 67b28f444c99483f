"""What was shared: counts of exports and disclosures, by purpose and category of recipient,
computed from the audit log (the only record of them) for the public pages.

Each audit action below counts as one kind of sharing (``what``):

==========================  ======================================  =========================
audit action                what                                    deployment
==========================  ======================================  =========================
``audit.export``            ``audit_export`` (the log, or a         ``deployment`` of an
                            selection of it), ``art12_export``      Art. 12 export, or the
                                                                    selection's filter
``alert.view_crop``         ``alert_image_viewed``, or              ``deployment``
                            ``alert_image_exported`` (``out`` set:
                            written to a file)
``alert.view``              ``alert_image_viewed`` (``count``       ``deployment``
                            views when recorded)
``subject_image.view``      ``reference_image_viewed``              (a watchlist's: overall)
``preview.view``            ``live_preview_opened``                 the entry's object
==========================  ======================================  =========================

``purpose`` and ``recipient`` are the categories the person named
(:mod:`openlfr.governance.disclosures`), else ``not_stated``; an image *viewed* in the console
or a live preview is seen by a signed-in user of the system, so its recipient is ``internal``
unless another was named. Counts only: never who, which alert or which person.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from openlfr.governance.views import PURPOSE_WORDS, RECIPIENT_WORDS, SharedCount
from openlfr.store.models import AuditRecord

NOT_STATED = "not_stated"
#: Audit actions that are a sharing, counted here (module doc).
ACTIONS = ("audit.export", "alert.view_crop", "alert.view", "subject_image.view",
           "preview.view")
#: How each ``what`` is said on the public pages.
WHAT_WORDS = {
    "audit_export": "audit log exported (whole, or a selection)",
    "art12_export": "Art. 12 record exported",
    "alert_image_viewed": "alert image viewed",
    "alert_image_exported": "alert image exported to a file",
    "reference_image_viewed": "watchlist reference image viewed",
    "live_preview_opened": "live camera preview opened",
}
#: Kinds whose recipient is the viewing user, unless another was named.
VIEWED = ("alert_image_viewed", "reference_image_viewed", "live_preview_opened")


@dataclass
class Shared:
    """The counts overall and per deployment (by id)."""

    overall: list[SharedCount] = field(default_factory=list)
    by_deployment: dict[int, list[SharedCount]] = field(default_factory=dict)

    def of(self, deployment_id: int) -> list[SharedCount]:
        return self.by_deployment.get(deployment_id, [])


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _classify(action: str, object_id: str, details: dict[str, object]
              ) -> tuple[str, int | None, int]:
    """``(what, deployment id or None, count)`` of one entry."""
    if action == "audit.export":
        what = "art12_export" if details.get("what") == "art12" else "audit_export"
        filters = details.get("filters")
        dep = _int(details.get("deployment"))
        if dep is None and isinstance(filters, dict):  # a selection about one deployment
            dep = _int(filters.get("deployment"))
        return what, dep, 1
    if action in ("alert.view_crop", "alert.view"):
        what = "alert_image_exported" if details.get("out") else "alert_image_viewed"
        count = _int(details.get("count")) if action == "alert.view" else 1
        return what, _int(details.get("deployment")), max(1, count or 1)
    if action == "subject_image.view":
        return "reference_image_viewed", None, 1
    return "live_preview_opened", _int(object_id), 1


def _rows(counter: Counter[tuple[str, str, str]]) -> list[SharedCount]:
    return [SharedCount(what=w, purpose=p, recipient=r, count=n)
            for (w, p, r), n in sorted(counter.items())]


def shared_counts(s: Session, deployments: Iterable[int] | None = None) -> Shared:
    """The counts of every sharing on record, overall and for each of ``deployments`` (all
    when None)."""
    wanted = None if deployments is None else set(deployments)
    overall: Counter[tuple[str, str, str]] = Counter()
    per: dict[int, Counter[tuple[str, str, str]]] = {}
    rows = s.execute(select(AuditRecord.action, AuditRecord.object_id, AuditRecord.details)
                     .where(AuditRecord.action.in_(ACTIONS)).order_by(AuditRecord.seq))
    for action, object_id, text in rows:
        try:
            details = json.loads(text)
        except json.JSONDecodeError:
            details = {}
        if not isinstance(details, dict):
            details = {}
        what, dep, n = _classify(action, object_id, details)
        purpose = str(details.get("purpose") or NOT_STATED)
        recipient = str(details.get("recipient")
                        or ("internal" if what in VIEWED else NOT_STATED))
        key = (what, purpose if purpose in PURPOSE_WORDS else "other",
               recipient if recipient in RECIPIENT_WORDS else "other")
        overall[key] += n
        if dep is not None and (wanted is None or dep in wanted):
            per.setdefault(dep, Counter())[key] += n
    return Shared(_rows(overall), {d: _rows(c) for d, c in per.items()})


def total(counts: Iterable[SharedCount]) -> int:
    return sum(c.count for c in counts)
