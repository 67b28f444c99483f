"""The one exception tree of openlfr: what went wrong, in six kinds (and a failed sign-in).

Every layer raises these (or a subclass named for its own subject, e.g.
:class:`openlfr.governance.authz.RuleError` or :class:`openlfr.video.sources.SourceError`),
and each front end maps them in exactly one place:

======================  ==================================================  ====  ====
class                   raised when                                         HTTP  exit
======================  ==================================================  ====  ====
:class:`InvalidInput`   the caller gave something we cannot use, or asked   400   2
                        for something a rule forbids (a bad value, a file
                        that is not an image, a threshold out of range)
:class:`Unauthenticated` wrong user name, password or second-factor code    401   4
:class:`Forbidden`      the caller's role may not do this (audited)         403   3
:class:`NotFound`       no such object                                      404   5
:class:`Conflict`       the object's current state does not allow this      409   6
                        (an alert already decided, a deployment not paused)
:class:`IntegrityFailure` stored data fails its check (ciphertext altered,   500   7
                        a key destroyed or missing): never the caller's
                        fault; logged on the server, answered without detail
:class:`Unavailable`    the server cannot do it now (too busy, a resource   503   8
                        down); try again (``retry_after`` seconds)
======================  ==================================================  ====  ====

Anything else is a bug: the web logs it and answers 500 ``internal error`` with no detail; the
CLI prints ``internal error`` and exits 1 (the traceback with ``OPENLFR_DEBUG=1``). A bare
``ValueError`` from the standard library is such a bug unless the code that expects it catches
it and raises :class:`InvalidInput` naming the field.

Request-shape validation (FastAPI/Pydantic) stays 422 in the API, and a CLI usage error (a
missing or mistyped option) exits 2. A class that belongs to two kinds (e.g. a governance
conflict that is also a :class:`~openlfr.governance.authz.RuleError`) is classified by
:func:`kind`, which checks the kinds in the order of :data:`KINDS`.

Messages name fields (``threshold``, ``limit``, ``planned_start``), not command-line flags:
the same message reaches an API caller and a CLI user.
"""

from __future__ import annotations


class OpenLFRError(Exception):
    """The base of every error openlfr raises on purpose."""


class InvalidInput(OpenLFRError):
    """The caller's input cannot be used, or breaks a rule. ``field`` names the input when one
    is to blame (``"threshold"``, ``"planned_end"``), else ``None``."""

    def __init__(self, message: str = "", field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Unauthenticated(OpenLFRError):
    """A sign-in failed (the message never says whether the name or the password was wrong)."""


class Forbidden(OpenLFRError):
    """The actor's role may not do this (or a rule such as "not your own" forbids it)."""


class NotFound(OpenLFRError):
    """No such object."""


class Conflict(OpenLFRError):
    """The object exists but its current state does not allow this (already decided, not
    paused, already ended, already held, purged)."""


class IntegrityFailure(OpenLFRError):
    """Stored data fails its integrity check (altered ciphertext, a destroyed or missing key,
    a corrupt store): the server's problem, never the caller's; the front ends log it and
    answer without detail."""


class Unavailable(OpenLFRError):
    """Cannot be done at the moment (too many images being decoded, a resource down); the
    caller may try again after ``retry_after`` seconds (``None``: no time to say)."""

    def __init__(self, message: str = "", retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


#: The kinds in the order :func:`kind` checks them: the most serious first, so that a class
#: belonging to two kinds is reported as the more serious one (a Conflict that is also a
#: rule break is a conflict).
KINDS: tuple[type[OpenLFRError], ...] = (IntegrityFailure, Unavailable, Unauthenticated,
                                         Forbidden, NotFound, Conflict, InvalidInput)


def kind(exc: BaseException) -> type[OpenLFRError] | None:
    """Which of :data:`KINDS` ``exc`` is, or ``None`` for anything else (a bug)."""
    for k in KINDS:
        if isinstance(exc, k):
            return k
    return None


def message(exc: BaseException) -> str:
    """The exception's message on one line (a driver's message may span several)."""
    text = " ".join(str(exc.args[0] if len(exc.args) == 1 else exc).split())
    return text or type(exc).__name__
