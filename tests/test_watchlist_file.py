"""The watchlist file: round trip, atomic saves, and clear refusals of anything unsound."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from openlfr.errors import InvalidInput
from openlfr.vision.types import Template
from openlfr.watchlist import Gallery, Reference, Subject, Watchlist, WatchlistError
from openlfr.watchlist.store import FORMAT, META_NAME, TEMPLATES_NAME, VERSION

DIM = 32


def make_watchlist(model_id: str = "sface-test", subjects: int = 4, refs: int = 3) -> Watchlist:
    rng = np.random.default_rng(0)
    wl = Watchlist(model_id=model_id, dim=DIM)
    for s in range(subjects):
        sid = f"person-{s}"
        wl.add_subject(sid, f"Person Nº{s} — Zoë", {"case": f"C-{s}", "unit": "north"})
        for r in range(refs):
            ref = Reference(
                id=f"{sid}/{r}",
                source=f"/photos/{sid}/{r}.jpg",
                image_sha256=f"{s:02d}{r:02d}" + "ab" * 30,
                added_at="2025-01-02T03:04:05+00:00",
                quality={"face_width": 120.5, "ok": True, "reasons": []},
            )
            wl.add_reference(sid, ref, rng.standard_normal(DIM))
    return wl


def rewrite(path: Path, meta_edit=None, templates: bytes | None = None) -> None:
    """Rewrite a saved watchlist with its meta.json edited and/or its templates replaced."""
    with zipfile.ZipFile(path) as archive:
        meta = json.loads(archive.read(META_NAME))
        npy = archive.read(TEMPLATES_NAME)
    if meta_edit is not None:
        meta_edit(meta)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(META_NAME, json.dumps(meta))
        archive.writestr(TEMPLATES_NAME, npy if templates is None else templates)


def npy_bytes(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


@pytest.fixture()
def saved(tmp_path: Path) -> tuple[Watchlist, Path]:
    wl = make_watchlist()
    path = tmp_path / "list.watchlist"
    wl.save(path)
    return wl, path


def test_round_trip_is_equal(saved):
    wl, path = saved
    back = Watchlist.load(path)
    assert back == wl
    assert back.model_id == "sface-test" and back.dim == DIM
    assert len(back) == 12 and back.subject_count == 4
    assert list(back.subjects) == list(wl.subjects)  # order kept
    assert back.subjects["person-1"].display_name == "Person Nº1 — Zoë"
    assert back.subjects["person-1"].metadata == {"case": "C-1", "unit": "north"}
    ref = back.subjects["person-2"].references[1]
    assert ref == wl.subjects["person-2"].references[1]
    assert ref.quality == {"face_width": 120.5, "ok": True, "reasons": []}
    for rid, vector in wl.templates.items():
        assert back.template(rid).dtype == np.float32
        np.testing.assert_array_equal(back.template(rid), vector)  # bit for bit
    assert Watchlist.load(path, expect_model_id="sface-test") == wl

    probes = np.stack([wl.template("person-3/0"), wl.template("person-0/2")])
    assert back.gallery().search(probes, k=3) == wl.gallery().search(probes, k=3)
    assert back.gallery().search(probes[0], k=1)[0][0].reference_id == "person-3/0"


def test_the_file_is_a_plain_zip_of_json_and_npy(saved):
    wl, path = saved
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == [META_NAME, TEMPLATES_NAME]
        assert archive.getinfo(TEMPLATES_NAME).compress_type == zipfile.ZIP_STORED
        meta = json.loads(archive.read(META_NAME))
        matrix = np.load(io.BytesIO(archive.read(TEMPLATES_NAME)), allow_pickle=False)
    assert (meta["format"], meta["version"]) == (FORMAT, VERSION)
    assert isinstance(meta["version"], int)
    assert (meta["model_id"], meta["dim"], meta["count"]) == ("sface-test", DIM, 12)
    assert matrix.dtype == np.dtype("<f4") and matrix.shape == (12, DIM)
    np.testing.assert_array_equal(matrix, wl.matrix())


def test_empty_watchlist_round_trip(tmp_path):
    wl = Watchlist(model_id="m", dim=8)
    wl.add_subject("nobody-yet")
    wl.save(tmp_path / "empty.watchlist")
    back = Watchlist.load(tmp_path / "empty.watchlist")
    assert back == wl and len(back) == 0 and back.subject_count == 1
    assert len(back.gallery()) == 0


def test_loading_never_unpickles(saved, monkeypatch):
    _, path = saved

    def refuse(*args, **kwargs):
        raise AssertionError("pickle must never be used to read a watchlist")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    assert len(Watchlist.load(path)) == 12
    # A pickled object array where the templates belong is refused, not unpickled.
    rewrite(path, templates=npy_bytes(np.array([{"evil": 1}] * 12, dtype=object),
                                      allow_pickle=True))
    with pytest.raises(WatchlistError, match="float32"):
        Watchlist.load(path)


def test_failed_save_leaves_the_old_file_intact(saved, monkeypatch):
    wl, path = saved
    before = path.read_bytes()
    wl.add_subject("new-person")
    wl.add_reference("new-person", Reference("new-person/0"), np.ones(DIM))

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(WatchlistError, match=r"list\.watchlist.*No space left"):
        wl.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["list.watchlist"]  # no temp left
    monkeypatch.undo()

    def exploding_write(*args, **kwargs):
        raise RuntimeError("power cut")

    monkeypatch.setattr(np.lib.format, "write_array", exploding_write)
    with pytest.raises(RuntimeError, match="power cut"):
        wl.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["list.watchlist"]
    monkeypatch.undo()

    wl.save(path)  # and a working save replaces it
    assert Watchlist.load(path).subject_count == 5


def test_refuses_a_missing_file(tmp_path):
    missing = tmp_path / "nope.watchlist"
    with pytest.raises(WatchlistError, match="no such watchlist file") as err:
        Watchlist.load(missing)
    assert str(missing) in str(err.value)
    with pytest.raises(WatchlistError, match="not a file"):
        Watchlist.load(tmp_path)


def test_refuses_another_models_file(saved):
    _, path = saved
    with pytest.raises(WatchlistError) as err:
        Watchlist.load(path, expect_model_id="dlib-resnet-v1")
    message = str(err.value)
    assert str(path) in message and "'sface-test'" in message and "'dlib-resnet-v1'" in message
    assert isinstance(err.value, InvalidInput)  # the user's file: exit 2, a 400


def test_refuses_a_text_file(tmp_path):
    text = tmp_path / "notes.watchlist"
    text.write_text("hello, this is not a watchlist\n")
    with pytest.raises(WatchlistError, match="not a watchlist file") as err:
        Watchlist.load(text)
    assert str(text) in str(err.value)
    empty = tmp_path / "empty.watchlist"
    empty.write_bytes(b"")
    with pytest.raises(WatchlistError, match="not a watchlist file"):
        Watchlist.load(empty)


def test_refuses_other_zip_files(tmp_path):
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("readme.txt", "hi")
    with pytest.raises(WatchlistError, match="not a watchlist file"):
        Watchlist.load(other)
    npz = tmp_path / "arrays.npz"
    np.savez(npz, a=np.ones(3))
    with pytest.raises(WatchlistError, match="not a watchlist file"):
        Watchlist.load(npz)
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr(META_NAME, json.dumps({"format": "something-else", "version": 1}))
    with pytest.raises(WatchlistError, match=r"not a watchlist file.*something-else"):
        Watchlist.load(foreign)


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.999])
def test_refuses_a_truncated_file(saved, cut):
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(WatchlistError, match=r"corrupt|truncated") as err:
        Watchlist.load(path)
    assert str(path) in str(err.value)


def test_refuses_corrupted_template_bytes(saved):
    _, path = saved
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(TEMPLATES_NAME)
    # Flip a byte inside the stored matrix (past the local header and the .npy header).
    spot = info.header_offset + 30 + len(info.filename) + len(info.extra) + 200
    data[spot] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WatchlistError, match="corrupt"):
        Watchlist.load(path)


@pytest.mark.parametrize(("version", "message"), [
    (VERSION + 1, "newer than this openlfr reads"),
    (99, "version 99"),
    (0, "unknown watchlist format version 0"),
    ("1", "not an integer"),
    (1.0, "not an integer"),
    (None, "not an integer"),
])
def test_refuses_bad_versions(saved, version, message):
    _, path = saved
    rewrite(path, lambda meta: meta.update(version=version))
    with pytest.raises(WatchlistError, match=message) as err:
        Watchlist.load(path)
    assert str(path) in str(err.value)


def test_refuses_inconsistent_contents(saved):
    wl, path = saved
    original = path.read_bytes()

    rewrite(path, lambda meta: meta["subjects"][0]["references"].pop())
    with pytest.raises(WatchlistError, match=r"inconsistent.*12 templates but 11 references"):
        Watchlist.load(path)

    path.write_bytes(original)
    rewrite(path, templates=npy_bytes(wl.matrix()[:10]))
    with pytest.raises(WatchlistError, match=r"inconsistent.*\(10, 32\).*\(12, 32\)"):
        Watchlist.load(path)

    path.write_bytes(original)
    rewrite(path, templates=npy_bytes(wl.matrix().astype(np.float64)))
    with pytest.raises(WatchlistError, match="float32"):
        Watchlist.load(path)

    path.write_bytes(original)
    rewrite(path, templates=npy_bytes(wl.matrix() * 3))
    with pytest.raises(WatchlistError, match="unit length"):
        Watchlist.load(path)

    path.write_bytes(original)
    bad = wl.matrix().copy()
    bad[3, 3] = np.nan
    rewrite(path, templates=npy_bytes(bad))
    with pytest.raises(WatchlistError, match="NaN"):
        Watchlist.load(path)

    path.write_bytes(original)
    rewrite(path, lambda meta: meta["subjects"].append(meta["subjects"][0]) or
            meta.update(count=15))
    with pytest.raises(WatchlistError, match="inconsistent"):
        Watchlist.load(path)

    path.write_bytes(original)
    rewrite(path, lambda meta: meta.update(model_id=""))
    with pytest.raises(WatchlistError, match="model_id"):
        Watchlist.load(path)

    path.write_bytes(original)
    rewrite(path, lambda meta: meta["subjects"][1]["references"][0].pop("id"))
    with pytest.raises(WatchlistError, match="no id"):
        Watchlist.load(path)

    path.write_bytes(original)
    rewrite(path, lambda meta: meta["subjects"][1].update(metadata={"age": 40}))
    with pytest.raises(WatchlistError, match=r"corrupt.*strings"):
        Watchlist.load(path)


def test_refuses_a_meta_that_is_not_json(saved):
    _, path = saved
    with zipfile.ZipFile(path) as archive:
        npy = archive.read(TEMPLATES_NAME)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(META_NAME, b"\x80not json{")
        archive.writestr(TEMPLATES_NAME, npy)
    with pytest.raises(WatchlistError, match="not valid JSON"):
        Watchlist.load(path)


def test_editing_the_watchlist(tmp_path):
    wl = make_watchlist(subjects=2, refs=2)
    with pytest.raises(ValueError, match="already on the watchlist"):
        wl.add_subject("person-0")
    same = wl.ensure_subject("person-0", "Someone Else", {"x": "y"})
    assert same.display_name == "Person Nº0 — Zoë" and same.metadata["case"] == "C-0"
    assert wl.ensure_subject("fresh").display_name == "fresh"
    with pytest.raises(ValueError, match="no subject"):
        wl.add_reference("ghost", Reference("ghost/0"), np.ones(DIM))
    with pytest.raises(ValueError, match="already on the watchlist"):
        wl.add_reference("fresh", Reference("person-0/0"), np.ones(DIM))
    with pytest.raises(ValueError, match="shape"):
        wl.add_reference("fresh", Reference("fresh/0"), np.ones(DIM + 1))
    with pytest.raises(ValueError, match="NaN"):
        wl.add_reference("fresh", Reference("fresh/0"), np.full(DIM, np.nan))
    with pytest.raises(ValueError, match="cannot join"):
        wl.add_reference("fresh", Reference("fresh/0"), Template(np.ones(DIM, np.float32), "x"))
    assert len(wl) == 4 and wl.subjects["fresh"].references == []

    wl.add_reference("fresh", Reference("fresh/0", image_sha256="feed"),
                     Template(np.full(DIM, 5.0, np.float32), "sface-test"))
    assert np.linalg.norm(wl.template("fresh/0")) == pytest.approx(1.0)
    found = wl.find_image("feed")
    assert found is not None and found[0].id == "fresh"
    assert wl.find_image("nope") is None

    assert wl.remove_subject("person-1") == 2
    assert wl.remove_subject("person-1") == 0
    assert wl.remove_reference("person-0/0") is True
    assert wl.remove_reference("person-0/0") is False
    assert len(wl) == 2 and wl.subject_count == 2
    gallery = wl.gallery(faiss_min_size=1)
    assert isinstance(gallery, Gallery) and gallery.backend == "faiss"
    assert gallery.model_id == "sface-test" and gallery.subjects() == {"person-0", "fresh"}
    assert gallery.reference_ids == ("person-0/1", "fresh/0")

    wl.save(tmp_path / "edited.watchlist")
    assert Watchlist.load(tmp_path / "edited.watchlist") == wl


def test_constructor_checks_templates_against_references():
    ref = Reference("a/0")
    ok = Watchlist("m", 4, {"a": Subject("a", "A", {}, [ref])}, {"a/0": np.ones(4)})
    assert len(ok) == 1 and ok.template("a/0").dtype == np.float32
    with pytest.raises(ValueError, match="no template"):
        Watchlist("m", 4, {"a": Subject("a", "A", {}, [ref])})
    with pytest.raises(ValueError, match="belongs to no reference"):
        Watchlist("m", 4, {}, {"x": np.ones(4)})
    with pytest.raises(ValueError, match="filed under"):
        Watchlist("m", 4, {"b": Subject("a")})
    with pytest.raises(ValueError, match="model_id"):
        Watchlist("", 4)
    with pytest.raises(ValueError, match="dim"):
        Watchlist("m", 0)


def test_unwritable_metadata_is_refused_before_touching_the_file(saved):
    wl, path = saved
    before = path.read_bytes()
    wl.subjects["person-0"].references[0].quality["when"] = object()
    with pytest.raises(WatchlistError, match="JSON"):
        wl.save(path)
    assert path.read_bytes() == before
