"""One audit entry, its canonical encoding and hash, and the builder that chains new entries.

The scheme
----------
Every entry carries ``seq`` (1, 2, 3, … with no gaps), ``prev_hash`` (the ``hash`` of the entry
before it; :data:`GENESIS`, 64 zeros, for entry 1) and ``hash``::

    hash = SHA-256( canonical_bytes(entry) ).hexdigest()        # lowercase hex

``canonical_bytes`` is the UTF-8 encoding of a JSON object holding every field except ``hash``
(``seq``, ``time``, ``actor``, ``action``, ``object_type``, ``object_id``, ``details``,
``prev_hash``), written exactly as Python's::

    json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
               allow_nan=False).encode("utf-8")

so anyone holding the entries can recompute every hash with ``hashlib`` and ``json`` alone.
Changing any field of any entry changes its hash; because the next entry embeds that hash, an
edit, deletion, insertion or reordering breaks the chain at the first entry touched
(:func:`openlfr.audit.verify.verify_chain`).

Rules for the values (checked by :func:`canonical_bytes`, a :class:`ValueError` otherwise):

* JSON types only: ``dict`` (string keys), ``list``, ``str``, ``int``, ``bool``, ``None``.
  Tuples, sets, bytes, dates, numpy values and every other type are refused, so that what is
  stored, exported and read back encodes to the very same bytes.
* **No floats.** Float text differs between JSON implementations (``1e-07`` vs ``1e-7``), and
  NaN/Infinity are not JSON at all, so a float could not be re-hashed byte-for-byte elsewhere.
  Write scores and thresholds as decimal strings (``"0.42"``) or scaled integers.
* Integers must lie within ±(2**53 - 1) so that JavaScript and other double-based readers see
  the same number.
* Strings are hashed as given (no Unicode normalisation); storage must preserve them exactly.
  Object keys are sorted by code point.
* ``time`` is ISO-8601 UTC with a ``Z`` suffix, to the second or millisecond:
  ``2026-11-26T14:05:09Z`` or ``2026-11-26T14:05:09.123Z``.

Storing entries
---------------
Storage must give back exactly what was hashed: keep ``time`` and the other strings as text and
``details`` as the JSON text (or a JSON type that preserves strings and integers exactly; key
order does not matter, the encoding sorts keys). ``seq`` is the primary key: a concurrent
writer that built the same ``seq`` fails on insert and retries from the new head.

What the chain does not prove: an entry appended at the tail by someone who can write to the
store is indistinguishable from an honest one; that is for database permissions and
append-only triggers to prevent, and for the next signed checkpoint to pin down.

No biometric data in the log
----------------------------
:func:`check_no_biometrics` (run by :meth:`AuditChain.append` / :func:`build_entry`) refuses
``details`` that could carry a template, face crop or frame. The rule is deliberately simple and
deterministic:

* ``bytes``, ``bytearray``, ``memoryview`` and anything array-like (an object with
  ``__array__``, ``__array_interface__`` or ``shape`` + ``dtype``, e.g. numpy arrays);
* a string (value or key) that is a ``data:`` URI with ``;base64,``, or that is
  :data:`MAX_BASE64_RUN` or more characters long and consists only of base64/base64url
  characters and line breaks (an encoded image or template; prose has spaces, so it passes);
* a string holding :data:`MAX_NUMBERS` or more decimal fractions (``0.123``, ``-1.5e-3``): a
  float vector written as text;
* a list holding :data:`MAX_NUMBERS` or more numbers and nothing else (a vector as a list; write
  lists of ids as strings);
* ``details`` whose canonical encoding exceeds :data:`MAX_DETAILS_BYTES`.

Verification does not re-apply this policy: it checks integrity, not content.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

JSON = dict[str, "JSON"] | list["JSON"] | str | int | bool | None
"""A JSON value as allowed in ``details`` (no floats; see the module docstring)."""

GENESIS = "0" * 64
"""The ``prev_hash`` of the first entry (seq 1)."""

FIELDS = (
    "seq",
    "time",
    "actor",
    "action",
    "object_type",
    "object_id",
    "details",
    "prev_hash",
    "hash",
)
"""Every field of an entry, in declaration order (``hash`` last)."""

MAX_SAFE_INT = 2**53 - 1
MAX_BASE64_RUN = 256
MAX_NUMBERS = 16
MAX_DETAILS_BYTES = 16 * 1024

_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z$")
_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
_BASE64_RE = re.compile(r"^[A-Za-z0-9+/=_\-\r\n]+$")
_DATA_URI_RE = re.compile(r"data:[^,]{0,100};base64,", re.IGNORECASE)
_FRACTION_RE = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?\d+[eE][-+]?\d+")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One link of the audit chain. ``hash`` covers every other field (see the module docstring).

    The dataclass is frozen, but ``details`` is a plain ``dict`` (so it encodes as JSON); do not
    mutate it — :func:`verify_chain` would report the entry as edited, which it then is.
    """

    seq: int
    time: str
    actor: str
    action: str
    object_type: str
    object_id: str
    details: dict[str, JSON] = field(default_factory=dict)
    prev_hash: str = GENESIS
    hash: str = ""

    def to_dict(self) -> dict[str, Any]:
        """All fields as a plain dict (the JSON-lines form, ``hash`` included)."""
        return {name: getattr(self, name) for name in FIELDS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditEntry:
        """Build an entry from :meth:`to_dict` output; exactly the known fields, right types.

        Raises :class:`ValueError` naming the offending field. The hash is *not* checked here;
        that is :func:`openlfr.audit.verify.verify_chain`'s job.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"an audit entry must be a JSON object, not {type(data).__name__}")
        missing = [name for name in FIELDS if name not in data]
        extra = sorted(str(k) for k in data if k not in FIELDS)
        if missing:
            raise ValueError(f"audit entry lacks field(s): {', '.join(missing)}")
        if extra:
            raise ValueError(f"audit entry has unknown field(s): {', '.join(extra)}")
        seq = data["seq"]
        if type(seq) is not int:
            raise ValueError(f"field 'seq' must be an integer, not {type(seq).__name__}")
        for name in ("time", "actor", "action", "object_type", "object_id", "prev_hash", "hash"):
            if not isinstance(data[name], str):
                raise ValueError(
                    f"field {name!r} must be a string, not {type(data[name]).__name__}"
                )
        if not isinstance(data["details"], dict):
            raise ValueError(
                f"field 'details' must be an object, not {type(data['details']).__name__}"
            )
        entry = cls(**{name: data[name] for name in FIELDS})
        canonical_bytes(entry)  # refuse floats, non-JSON values, bad time: same rules as writing
        return entry


# --------------------------------------------------------------------------- canonical form


def _check_json(value: Any, path: str) -> None:
    """Refuse anything that would not encode to the same bytes everywhere."""
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise ValueError(f"{path}: integer {value} is outside ±(2**53 - 1)")
        return
    if isinstance(value, float):
        raise ValueError(
            f"{path}: floats are not allowed in audit entries (got {value!r}); "
            "write a decimal string such as '0.42' or a scaled integer"
        )
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{path}: object keys must be strings, not {type(key).__name__}")
            _check_json(item, f"{path}.{key}")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{path}[{i}]")
        return
    raise ValueError(
        f"{path}: {type(value).__name__} is not a JSON type allowed in audit entries "
        "(dict, list, str, int, bool, None)"
    )


def check_time(time: str) -> None:
    """Raise :class:`ValueError` unless ``time`` is ISO-8601 UTC, e.g. ``2026-11-26T14:05:09Z``."""
    if not isinstance(time, str) or not _TIME_RE.match(time):
        raise ValueError(
            f"time must be ISO-8601 UTC like '2026-11-26T14:05:09Z' or "
            f"'2026-11-26T14:05:09.123Z', got {time!r}"
        )
    try:
        datetime.fromisoformat(time[:-1])
    except ValueError as exc:
        raise ValueError(f"time {time!r} is not a valid date and time: {exc}") from None


def format_time(when: datetime | None = None) -> str:
    """``when`` (timezone-aware; default now) as ISO-8601 UTC with milliseconds."""
    if when is None:
        when = datetime.now(UTC)
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("audit times must be timezone-aware datetimes")
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def canonical_bytes(entry: AuditEntry) -> bytes:
    """The bytes that are hashed: every field except ``hash``, canonical JSON, UTF-8.

    Raises :class:`ValueError` for floats, NaN, non-JSON types, out-of-range integers, a
    malformed ``time`` or strings that cannot be encoded as UTF-8 (lone surrogates).
    """
    if type(entry.seq) is not int:
        raise ValueError(f"seq must be an integer, not {type(entry.seq).__name__}")
    for name in ("actor", "action", "object_type", "object_id", "prev_hash"):
        value = getattr(entry, name)
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, not {type(value).__name__}")
    check_time(entry.time)
    if not isinstance(entry.details, dict):
        raise ValueError(f"details must be a dict, not {type(entry.details).__name__}")
    _check_json(entry.seq, "seq")
    _check_json(entry.details, "details")
    fields = {name: getattr(entry, name) for name in FIELDS if name != "hash"}
    text = json.dumps(
        fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"audit entry holds a string that is not valid Unicode: {exc}") from None


def compute_hash(entry: AuditEntry) -> str:
    """SHA-256 (lowercase hex) of :func:`canonical_bytes`."""
    return hashlib.sha256(canonical_bytes(entry)).hexdigest()


def is_hash(value: object) -> bool:
    """True for 64 lowercase hex digits (the form of every ``hash`` and ``prev_hash``)."""
    return isinstance(value, str) and bool(_HEX64_RE.match(value))


# --------------------------------------------------------------------------- biometrics policy


def _is_array_like(value: object) -> bool:
    return (
        hasattr(value, "__array__")
        or hasattr(value, "__array_interface__")
        or (hasattr(value, "shape") and hasattr(value, "dtype"))
    )


def _check_string(text: str, path: str) -> None:
    if _DATA_URI_RE.search(text):
        raise ValueError(f"{path}: looks like base64 data (a data: URI); no biometric data")
    if len(text) >= MAX_BASE64_RUN and _BASE64_RE.match(text):
        raise ValueError(
            f"{path}: a {len(text)}-character base64-like string looks like encoded image or "
            "template data; no biometric data in the audit log"
        )
    if len(_FRACTION_RE.findall(text)) >= MAX_NUMBERS:
        raise ValueError(
            f"{path}: holds {MAX_NUMBERS} or more decimal numbers, which looks like a feature "
            "vector; no biometric data in the audit log"
        )


def check_no_biometrics(details: Mapping[str, Any], path: str = "details") -> None:
    """Raise :class:`ValueError` if ``details`` could carry biometric data (module docstring)."""

    def walk(value: Any, where: str) -> None:
        if isinstance(value, bytes | bytearray | memoryview):
            raise ValueError(
                f"{where}: {type(value).__name__} values are refused; no biometric data "
                "(templates, crops, frames) in the audit log"
            )
        if _is_array_like(value):
            raise ValueError(
                f"{where}: array values ({type(value).__name__}) are refused; no biometric "
                "data in the audit log"
            )
        if isinstance(value, str):
            _check_string(value, where)
        elif isinstance(value, Mapping):
            for key, item in value.items():
                if isinstance(key, str):
                    _check_string(key, f"{where} key {key[:40]!r}")
                walk(item, f"{where}.{key}")
        elif isinstance(value, list | tuple):
            numbers = [x for x in value if isinstance(x, int | float) and not isinstance(x, bool)]
            if len(value) >= MAX_NUMBERS and len(numbers) == len(value):
                raise ValueError(
                    f"{where}: a list of {len(value)} numbers looks like a feature vector; "
                    "no biometric data in the audit log (write lists of ids as strings)"
                )
            for i, item in enumerate(value):
                walk(item, f"{where}[{i}]")

    walk(details, path)


# --------------------------------------------------------------------------- building entries


def _copy_json(value: Any) -> Any:
    """A deep copy of already-checked JSON data, so later changes by the caller do not leak in."""
    if isinstance(value, dict):
        return {k: _copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_json(v) for v in value]
    return value


def build_entry(
    seq: int,
    prev_hash: str,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    details: Mapping[str, Any] | None = None,
    time: str | datetime | None = None,
) -> AuditEntry:
    """Make the entry that follows a head (``seq - 1``, ``prev_hash``), hash included.

    Applies the write-time policy: non-empty ``actor``/``action``/``object_type``, string
    ``object_id``, :func:`check_no_biometrics`, the JSON rules and :data:`MAX_DETAILS_BYTES`.
    """
    if type(seq) is not int or seq < 1:
        raise ValueError(f"seq must be a positive integer, got {seq!r}")
    if not is_hash(prev_hash):
        raise ValueError(f"prev_hash must be 64 lowercase hex digits, got {prev_hash!r}")
    for name, value in (("actor", actor), ("action", action), ("object_type", object_type)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    if not isinstance(object_id, str):
        raise ValueError(f"object_id must be a string, got {type(object_id).__name__}")
    details = {} if details is None else details
    if not isinstance(details, Mapping):
        raise ValueError(f"details must be a mapping, not {type(details).__name__}")
    check_no_biometrics(details)
    for name, value in (
        ("actor", actor),
        ("action", action),
        ("object_type", object_type),
        ("object_id", object_id),
    ):
        _check_string(value, name)
    plain = dict(details)
    _check_json(plain, "details")
    plain = _copy_json(plain)
    if time is None or isinstance(time, datetime):
        stamp = format_time(time)
    else:
        stamp = time
        check_time(stamp)
    entry = AuditEntry(
        seq=seq,
        time=stamp,
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=object_id,
        details=plain,
        prev_hash=prev_hash,
    )
    digest = compute_hash(entry)  # also refuses strings that are not valid Unicode
    size = len(json.dumps(plain, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if size > MAX_DETAILS_BYTES:
        raise ValueError(
            f"details encode to {size} bytes, more than the {MAX_DETAILS_BYTES} allowed; "
            "the audit log records facts, not payloads"
        )
    return replace(entry, hash=digest)


class AuditChain:
    """The head of a chain (last ``seq`` and its ``hash``) and the builder of the next entries.

    In memory: ``chain = AuditChain(); chain.append(...)``. Against storage (one transaction):
    read the last stored entry, ``AuditChain.from_head(last).append(...)``, insert the entry and
    commit; the unique ``seq`` of the table turns a concurrent writer into a retry.
    """

    def __init__(
        self,
        seq: int = 0,
        head_hash: str = GENESIS,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if type(seq) is not int or seq < 0:
            raise ValueError(f"seq must be a non-negative integer, got {seq!r}")
        if not is_hash(head_hash):
            raise ValueError(f"head_hash must be 64 lowercase hex digits, got {head_hash!r}")
        if seq == 0 and head_hash != GENESIS:
            raise ValueError("an empty chain (seq 0) has the GENESIS head hash")
        self._seq = seq
        self._head = head_hash
        self._clock = clock

    @classmethod
    def from_head(
        cls, head: AuditEntry | None, clock: Callable[[], datetime] | None = None
    ) -> AuditChain:
        """Continue after ``head`` (the last stored entry), or start afresh when ``None``."""
        if head is None:
            return cls(clock=clock)
        return cls(head.seq, head.hash, clock=clock)

    @property
    def seq(self) -> int:
        """The seq of the last entry (0 for an empty chain)."""
        return self._seq

    @property
    def head_hash(self) -> str:
        """The hash of the last entry (:data:`GENESIS` for an empty chain)."""
        return self._head

    def append(
        self,
        actor: str,
        action: str,
        object_type: str,
        object_id: str,
        details: Mapping[str, Any] | None = None,
        time: str | datetime | None = None,
    ) -> AuditEntry:
        """Build the next entry (see :func:`build_entry`) and make it the new head."""
        if time is None and self._clock is not None:
            time = self._clock()
        entry = build_entry(
            self._seq + 1, self._head, actor, action, object_type, object_id, details, time
        )
        self._seq, self._head = entry.seq, entry.hash
        return entry
