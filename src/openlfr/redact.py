"""Redaction, in one place: camera sources without their secrets (the one form shown in pages,
API, CLI, audit entries and log messages; :func:`redact_text` for a message that holds a URL
somewhere), and residents' texts without personal details (:func:`redact_personal`, for what
the public pages publish).

A camera source is a file path, a webcam index or a stream URL. :func:`redact` hides, in a URL:

* the **userinfo** (``user:password@``), replaced by ``***@``. The host is what follows the
  *last* ``@`` of the authority, so a password holding ``@``, ``?`` or ``#``
  (``rtsp://u:p@ss@host/s``) is hidden whole; so is one holding ``/`` when the first path
  segment still carries the ``@`` (``rtsp://u:p/ss@host/s``);
* the **values of query parameters whose names look like secrets** (:data:`SECRET_NAMES`, or a
  name containing one of :data:`SECRET_PARTS`), replaced by ``***``. ``user`` is hidden too:
  a user name is half of a credential.

What it cannot see: a secret written into the *path* (``rtsp://host/live/s3cret``) or in a
parameter with an innocent name looks like any other path or value. Such sources are still
stored encrypted (:mod:`openlfr.governance.deployments`), but their display form shows them.

:func:`source_digest` is a *keyed* digest (HMAC-SHA256) of a secret source, for audit entries:
it tells two sources apart without revealing either, and, unlike a plain hash, cannot be
reversed by trying likely passwords without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from urllib.parse import unquote

MASK = "***"
#: Query parameter names (compared case-insensitively, percent-decoded) whose values are hidden.
SECRET_NAMES = frozenset({
    "pwd", "pw", "pass", "passwd", "password", "passphrase", "token", "key", "secret", "auth",
    "sig", "signature", "user", "username", "usr", "login", "credential", "credentials",
    "session", "sessionid", "sid", "code",
})
#: Parts of a parameter name that make it secret (``api_key``, ``access_token``, ``x-auth`` …).
SECRET_PARTS = ("pass", "pwd", "token", "secret", "auth", "apikey", "api_key", "api-key",
                "signature", "credential", "private")

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)
_URL_IN_TEXT = re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*://\S+")


def is_secret_name(name: str) -> bool:
    """Does a query parameter called ``name`` look like it holds a secret?"""
    low = unquote(name).strip().lower()
    return low in SECRET_NAMES or any(part in low for part in SECRET_PARTS)


def _split_userinfo(rest: str) -> tuple[bool, str]:
    """``rest`` (what follows ``scheme://``) → (had userinfo, rest without it)."""
    first, slash, after = rest.partition("/")
    if "@" in first:
        return True, first.rsplit("@", 1)[1] + slash + after
    # a password holding '/': "u:p/ss@host/path" — the '@' sits in the first path segment
    second, slash2, after2 = after.partition("/")
    if slash and "@" in second and ":" in first:
        return True, second.rsplit("@", 1)[1] + slash2 + after2
    return False, rest


def _redact_query(query: str) -> str:
    parts = []
    for item in query.split("&"):
        name, eq, _value = item.partition("=")
        parts.append(f"{name}={MASK}" if eq and is_secret_name(name) else item)
    return "&".join(parts)


def redact(source: str) -> str:
    """``source`` as it may be shown to anyone and written to the audit log (module doc)."""
    text = str(source)
    m = _SCHEME.match(text.strip())
    if m is None:
        return text  # a file path or a webcam index: nothing a parser can tell apart
    scheme, rest = m.group(1), m.group(2)
    had_userinfo, rest = _split_userinfo(rest)
    # the host ends at the first '/', '?' or '#'
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0),
              default=len(rest))
    host, tail = rest[:cut], rest[cut:]
    fragment = ""
    if "#" in tail:
        tail, _, frag = tail.partition("#")
        fragment = "#" + (MASK if frag else "")
    if "?" in tail:
        path, _, query = tail.partition("?")
        tail = f"{path}?{_redact_query(query)}"
    userinfo = f"{MASK}@" if had_userinfo else ""
    return f"{scheme}://{userinfo}{host}{tail}{fragment}"


def redact_text(text: str) -> str:
    """A free text (an error message, a log line) with every URL in it redacted as
    :func:`redact` does (a URL runs from its ``scheme://`` to the next blank)."""
    return _URL_IN_TEXT.sub(lambda m: redact(m.group(0)), str(text))


def is_redacted(source: str) -> bool:
    """Does ``source`` carry a mask where a secret was (a display form, not a source)?"""
    m = _SCHEME.match(source.strip())
    if m is None:
        return False
    rest = m.group(2)
    return rest.startswith(f"{MASK}@") or f"={MASK}" in rest


def source_digest(key: bytes, source: str) -> str:
    """A keyed digest (HMAC-SHA256, 128 bits in hex) of a secret camera source."""
    return hmac.new(key, b"openlfr/camera-source\x00" + source.encode(),
                    hashlib.sha256).hexdigest()[:32]


# -- personal details in residents' texts -------------------------------------------------------

#: What replaces a personal detail in a published text.
REMOVED = "[removed]"
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"\b(?:https?://|www\.)\S+", re.IGNORECASE)
#: A phone number or any long number (an account, a case, a plate of digits): seven digits or
#: more, spaces, dots, dashes, slashes and brackets allowed between them, a leading + kept out.
_NUMBER = re.compile(r"\+?\(?\d(?:[\s./()-]{0,2}\d){6,}")
#: A UK postcode (``SW1A 1AA``, ``M1 1AE``).
_POSTCODE = re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}\b", re.IGNORECASE)
#: A name given as such: "my name is Jane Doe", "I am John", "signed, Ann Lee".
_NAMED = re.compile(r"\b(?i:my name is|my name's|I am|I'm|signed,?|regards,?|thanks,?)\s+"
                    r"((?:[A-Z][\w'-]+)(?:\s+[A-Z][\w'-]+){0,2})")


def redact_personal(text: str) -> str:
    """``text`` with the personal details a machine can find replaced by ``[removed]``: e-mail
    addresses, web addresses, phone and other long numbers, UK postcodes, and a name introduced
    as one ("my name is …", "I'm …", "regards, …", capitalised). Names mentioned any other way
    cannot be found reliably: whoever publishes a text reads it first (the overseer edits the
    published question, :func:`openlfr.governance.questions.publish_answer`)."""
    out = _EMAIL.sub(REMOVED, text)
    out = _URL.sub(REMOVED, out)
    out = _NUMBER.sub(REMOVED, out)
    out = _POSTCODE.sub(REMOVED, out)
    return _NAMED.sub(lambda m: m.group(0)[: m.start(1) - m.start(0)] + REMOVED, out)
