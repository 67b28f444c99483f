"""An in-memory index of face templates for one model, with exact cosine top-k search.

Every stored template is an L2-normalised float32 vector, so a dot product is a cosine
similarity. Search is always exact: below ``faiss_min_size`` templates it runs in NumPy (one
BLAS ``sgemm`` per block of queries x block of templates, then a threshold-and-gather selection
that never sorts a whole score row); at or above it, a FAISS ``IndexFlatIP`` (also exact) is
built lazily and dropped whenever the gallery changes. Both engines return the same candidates,
ordered by score (highest first) and then by insertion order, so ties are deterministic.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Literal, cast, get_args

import numpy as np
import numpy.typing as npt

from openlfr.vision.types import Candidate, FloatArray, Template

Engine = Literal["auto", "numpy", "faiss"]
IntArray = npt.NDArray[np.int64]

#: Queries scored together in one ``sgemm``.
QUERY_CHUNK = 512
#: Scores held at once (query chunk x template block): 8 Mi float32 = 32 MiB, so a full chunk
#: of queries meets templates in blocks of 16,384 and a single query meets them all at once.
SCORE_BUDGET = 1 << 23
#: Templates whose scores give each query its first lower bound on the k-th best score.
SAMPLE_WIDTH = 16_384
#: Candidates one query chunk may accumulate before they are cut back to the top k per query.
_CANDIDATE_LIMIT = 1 << 20
#: A single query against at most this many template floats (16 MiB) is scored with NumPy's
#: own single-threaded loop instead of BLAS: waking BLAS threads costs more than it saves on
#: so little work, and on a busy machine (a camera pipeline) the wake-up can take milliseconds.
_SINGLE_THREAD_MAX = 1 << 22
#: Initial fetch depth, in references per subject, when de-duplicating by subject.
_SUBJECT_FANOUT = 8


def _as_float32_matrix(values: Any, dim: int, what: str) -> FloatArray:
    array = np.asarray(values)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != dim:
        raise ValueError(f"{what} must have shape (n, {dim}) or ({dim},), got {np.shape(values)}")
    if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{what} must be numeric, got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise ValueError(f"{what} contains NaN or infinite values")
    return array


def _normalised(array: FloatArray, what: str) -> FloatArray:
    """Rows scaled to unit L2 norm (in float64 for the norm, stored as float32)."""
    norms = np.sqrt(np.einsum("ij,ij->i", array, array, dtype=np.float64))
    if len(norms) and not (norms > 0).all():
        bad = int(np.flatnonzero(~(norms > 0))[0])
        raise ValueError(f"{what} row {bad} has zero length and cannot be normalised")
    out = (array / norms[:, None]).astype(np.float32, copy=False)
    return np.ascontiguousarray(out)


def _rank_rows(
    rows: IntArray, cols: IntArray, scores: FloatArray, n_rows: int, k: int
) -> tuple[IntArray, IntArray, FloatArray]:
    """The first ``k`` (score desc, col asc) entries of each row, grouped by row in that order."""
    order = np.lexsort((cols, -scores, rows))
    rows, cols, scores = rows[order], cols[order], scores[order]
    counts = np.bincount(rows, minlength=n_rows)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.arange(len(rows)) - np.repeat(starts, counts)
    keep = rank < k
    return rows[keep], cols[keep], scores[keep]


def exact_topk_numpy(
    database: FloatArray,
    queries: FloatArray,
    k: int,
    *,
    query_chunk: int = QUERY_CHUNK,
    score_budget: int = SCORE_BUDGET,
    sample_width: int = SAMPLE_WIDTH,
    candidate_limit: int = _CANDIDATE_LIMIT,
) -> tuple[FloatArray, IntArray]:
    """Exact top-``k`` inner products of each query against ``database``.

    Returns ``(scores, indices)`` of shape ``(n_queries, k)``, each row ordered by score
    (highest first) and then by index (lowest first), so ties resolve to insertion order.
    ``k`` must be between 1 and ``len(database)``.

    The work is done one block of at most ``query_chunk`` queries x (``score_budget`` /
    queries) templates at a time, so memory stays bounded whatever the sizes and few BLAS calls
    are made. For each query chunk the k-th best score among the first ``sample_width``
    templates is a lower bound on the final k-th best; every block then only keeps the (few)
    scores at or above it, gathered with one vectorised compare — no row is ever sorted. If
    candidates pile up (an adversarial order), they are cut back to the top k per query and the
    bounds raised. Ties at the boundary are kept, so the final (score, index) order is exact.
    """
    n, nq = len(database), len(queries)
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and {n}, got {k}")
    out_scores = np.empty((nq, k), dtype=np.float32)
    out_index = np.empty((nq, k), dtype=np.int64)
    if nq == 0:
        return out_scores, out_index
    query_chunk = max(1, min(query_chunk, nq))
    db_block = min(n, max(sample_width, score_budget // query_chunk))
    buffer = np.empty(query_chunk * db_block, dtype=np.float32)
    limit = max(candidate_limit, 4 * k * query_chunk)

    for q0 in range(0, nq, query_chunk):
        chunk = queries[q0 : q0 + query_chunk]
        m = len(chunk)
        threshold = np.full(m, -np.inf, dtype=np.float32)
        parts_r: list[IntArray] = []
        parts_c: list[IntArray] = []
        parts_s: list[FloatArray] = []
        held = 0
        for b0 in range(0, n, db_block):
            width = min(db_block, n - b0)
            block = buffer[: m * width].reshape(m, width)
            if m == 1 and width * database.shape[1] <= _SINGLE_THREAD_MAX:
                np.einsum("ij,j->i", database[b0 : b0 + width], chunk[0], out=block[0])
            else:
                np.matmul(chunk, database[b0 : b0 + width].T, out=block)
            if b0 == 0 and width >= k:
                sample = block[:, : max(k, min(width, sample_width))]
                cut = sample.shape[1] - k
                threshold = np.partition(sample, cut, axis=1)[:, cut].copy()
            flat = np.flatnonzero(block >= threshold[:, None])
            rows = flat // width
            parts_r.append(rows)
            parts_c.append(flat - rows * width + b0)
            parts_s.append(block.ravel()[flat])
            held += len(flat)
            if held > limit:
                r, c, s = _rank_rows(
                    np.concatenate(parts_r), np.concatenate(parts_c), np.concatenate(parts_s),
                    m, k,
                )
                full = np.bincount(r, minlength=m) >= k
                last = np.searchsorted(r, np.arange(m), side="right") - 1
                threshold = np.where(full, s[last], threshold).astype(np.float32)
                parts_r, parts_c, parts_s, held = [r], [c], [s], len(r)
        r, c, s = _rank_rows(
            np.concatenate(parts_r), np.concatenate(parts_c), np.concatenate(parts_s), m, k
        )
        # Every row holds at least k candidates: the first block (or the whole database) gave
        # them, and cutting back never drops below k.
        out_scores[q0 : q0 + m] = s.reshape(m, k)
        out_index[q0 : q0 + m] = c.reshape(m, k)
    return out_scores, out_index


class Gallery:
    """Templates of one model, searchable by exact cosine similarity.

    ``engine`` chooses the search backend: ``"auto"`` (NumPy below ``faiss_min_size``
    templates, FAISS ``IndexFlatIP`` at or above it), or ``"numpy"`` / ``"faiss"`` to force one.
    Both are exact and give the same answers. The gallery is safe to search from several threads
    while another adds or removes templates: a search works on a snapshot.
    """

    def __init__(
        self,
        model_id: str,
        dim: int,
        faiss_min_size: int = 20_000,
        engine: Engine = "auto",
    ) -> None:
        if not model_id:
            raise ValueError("a gallery needs a model_id")
        if int(dim) <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self._model_id = model_id
        self._dim = int(dim)
        self.faiss_min_size = int(faiss_min_size)
        self._engine: Engine = "auto"
        self.engine = engine
        self._lock = threading.RLock()
        self._buffer = np.empty((0, self._dim), dtype=np.float32)
        self._size = 0
        self._codes = np.empty(0, dtype=np.int64)  # subject code per template
        self._subject_ids: list[str] = []  # per template
        self._reference_ids: list[str] = []  # per template
        self._reference_set: set[str] = set()
        self._code_of: dict[str, int] = {}  # subject id -> code (codes are never reused)
        self._name_of: dict[int, str] = {}
        self._count_of: dict[str, int] = {}  # subject id -> templates held
        self._max_refs: int | None = 0  # largest count in _count_of (None: to recompute)
        self._faiss_index: Any = None

    # -- description -------------------------------------------------------------------------

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def engine(self) -> Engine:
        return self._engine

    @engine.setter
    def engine(self, value: Engine) -> None:
        if value not in get_args(Engine):
            raise ValueError(f"engine must be one of {get_args(Engine)}, got {value!r}")
        self._engine = value

    @property
    def backend(self) -> Literal["numpy", "faiss"]:
        """The engine the next search will use, given the size and the ``engine`` setting."""
        return self._backend_for(self._engine, self._size)

    def _backend_for(self, engine: Engine, size: int) -> Literal["numpy", "faiss"]:
        if engine == "auto":
            return "faiss" if size >= self.faiss_min_size else "numpy"
        return engine

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return (
            f"Gallery(model_id={self._model_id!r}, dim={self._dim}, templates={self._size}, "
            f"subjects={len(self._count_of)}, backend={self.backend!r})"
        )

    def subjects(self) -> set[str]:
        return set(self._count_of)

    def __contains__(self, subject_id: object) -> bool:
        return subject_id in self._count_of

    @property
    def vectors(self) -> FloatArray:
        """The ``(len, dim)`` template matrix in insertion order (a read-only view)."""
        view = self._buffer[: self._size]
        view.flags.writeable = False
        return view

    @property
    def reference_ids(self) -> tuple[str, ...]:
        """Reference id of each template, in the same order as ``vectors``."""
        return tuple(self._reference_ids)

    @property
    def subject_ids(self) -> tuple[str, ...]:
        """Subject id of each template, in the same order as ``vectors``."""
        return tuple(self._subject_ids)

    # -- changes -----------------------------------------------------------------------------

    def _check_model(self, value: Any) -> Any:
        if isinstance(value, Template):
            if value.model_id != self._model_id:
                raise ValueError(
                    f"template from model {value.model_id!r} cannot join a gallery of "
                    f"{self._model_id!r}"
                )
            return value.vector
        return value

    def add(self, subject_id: str, reference_id: str, vector: FloatArray | Template) -> None:
        """Add one template (renormalised). Refuses a wrong shape, NaN/inf or a reused id."""
        self.add_many([subject_id], [reference_id], self._check_model(vector))

    def add_many(
        self,
        subject_ids: Sequence[str],
        reference_ids: Sequence[str],
        vectors: FloatArray | Sequence[Template],
    ) -> None:
        """Add several templates at once; either all of them are added or none is."""
        if len(vectors) == len(subject_ids) == len(reference_ids) == 0:
            return
        if len(vectors) and isinstance(vectors[0], Template):
            vectors = np.stack([self._check_model(t) for t in cast(Sequence[Template], vectors)])
        matrix = _normalised(_as_float32_matrix(vectors, self._dim, "vectors"), "vectors")
        subject_ids, reference_ids = list(subject_ids), list(reference_ids)
        if not len(subject_ids) == len(reference_ids) == len(matrix):
            raise ValueError(
                f"{len(subject_ids)} subject ids, {len(reference_ids)} reference ids and "
                f"{len(matrix)} vectors: they must match one to one"
            )
        for name, ids in (("subject", subject_ids), ("reference", reference_ids)):
            for value in ids:
                if not isinstance(value, str) or not value:
                    raise ValueError(f"{name} ids must be non-empty strings, got {value!r}")
        with self._lock:
            clash = self._reference_set.intersection(reference_ids)
            if clash or len(set(reference_ids)) != len(reference_ids):
                dup = sorted(clash) or [r for r in reference_ids if reference_ids.count(r) > 1]
                raise ValueError(f"reference id {dup[0]!r} is already in the gallery")
            new_size = self._size + len(matrix)
            if new_size > len(self._buffer):
                capacity = max(new_size, 2 * len(self._buffer), 1024)
                grown = np.empty((capacity, self._dim), dtype=np.float32)
                grown[: self._size] = self._buffer[: self._size]
                self._buffer = grown
                codes = np.empty(capacity, dtype=np.int64)
                codes[: self._size] = self._codes[: self._size]
                self._codes = codes
            # Rows beyond the current size are invisible to searches already running.
            self._buffer[self._size : new_size] = matrix
            for i, sid in enumerate(subject_ids):
                code = self._code_of.get(sid)
                if code is None:
                    code = self._code_of[sid] = len(self._name_of)
                    self._name_of[code] = sid
                self._codes[self._size + i] = code
                count = self._count_of[sid] = self._count_of.get(sid, 0) + 1
                if self._max_refs is not None and count > self._max_refs:
                    self._max_refs = count
            self._subject_ids.extend(subject_ids)
            self._reference_ids.extend(reference_ids)
            self._reference_set.update(reference_ids)
            self._size = new_size
            self._faiss_index = None

    def _keep_only(self, keep: npt.NDArray[np.bool_]) -> None:
        """Compact to the templates where ``keep`` is true (fresh arrays: snapshots stay valid)."""
        size = int(keep.sum())
        buffer = np.empty((max(size, 1024), self._dim), dtype=np.float32)
        buffer[:size] = self._buffer[: self._size][keep]
        codes = np.empty(len(buffer), dtype=np.int64)
        codes[:size] = self._codes[: self._size][keep]
        kept = np.flatnonzero(keep).tolist()
        gone = set(self._reference_ids) - {self._reference_ids[i] for i in kept}
        self._subject_ids = [self._subject_ids[i] for i in kept]
        self._reference_ids = [self._reference_ids[i] for i in kept]
        self._reference_set -= gone
        self._buffer, self._codes, self._size = buffer, codes, size
        self._faiss_index = None
        self._max_refs = None

    def clear(self) -> int:
        """Forget every template, overwriting the memory that held them (a gallery that is
        replaced, e.g. after a removal, leaves nothing behind); returns how many there were."""
        with self._lock:
            count = self._size
            self._buffer.fill(0.0)
            self._count_of.clear()
            self._code_of.clear()
            self._keep_only(np.zeros(self._size, dtype=bool))
            return count

    def remove_subject(self, subject_id: str) -> int:
        """Remove every template of a subject; returns how many were removed (0 if unknown)."""
        with self._lock:
            count = self._count_of.pop(subject_id, 0)
            if count:
                code = self._code_of.pop(subject_id)
                self._keep_only(self._codes[: self._size] != code)
            return count

    def remove_reference(self, reference_id: str) -> bool:
        """Remove one template by its reference id; returns whether it was there."""
        with self._lock:
            if reference_id not in self._reference_set:
                return False
            position = self._reference_ids.index(reference_id)
            subject_id = self._subject_ids[position]
            keep = np.ones(self._size, dtype=bool)
            keep[position] = False
            self._keep_only(keep)
            self._count_of[subject_id] -= 1
            if not self._count_of[subject_id]:
                del self._count_of[subject_id]
                del self._code_of[subject_id]
            return True

    # -- search ------------------------------------------------------------------------------

    def _faiss(self) -> Any:
        with self._lock:
            if self._faiss_index is None:
                import faiss  # imported lazily: it is only needed for large galleries

                index = faiss.IndexFlatIP(self._dim)
                if self._size:
                    index.add(self._buffer[: self._size])
                self._faiss_index = index
            return self._faiss_index

    def _prepare_queries(self, queries: Any) -> FloatArray:
        if isinstance(queries, Template):
            queries = self._check_model(queries)
        elif isinstance(queries, Sequence) and queries and isinstance(queries[0], Template):
            queries = np.stack([self._check_model(t) for t in queries])
        matrix = _as_float32_matrix(queries, self._dim, "queries")
        return _normalised(matrix, "queries")

    def search(
        self,
        queries: FloatArray | Template | Sequence[Template],
        k: int = 5,
        per_subject: bool = True,
        engine: Engine | None = None,
    ) -> list[list[Candidate]]:
        """Exact cosine top-``k`` for each query (a ``(n, dim)`` array or one ``(dim,)`` vector).

        Returns one list per query, best first (score descending, then insertion order). With
        ``per_subject`` a subject appears at most once per list, through its best reference,
        and ``k`` counts subjects; otherwise ``k`` counts templates. Lists are shorter than
        ``k`` only when the gallery holds fewer subjects (or templates). Queries are
        renormalised, so scores are cosine similarities.
        """
        if int(k) < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        k = int(k)
        if engine is not None and engine not in get_args(Engine):
            raise ValueError(f"engine must be one of {get_args(Engine)}, got {engine!r}")
        matrix = self._prepare_queries(queries)
        with self._lock:
            size = self._size
            database = self._buffer[:size]
            codes = self._codes[:size]
            subject_ids = self._subject_ids
            reference_ids = self._reference_ids
            if self._max_refs is None:
                self._max_refs = max(self._count_of.values(), default=0)
            max_refs = self._max_refs
            n_subjects = len(self._count_of)
            backend = self._backend_for(self._engine if engine is None else engine, size)
            index = self._faiss() if backend == "faiss" and size else None
        nq = len(matrix)
        if size == 0:
            return [[] for _ in range(nq)]

        def topk(rows: IntArray, depth: int) -> tuple[FloatArray, IntArray]:
            if index is not None:
                return _topk_faiss(index, database, matrix[rows], depth)
            return exact_topk_numpy(database, matrix[rows], depth)

        everyone = np.arange(nq)
        if not per_subject:
            scores, found = topk(everyone, min(k, size))
            return [
                [
                    Candidate(subject_ids[j], float(s), reference_ids[j])
                    for s, j in zip(srow.tolist(), jrow.tolist(), strict=True)
                ]
                for srow, jrow in zip(scores, found, strict=True)
            ]

        want = min(k, n_subjects)
        depth = min(size, k * min(max_refs, _SUBJECT_FANOUT))
        results: list[list[Candidate]] = [[] for _ in range(nq)]
        pending = everyone
        while len(pending):
            scores, found = topk(pending, depth)
            keep = _first_per_subject(codes[found], want)
            short = keep.sum(axis=1) < want
            done = ~short if depth < size else np.ones(len(pending), dtype=bool)
            for row in np.flatnonzero(done).tolist():
                cols = np.flatnonzero(keep[row])
                results[int(pending[row])] = [
                    Candidate(subject_ids[j], float(s), reference_ids[j])
                    for s, j in zip(scores[row, cols].tolist(), found[row, cols].tolist(),
                                    strict=True)
                ]
            pending = pending[~done]
            depth = min(size, depth * 4)
        return results

    def search_one(
        self, query: FloatArray | Template, k: int = 5, per_subject: bool = True
    ) -> list[Candidate]:
        """``search`` for a single query vector."""
        return self.search(query, k=k, per_subject=per_subject)[0]


def _first_per_subject(codes: IntArray, want: int) -> npt.NDArray[np.bool_]:
    """Mask of the first occurrence of each subject in each row, limited to ``want`` per row."""
    order = np.argsort(codes, axis=1, kind="stable")
    ordered = np.take_along_axis(codes, order, axis=1)
    first_sorted = np.ones_like(ordered, dtype=bool)
    first_sorted[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    first = np.empty_like(first_sorted)
    np.put_along_axis(first, order, first_sorted, axis=1)
    return first & (np.cumsum(first, axis=1) <= want)


def _topk_faiss(
    index: Any, database: FloatArray, queries: FloatArray, k: int
) -> tuple[FloatArray, IntArray]:
    """Top-k from a FAISS flat index, in the same (score desc, index asc) order as NumPy.

    FAISS breaks ties its own way, so one extra result is fetched: if it ties with the k-th,
    the cut is ambiguous and that query is recomputed exactly in NumPy (rare: needs equal
    scores at the boundary, e.g. duplicated templates).
    """
    n = len(database)
    fetch = min(n, k + 1)
    scores, found = index.search(np.ascontiguousarray(queries), fetch)
    found = found.astype(np.int64, copy=False)
    ambiguous = np.zeros(len(queries), dtype=bool)
    if fetch > k:
        ambiguous = scores[:, k - 1] == scores[:, k]
        scores, found = scores[:, :k], found[:, :k]
    order = np.lexsort((found, -scores), axis=-1) if len(found) else np.empty((0, k), np.int64)
    scores = np.take_along_axis(scores, order, axis=1)
    found = np.take_along_axis(found, order, axis=1)
    if ambiguous.any():
        rows = np.flatnonzero(ambiguous)
        exact_s, exact_i = exact_topk_numpy(database, queries[rows], k)
        scores[rows], found[rows] = exact_s, exact_i
    return scores, found
