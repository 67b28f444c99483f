"""Gallery: exact cosine top-k in NumPy and FAISS, per-subject results, changes, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from openlfr.vision.types import Template
from openlfr.watchlist import Gallery
from openlfr.watchlist.gallery import exact_topk_numpy


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def as_tuples(results):
    return [[(c.subject_id, c.reference_id) for c in row] for row in results]


def scores(results):
    return [[c.score for c in row] for row in results]


@pytest.fixture(scope="module")
def big():
    """5,000 random templates of 128-d over 1,700 subjects (1 to 5 references each)."""
    rng = np.random.default_rng(7)
    vectors = unit(rng, 5000, 128)
    subjects = [f"s{i}" for i in np.sort(rng.integers(0, 1700, size=5000))]
    refs = [f"r{i}" for i in range(5000)]
    queries = unit(rng, 300, 128)
    # Some probes close to stored templates, as a real probe of an enrolled person would be.
    near = vectors[:100] + 0.3 * unit(rng, 100, 128)
    queries[:100] = near / np.linalg.norm(near, axis=1, keepdims=True)
    return vectors, subjects, refs, queries


def make(big, **kw) -> Gallery:
    vectors, subjects, refs, _ = big
    g = Gallery("model-a", 128, **kw)
    g.add_many(subjects, refs, vectors)
    return g


@pytest.mark.parametrize("per_subject", [False, True])
@pytest.mark.parametrize("k", [1, 5, 20])
def test_numpy_and_faiss_return_the_same_top_k(big, per_subject, k):
    g = make(big)
    queries = big[3]
    by_numpy = g.search(queries, k=k, per_subject=per_subject, engine="numpy")
    by_faiss = g.search(queries, k=k, per_subject=per_subject, engine="faiss")
    assert as_tuples(by_numpy) == as_tuples(by_faiss)
    np.testing.assert_allclose(scores(by_numpy), scores(by_faiss), atol=1e-5)
    assert all(len(row) == k for row in by_numpy)


def test_numpy_search_is_the_brute_force_answer(big):
    vectors, subjects, refs, queries = big
    g = make(big, engine="numpy")
    got = g.search(queries, k=8, per_subject=False)
    order = np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :8]
    assert as_tuples(got) == [[(subjects[j], refs[j]) for j in row] for row in order]
    best = max(float(queries[0] @ v) for v in vectors)
    assert got[0][0].score == pytest.approx(best, abs=1e-5)


@pytest.mark.parametrize("options", [
    {"score_budget": 64 * 40, "query_chunk": 40, "sample_width": 64},  # many blocks
    {"score_budget": 1, "sample_width": 16, "candidate_limit": 10, "query_chunk": 7},  # cut back
])
def test_blocked_kernel_matches_brute_force(big, options):
    vectors, _, _, queries = big
    s, i = exact_topk_numpy(vectors[:3000], queries, 10, **options)
    full = queries @ vectors[:3000].T
    want = np.argsort(-full, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(i, want)
    np.testing.assert_allclose(s, np.take_along_axis(full, want, axis=1), atol=1e-5)


def test_kernel_survives_an_adversarial_order():
    # Templates sorted worst-first: the first block gives a useless bound, so candidates pile
    # up and must be cut back repeatedly; the answer must not change.
    rng = np.random.default_rng(3)
    x = unit(rng, 20000, 16)
    q = x[:2]
    x = x[np.argsort(x @ q[0])]
    full = q @ x.T
    _, i = exact_topk_numpy(x, q, 10, sample_width=100, score_budget=100, candidate_limit=500)
    np.testing.assert_array_equal(i, np.argsort(-full, axis=1, kind="stable")[:, :10])


@pytest.mark.parametrize("engine", ["numpy", "faiss"])
def test_per_subject_lists_each_subject_once_through_its_best_reference(engine):
    rng = np.random.default_rng(1)
    probe = unit(rng, 1, 64)[0]
    noise = unit(rng, 40, 64)
    noise -= np.outer(noise @ probe, probe)  # orthogonal to the probe: the cosine with
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)  # probe + a*noise is 1/sqrt(1+a²)
    g = Gallery("m", 64, engine=engine)
    # "alice" has 30 references all closer to the probe than anyone else: the search must dig
    # past them (deeper than its first fetch) to find k distinct subjects.
    for j in range(30):
        g.add("alice", f"alice/{j}", probe + (0.05 + 0.001 * j) * noise[j])
    g.add("bob", "bob/0", probe + 0.5 * noise[30])
    g.add("carol", "carol/0", probe + 0.7 * noise[31])
    g.add("dave", "dave/0", probe + 0.9 * noise[32])
    g.add("bob", "bob/1", probe + 0.45 * noise[33])

    top = g.search(probe, k=3)[0]
    assert [c.subject_id for c in top] == ["alice", "bob", "carol"]
    assert top[0].reference_id == "alice/0"
    assert top[1].reference_id == "bob/1"  # bob's better reference, though added later
    assert top[0].score > top[1].score > top[2].score

    every = g.search(probe, k=10)[0]
    assert [c.subject_id for c in every] == ["alice", "bob", "carol", "dave"]  # fewer than k

    raw = g.search(probe, k=5, per_subject=False)[0]
    assert [c.subject_id for c in raw] == ["alice"] * 5
    assert [c.reference_id for c in raw] == [f"alice/{j}" for j in range(5)]


@pytest.mark.parametrize("engine", ["numpy", "faiss"])
def test_remove_subject_then_search(big, engine):
    vectors, subjects, refs, queries = big
    g = make(big, engine=engine)
    first = g.search(vectors[10], k=1)[0][0]
    assert (first.subject_id, first.reference_id) == (subjects[10], refs[10])
    held = subjects.count(subjects[10])

    assert g.remove_subject(subjects[10]) == held
    assert g.remove_subject(subjects[10]) == 0
    assert g.remove_subject("nobody") == 0
    assert len(g) == 5000 - held
    assert subjects[10] not in g.subjects()
    assert refs[10] not in g.reference_ids
    after = g.search(queries, k=20, per_subject=False)
    assert all(c.subject_id != subjects[10] for row in after for c in row)

    # The rest is still searched exactly (and in the same order as before the removal).
    keep = [i for i, s in enumerate(subjects) if s != subjects[10]]
    order = np.argsort(-(queries @ vectors[keep].T), axis=1, kind="stable")[:, :20]
    assert as_tuples(after) == [[(subjects[keep[j]], refs[keep[j]]) for j in row]
                                for row in order]


@pytest.mark.parametrize("engine", ["numpy", "faiss"])
def test_added_templates_are_found_at_once(big, engine):
    g = make(big, engine=engine)
    probe = big[3][200]
    assert g.search(probe, k=1)[0][0].subject_id != "newcomer"  # builds the FAISS index
    g.add("newcomer", "newcomer/0", probe * 3.0)  # not unit length: renormalised
    hit = g.search(probe, k=1)[0][0]
    assert (hit.subject_id, hit.reference_id) == ("newcomer", "newcomer/0")
    assert hit.score == pytest.approx(1.0, abs=1e-5)
    assert g.remove_reference("newcomer/0") is True
    assert g.remove_reference("newcomer/0") is False
    assert "newcomer" not in g.subjects()
    assert g.search(probe, k=1)[0][0].subject_id != "newcomer"


def test_auto_engine_switches_at_the_size_threshold():
    rng = np.random.default_rng(5)
    x = unit(rng, 101, 32)
    g = Gallery("m", 32, faiss_min_size=100)
    ids = [f"id{i}" for i in range(101)]
    g.add_many(ids[:99], ids[:99], x[:99])
    assert g.backend == "numpy"
    assert as_tuples(g.search(x, k=5)) == as_tuples(g.search(x, k=5, engine="faiss"))
    g.add(ids[99], ids[99], x[99])
    assert len(g) == 100 and g.backend == "faiss"
    auto = g.search(x, k=5)
    forced = g.search(x, k=5, engine="numpy")
    assert as_tuples(auto) == as_tuples(forced)
    np.testing.assert_allclose(scores(auto), scores(forced), atol=1e-5)
    g.remove_subject(ids[0])
    assert g.backend == "numpy"
    g.engine = "faiss"
    assert g.backend == "faiss"
    g.engine = "numpy"
    g.add(ids[100], ids[100], x[100])
    assert g.backend == "numpy"
    with pytest.raises(ValueError, match="engine"):
        g.engine = "gpu"  # type: ignore[assignment]
    with pytest.raises(ValueError, match="engine"):
        Gallery("m", 32, engine="annoy")  # type: ignore[arg-type]


@pytest.mark.parametrize("engine", ["numpy", "faiss"])
def test_ties_follow_insertion_order(engine):
    # Vectors with four entries of 0.5: every dot product is an exact multiple of 0.25, so the
    # ties are exact whatever order the BLAS sums in.
    dim = 16

    def v(*positions: int) -> np.ndarray:
        out = np.zeros(dim, dtype=np.float32)
        out[list(positions)] = 0.5
        return out

    g = Gallery("m", dim, engine=engine)
    g.add("z-first", "z/0", v(0, 1, 2, 3))
    g.add("a-second", "a/0", v(0, 1, 2, 4))
    g.add("m-third", "m/0", v(0, 1, 2, 5))
    g.add("b-fourth", "b/0", v(0, 1, 2, 6))
    g.add("z-first", "z/1", v(0, 1, 2, 7))
    g.add("c-far", "c/0", v(8, 9, 10, 11))
    pairs = [(p, q) for p in range(8, 15) for q in range(p + 1, 15)]
    for i, (p, q) in enumerate(pairs):  # exact ties (0.5) below the top group
        g.add(f"filler{i}", f"f/{i}", v(0, 1, p, q))
    probe = v(0, 1, 2, 15)

    runs = [g.search(probe, k=3) for _ in range(3)]
    assert all(r == runs[0] for r in runs)
    assert [c.subject_id for c in runs[0][0]] == ["z-first", "a-second", "m-third"]
    assert {c.score for c in runs[0][0]} == {0.75}
    raw = g.search(probe, k=5, per_subject=False)[0]
    assert [c.reference_id for c in raw] == ["z/0", "a/0", "m/0", "b/0", "z/1"]
    assert [c.reference_id for c in g.search(probe, k=4, per_subject=False)[0]] == [
        "z/0", "a/0", "m/0", "b/0"]


def test_both_engines_break_ties_alike():
    rng = np.random.default_rng(11)
    base = unit(rng, 50, 24)
    vectors = np.repeat(base, 4, axis=0)  # every template four times, under four subjects
    g = Gallery("m", 24)
    g.add_many([f"s{i % 7}" for i in range(200)], [f"r{i}" for i in range(200)], vectors)
    for per_subject in (False, True):
        for k in (1, 2, 3, 6):
            a = g.search(base, k=k, per_subject=per_subject, engine="numpy")
            b = g.search(base, k=k, per_subject=per_subject, engine="faiss")
            assert as_tuples(a) == as_tuples(b)


def test_refuses_bad_templates_and_stays_unchanged():
    g = Gallery("model-a", 8)
    with pytest.raises(ValueError, match="shape"):
        g.add("s", "r", np.ones(7))
    with pytest.raises(ValueError, match="NaN"):
        g.add("s", "r", np.array([1, 2, 3, 4, 5, 6, 7, np.nan]))
    with pytest.raises(ValueError, match="NaN"):
        g.add("s", "r", np.array([1, 2, 3, 4, 5, 6, 7, np.inf]))
    with pytest.raises(ValueError, match="zero"):
        g.add("s", "r", np.zeros(8))
    with pytest.raises(ValueError, match="model"):
        g.add("s", "r", Template(np.ones(8, dtype=np.float32), "model-b"))
    with pytest.raises(ValueError, match="match"):
        g.add_many(["a", "b"], ["r1"], np.ones((2, 8)))
    with pytest.raises(ValueError, match="non-empty"):
        g.add("", "r", np.ones(8))
    # One bad row in a batch: nothing of the batch is added.
    rows = np.ones((3, 8))
    rows[2, 0] = np.nan
    with pytest.raises(ValueError):
        g.add_many(["a", "b", "c"], ["r1", "r2", "r3"], rows)
    assert len(g) == 0 and g.subjects() == set()

    g.add("s", "r", Template(np.full(8, 2.0, dtype=np.float32), "model-a"))
    with pytest.raises(ValueError, match="already"):
        g.add("t", "r", np.ones(8))
    with pytest.raises(ValueError, match="already"):
        g.add_many(["t", "t"], ["x", "x"], np.ones((2, 8)))
    assert len(g) == 1
    np.testing.assert_allclose(np.linalg.norm(g.vectors, axis=1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError):
        g.vectors[0, 0] = 5.0  # a read-only view
    assert g.reference_ids == ("r",) and g.subject_ids == ("s",)


def test_search_shapes_and_arguments():
    rng = np.random.default_rng(2)
    x = unit(rng, 10, 16)
    empty = Gallery("m", 16)
    assert empty.search(x[0]) == [[]]
    assert empty.search(x[:3]) == [[], [], []]

    g = Gallery("m", 16)
    g.add_many([f"s{i}" for i in range(10)], [f"r{i}" for i in range(10)], x)
    one = g.search(x[4], k=3)
    assert len(one) == 1 and one[0][0].subject_id == "s4"
    assert g.search_one(x[4], k=3) == one[0]
    assert [len(r) for r in g.search(x[:4], k=50)] == [10, 10, 10, 10]
    assert g.search(np.empty((0, 16), dtype=np.float32)) == []
    with pytest.raises(ValueError, match="k must"):
        g.search(x[0], k=0)
    with pytest.raises(ValueError, match="shape"):
        g.search(np.ones(15))
    with pytest.raises(ValueError, match="NaN"):
        g.search(np.full(16, np.nan))
    with pytest.raises(ValueError, match="model"):
        g.search(Template(x[0], "other"))
    assert g.search([Template(x[1], "m"), Template(x[2], "m")], k=1)[1][0].subject_id == "s2"
    assert "Gallery(model_id='m'" in repr(g)


def test_searching_while_the_gallery_changes():
    import threading

    rng = np.random.default_rng(9)
    x = unit(rng, 3000, 32)
    g = Gallery("m", 32, faiss_min_size=1500)
    g.add_many([f"s{i}" for i in range(1000)], [f"r{i}" for i in range(1000)], x[:1000])
    errors: list[BaseException] = []
    stop = threading.Event()

    def searcher() -> None:
        try:
            while not stop.is_set():
                for row in g.search(x[:16], k=3):
                    assert len(row) == 3
                    assert all(c.reference_id == "r" + c.subject_id[1:] for c in row)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(1000, 3000, 100):  # grows past faiss_min_size, and shrinks again
        g.add_many([f"s{j}" for j in range(i, i + 100)], [f"r{j}" for j in range(i, i + 100)],
                   x[i : i + 100])
        g.remove_subject(f"s{i - 500}")
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert len(g) == 3000 - 20


def test_clear_overwrites_the_templates_and_empties_the_gallery():
    """A gallery replaced during a live run (a subject removed) leaves nothing behind."""
    rng = np.random.default_rng(3)
    g = Gallery("m", 8)
    g.add_many(["a", "b"], ["1", "2"], rng.normal(size=(2, 8)).astype(np.float32))
    held = g._buffer  # the memory the templates were in
    assert g.clear() == 2
    assert len(g) == 0 and g.subjects() == set() and "a" not in g
    assert not held.any()
    assert g.search(rng.normal(size=(1, 8)).astype(np.float32), k=3) == [[]]
    g.add("c", "3", rng.normal(size=8).astype(np.float32))  # still usable afterwards
    assert g.subjects() == {"c"}
