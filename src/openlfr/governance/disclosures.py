"""The purpose and the category of recipient an export may name (``purpose``, ``recipient``
in its audit entry), checked in one place for every front end.

Both are optional and come from fixed lists (:class:`openlfr.store.enums.DisclosurePurpose`,
:class:`openlfr.store.enums.RecipientCategory`), never free text: they are counted on the public
pages (:mod:`openlfr.transparency.shared`), where a name or a case number must never appear.
"""

from __future__ import annotations

from openlfr.governance.authz import RuleError
from openlfr.store.enums import DisclosurePurpose, RecipientCategory, choices


def _one(value: str | None, enum: type[DisclosurePurpose] | type[RecipientCategory],
         field: str) -> str | None:
    text = (value or "").strip().lower().replace("-", "_")
    if not text:
        return None
    try:
        return enum(text).value
    except ValueError:
        raise RuleError(f"{field}: {value!r} is not one of {choices(enum)}",
                        field=field) from None


def disclosure_details(purpose: str | None, recipient: str | None) -> dict[str, str]:
    """The audit details of an export's purpose and recipient category: only those given,
    each checked against its list (a clear error naming the field otherwise)."""
    out: dict[str, str] = {}
    p = _one(purpose, DisclosurePurpose, "purpose")
    r = _one(recipient, RecipientCategory, "recipient")
    if p is not None:
        out["purpose"] = p
    if r is not None:
        out["recipient"] = r
    return out
