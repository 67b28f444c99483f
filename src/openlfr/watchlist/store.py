"""The watchlist: who is on it, the reference photos behind each entry, and their templates.

On disk a watchlist is one file: an uncompressed ZIP archive holding

* ``meta.json`` — a header (``"format": "openlfr-watchlist"``, an integer ``"version"``, the
  ``model_id``, ``dim`` and template ``count``) and the subjects with their references, and
* ``templates.npy`` — the ``(count, dim)`` little-endian float32 template matrix, one row per
  reference, in the order the references are listed (subject by subject).

Nothing in it is ever unpickled: the JSON is parsed as JSON and the matrix is read with
``allow_pickle=False``. ``unzip -p list.watchlist meta.json`` shows the metadata. Saving is
atomic: a temporary file in the same directory is written, flushed to disk, then renamed over
the old file, so a crash or a full disk never leaves a half-written watchlist behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np

from openlfr import errors
from openlfr.vision.types import FloatArray, Template
from openlfr.watchlist.gallery import Engine, Gallery

FORMAT = "openlfr-watchlist"
VERSION = 1
META_NAME = "meta.json"
TEMPLATES_NAME = "templates.npy"
#: Largest deviation from unit length accepted for a stored template.
_NORM_TOLERANCE = 1e-3
#: Limits that keep a hostile file from using unbounded memory: the largest ``meta.json``
#: (about 100,000 subjects), the largest template length of any face model, and the highest
#: compression ratio of a member (JSON deflates about 5:1, templates are stored; a zip bomb
#: reaches 1000:1). Each is checked on the archive's directory before anything is read.
MAX_META_BYTES = 64 << 20
MAX_DIM = 4096
MAX_RATIO = 200


class WatchlistError(errors.InvalidInput):
    """A watchlist file cannot be used: missing, corrupt, too new, or from another model."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Reference:
    """One enrolment photo of a subject (the photo itself is not stored, only its digest)."""

    id: str
    source: str = ""
    image_sha256: str = ""
    added_at: str = field(default_factory=_now)
    quality: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reference:
        return cls(
            id=_text(data, "id"),
            source=_text(data, "source"),
            image_sha256=_text(data, "image_sha256"),
            added_at=_text(data, "added_at"),
            quality=_mapping(data, "quality"),
        )


@dataclass
class Subject:
    """A person on the watchlist."""

    id: str
    display_name: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    references: list[Reference] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Subject:
        metadata = _mapping(data, "metadata")
        if not all(isinstance(v, str) for v in metadata.values()):
            raise TypeError("subject metadata values must be strings")
        references = data.get("references", [])
        if not isinstance(references, list) or not all(isinstance(r, dict) for r in references):
            raise TypeError("subject references must be a list of objects")
        return cls(
            id=_text(data, "id"),
            display_name=_text(data, "display_name"),
            metadata=dict(metadata),
            references=[Reference.from_dict(r) for r in references],
        )


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise TypeError(f"{key!r} must be a string, got {type(value).__name__}")
    return value


def _mapping(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise TypeError(f"{key!r} must be an object, got {type(value).__name__}")
    return value


@dataclass(eq=False)
class Watchlist:
    """Subjects, their references, and one template per reference, for one face model.

    ``templates`` maps each reference id to its template vector. Templates are stored
    L2-normalised float32; every reference must have exactly one.
    """

    model_id: str
    dim: int
    subjects: dict[str, Subject] = field(default_factory=dict)
    templates: dict[str, FloatArray] = field(default_factory=dict, repr=False)
    created_at: str = field(default_factory=_now)

    def __post_init__(self) -> None:
        if not isinstance(self.model_id, str) or not self.model_id:
            raise ValueError("a watchlist needs a model_id")
        if isinstance(self.dim, bool) or int(self.dim) != self.dim or self.dim <= 0:
            raise ValueError(f"dim must be a positive integer, got {self.dim!r}")
        self.dim = int(self.dim)
        given, self.templates = self.templates, {}
        seen: set[str] = set()
        for key, subject in self.subjects.items():
            if key != subject.id:
                raise ValueError(f"subject {subject.id!r} is filed under the key {key!r}")
            for ref in subject.references:
                if ref.id in seen:
                    raise ValueError(f"reference id {ref.id!r} appears twice")
                seen.add(ref.id)
                if ref.id not in given:
                    raise ValueError(f"reference {ref.id!r} has no template")
                self.templates[ref.id] = self._vector(given[ref.id])
        extra = set(given) - seen
        if extra:
            raise ValueError(f"template {sorted(extra)[0]!r} belongs to no reference")

    # -- description -------------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of templates (= references)."""
        return len(self.templates)

    @property
    def subject_count(self) -> int:
        return len(self.subjects)

    def __repr__(self) -> str:
        return (
            f"Watchlist(model_id={self.model_id!r}, dim={self.dim}, "
            f"subjects={self.subject_count}, templates={len(self)})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Watchlist):
            return NotImplemented
        return (
            (self.model_id, self.dim, self.created_at, self.subjects)
            == (other.model_id, other.dim, other.created_at, other.subjects)
            and self.templates.keys() == other.templates.keys()
            and all(np.array_equal(v, other.templates[k]) for k, v in self.templates.items())
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def iter_templates(self) -> Iterator[tuple[Subject, Reference, FloatArray]]:
        """Every (subject, reference, template) in file order."""
        for subject in self.subjects.values():
            for ref in subject.references:
                yield subject, ref, self.templates[ref.id]

    def template(self, reference_id: str) -> FloatArray:
        return self.templates[reference_id]

    def find_image(self, image_sha256: str) -> tuple[Subject, Reference] | None:
        """The subject and reference enrolled from an image with this digest, if any."""
        for subject in self.subjects.values():
            for ref in subject.references:
                if ref.image_sha256 == image_sha256:
                    return subject, ref
        return None

    def matrix(self) -> FloatArray:
        """All templates as one ``(len, dim)`` float32 matrix, in file order."""
        rows = [vector for _, _, vector in self.iter_templates()]
        if not rows:
            return np.empty((0, self.dim), dtype=np.float32)
        return np.stack(rows).astype(np.float32, copy=False)

    # -- changes -----------------------------------------------------------------------------

    def _vector(self, vector: FloatArray | Template) -> FloatArray:
        if isinstance(vector, Template):
            if vector.model_id != self.model_id:
                raise ValueError(
                    f"a {vector.model_id!r} template cannot join a watchlist of "
                    f"{self.model_id!r} templates"
                )
            vector = vector.vector
        array = np.asarray(vector, dtype=np.float64)
        if array.shape != (self.dim,):
            raise ValueError(f"a template must have shape ({self.dim},), got {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError("a template contains NaN or infinite values")
        norm = float(np.linalg.norm(array))
        if norm == 0.0:
            raise ValueError("a template of zero length cannot be normalised")
        out = (array / norm).astype(np.float32)
        out.flags.writeable = False
        return out

    def add_subject(
        self, subject_id: str, display_name: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> Subject:
        """Add a new subject (refuses an id already on the watchlist)."""
        if subject_id in self.subjects:
            raise ValueError(f"subject {subject_id!r} is already on the watchlist")
        return self.ensure_subject(subject_id, display_name, metadata)

    def ensure_subject(
        self, subject_id: str, display_name: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> Subject:
        """The subject with this id, created if it is new (an existing one is left as it is)."""
        existing = self.subjects.get(subject_id)
        if existing is not None:
            return existing
        if not isinstance(subject_id, str) or not subject_id:
            raise ValueError("a subject id must be a non-empty string")
        meta = dict(metadata or {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
            raise ValueError("subject metadata keys and values must be strings")
        subject = Subject(subject_id, display_name or subject_id, meta)
        self.subjects[subject_id] = subject
        return subject

    def add_reference(
        self, subject_id: str, reference: Reference, vector: FloatArray | Template
    ) -> None:
        """Attach a reference and its template to an existing subject."""
        subject = self.subjects.get(subject_id)
        if subject is None:
            raise ValueError(f"no subject {subject_id!r} on the watchlist; add it first")
        if not reference.id:
            raise ValueError("a reference needs an id")
        if reference.id in self.templates:
            raise ValueError(f"reference id {reference.id!r} is already on the watchlist")
        self.templates[reference.id] = self._vector(vector)
        subject.references.append(reference)

    def remove_subject(self, subject_id: str) -> int:
        """Remove a subject and its templates; returns how many templates went (0 if unknown)."""
        subject = self.subjects.pop(subject_id, None)
        if subject is None:
            return 0
        for ref in subject.references:
            del self.templates[ref.id]
        return len(subject.references)

    def remove_reference(self, reference_id: str) -> bool:
        """Remove one reference and its template (the subject stays, even if left without)."""
        if reference_id not in self.templates:
            return False
        for subject in self.subjects.values():
            for i, ref in enumerate(subject.references):
                if ref.id == reference_id:
                    del subject.references[i]
                    del self.templates[reference_id]
                    return True
        raise AssertionError("unreachable: a template without a reference")  # pragma: no cover

    def gallery(self, faiss_min_size: int = 20_000, engine: Engine = "auto") -> Gallery:
        """A new searchable :class:`Gallery` of all templates (later changes do not reach it)."""
        gallery = Gallery(self.model_id, self.dim, faiss_min_size=faiss_min_size, engine=engine)
        subject_ids: list[str] = []
        reference_ids: list[str] = []
        for subject, ref, _ in self.iter_templates():
            subject_ids.append(subject.id)
            reference_ids.append(ref.id)
        if reference_ids:
            gallery.add_many(subject_ids, reference_ids, self.matrix())
        return gallery

    # -- file --------------------------------------------------------------------------------

    def _meta(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "model_id": self.model_id,
            "dim": self.dim,
            "count": len(self),
            "created_at": self.created_at,
            "saved_at": _now(),
            "subjects": [s.as_dict() for s in self.subjects.values()],
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the watchlist to ``path`` atomically (the old file survives any failure)."""
        path = Path(path)
        try:
            meta = json.dumps(self._meta(), ensure_ascii=False, indent=1,
                              allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:  # UnicodeEncodeError: a lone surrogate
            raise WatchlistError(f"{path}: metadata cannot be written as JSON: {exc}") from exc
        matrix = np.ascontiguousarray(self.matrix(), dtype="<f4")
        directory = path.parent if str(path.parent) else Path(".")
        tmp_name = ""
        try:
            with tempfile.NamedTemporaryFile(
                "wb", dir=directory, prefix=f".{path.name}.", suffix=".tmp", delete=False
            ) as handle:
                tmp_name = handle.name
                with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as archive:
                    archive.writestr(META_NAME, meta, compress_type=zipfile.ZIP_DEFLATED)
                    big = matrix.nbytes > (1 << 30)
                    with archive.open(TEMPLATES_NAME, "w", force_zip64=big) as member:
                        np.lib.format.write_array(member, matrix, allow_pickle=False)
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(OSError):  # keep the old file's permissions, else 0600
                os.chmod(tmp_name, path.stat().st_mode & 0o7777)
            os.replace(tmp_name, path)
            tmp_name = ""
        except OSError as exc:
            raise WatchlistError(f"{path}: cannot save the watchlist: {exc}") from exc
        finally:
            if tmp_name:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)
        _fsync_directory(directory)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], expect_model_id: str | None = None
    ) -> Watchlist:
        """Read a watchlist file, refusing anything that is not a sound watchlist.

        With ``expect_model_id``, a file holding another model's templates is refused (their
        scores would not be comparable). Every refusal is a :class:`WatchlistError` that names
        the file and the problem.
        """
        path = Path(path)

        def fail(problem: str) -> WatchlistError:
            return WatchlistError(f"{path}: {problem}")

        if not path.exists():
            raise fail("no such watchlist file")
        if not path.is_file():
            raise fail("not a file")
        try:
            with path.open("rb") as handle:
                magic = handle.read(4)
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            if magic.startswith(b"PK"):
                raise fail(f"corrupt or truncated watchlist file ({exc})") from exc
            raise fail("not a watchlist file (not a ZIP archive)") from exc
        except OSError as exc:
            raise fail(f"cannot read the watchlist file: {exc}") from exc
        try:
            with archive:
                names = set(archive.namelist())
                if META_NAME not in names:
                    raise fail(f"not a watchlist file (no {META_NAME} inside)")
                meta_info = archive.getinfo(META_NAME)
                _check_member(meta_info, MAX_META_BYTES, fail)
                with archive.open(meta_info) as member:
                    raw_meta = _read_at_most(member, MAX_META_BYTES + 1)
                if len(raw_meta) > MAX_META_BYTES:
                    raise fail(f"{META_NAME} is larger than {MAX_META_BYTES:,} bytes")
                meta = _parse_header(raw_meta, fail)
                if expect_model_id is not None and meta["model_id"] != expect_model_id:
                    raise fail(
                        f"holds templates of model {meta['model_id']!r}, not the expected "
                        f"{expect_model_id!r}; templates of different models are not comparable"
                    )
                subjects = _subjects(meta, fail)  # before the matrix: its size is checked
                if TEMPLATES_NAME not in names:
                    raise fail(f"corrupt watchlist file: {TEMPLATES_NAME} is missing")
                templates_info = archive.getinfo(TEMPLATES_NAME)
                # the .npy header (at most 64 KiB) and the matrix, nothing more
                _check_member(templates_info, (64 << 10) + meta["count"] * meta["dim"] * 4,
                              fail)
                with archive.open(templates_info) as member:
                    matrix = _read_matrix(member, meta["count"], meta["dim"], fail)
        except WatchlistError:
            raise
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as exc:
            raise fail(f"corrupt watchlist file: {exc}") from exc
        except (NotImplementedError, RuntimeError) as exc:  # a compression method or
            # encryption zipfile does not support: never what openlfr writes
            raise fail(f"not a watchlist file openlfr can read: {exc}") from exc
        return cls._from_parts(meta, subjects, matrix, fail)

    @classmethod
    def _from_parts(cls, meta: dict[str, Any], subjects: list[Subject], matrix: FloatArray,
                    fail: Any) -> Watchlist:
        dim = meta["dim"]
        references = [r for s in subjects for r in s.references]
        if not np.isfinite(matrix).all():
            raise fail("corrupt watchlist file: templates contain NaN or infinite values")
        norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))
        if len(norms) and float(np.abs(norms - 1.0).max()) > _NORM_TOLERANCE:
            raise fail("corrupt watchlist file: templates are not unit length")
        by_id: dict[str, Subject] = {}
        for s in subjects:
            if s.id in by_id:
                raise fail(f"inconsistent watchlist file: subject {s.id!r} appears twice")
            by_id[s.id] = s
        templates = {r.id: matrix[i] for i, r in enumerate(references)}
        if len(templates) != len(references):
            raise fail("inconsistent watchlist file: a reference id appears twice")
        # Checked above, so skip __init__ (which would renormalise every row one by one).
        watchlist = cls.__new__(cls)
        watchlist.model_id = meta["model_id"]
        watchlist.dim = dim
        watchlist.subjects = by_id
        watchlist.templates = templates
        watchlist.created_at = meta["created_at"]
        return watchlist


def _check_member(info: zipfile.ZipInfo, limit: int, fail: Any) -> None:
    """Refuse, before reading it, a member larger than ``limit`` or compressed like a bomb."""
    if info.file_size > limit:
        raise fail(f"corrupt watchlist file: {info.filename} is {info.file_size:,} bytes, "
                   f"more than the {limit:,} it may have")
    if info.file_size > MAX_RATIO * info.compress_size + (64 << 10):
        raise fail(f"corrupt watchlist file: {info.filename} is compressed "
                   f"{info.file_size // max(info.compress_size, 1):,} to 1, more than "
                   f"{MAX_RATIO} to 1 (a zip bomb?)")


def _read_at_most(stream: IO[bytes], limit: int) -> bytes:
    """Up to ``limit`` bytes, inflated 1 MiB at a time: a member whose directory entry
    understates its size is never inflated whole (``read()`` of zipfile would)."""
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = stream.read(min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _subjects(meta: dict[str, Any], fail: Any) -> list[Subject]:
    """The subject records of the header, checked against its template count."""
    try:
        subjects = [Subject.from_dict(s) for s in meta["subjects"]]
    except (TypeError, AttributeError) as exc:
        raise fail(f"corrupt watchlist file: bad subject record ({exc})") from exc
    references = [r for s in subjects for r in s.references]
    if not all(s.id for s in subjects) or not all(r.id for r in references):
        raise fail("corrupt watchlist file: a subject or reference has no id")
    if len(references) != meta["count"]:
        raise fail(
            f"inconsistent watchlist file: {meta['count']} templates but {len(references)} "
            "references"
        )
    return subjects


def _parse_header(raw: bytes, fail: Any) -> dict[str, Any]:
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise fail(f"corrupt watchlist file: {META_NAME} is not valid JSON ({exc})") from exc
    except RecursionError:  # "[[[[…": nested deeper than the parser goes
        raise fail(f"corrupt watchlist file: {META_NAME} is nested too deeply") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise fail(f"not a watchlist file (format {found!r}, expected {FORMAT!r})")
    version = meta.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise fail(f"corrupt watchlist file: format version {version!r} is not an integer")
    if version > VERSION:
        raise fail(
            f"written in watchlist format version {version}, newer than this openlfr reads "
            f"(up to {VERSION}); upgrade openlfr"
        )
    if version < 1:
        raise fail(f"unknown watchlist format version {version}")
    model_id = meta.get("model_id")
    if not isinstance(model_id, str) or not model_id:
        raise fail("corrupt watchlist file: the header has no model_id")

    def header_int(key: str, least: int) -> int:
        value = meta.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise fail(f"corrupt watchlist file: bad {key} {value!r} in the header")
        return value

    dim = header_int("dim", 1)
    header_int("count", 0)
    if dim > MAX_DIM:
        raise fail(f"corrupt watchlist file: templates of {dim} values, more than any face "
                   f"model's ({MAX_DIM})")
    if not isinstance(meta.get("subjects"), list):
        raise fail("corrupt watchlist file: the header has no subject list")
    created = meta.get("created_at", "")
    meta["created_at"] = created if isinstance(created, str) else ""
    return meta


def _read_matrix(stream: IO[bytes], count: int, dim: int, fail: Any) -> FloatArray:
    """The ``(count, dim)`` float32 matrix of an ``.npy`` stream; header checked before data."""
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise fail(f"corrupt watchlist file: unsupported .npy version {version}")
    if dtype != np.dtype("<f4") or fortran:
        raise fail(f"corrupt watchlist file: templates are {dtype}, not little-endian float32")
    if tuple(shape) != (count, dim):
        raise fail(
            f"inconsistent watchlist file: template matrix is {tuple(shape)}, the header says "
            f"({count}, {dim})"
        )
    size = count * dim * 4
    data = _read_at_most(stream, size + 1)
    if len(data) != size:
        raise fail("corrupt watchlist file: the template matrix is truncated or too long")
    return np.frombuffer(data, dtype="<f4").reshape(count, dim)  # read-only


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
