"""Properties of the watchlist file (hypothesis): any watchlist saved reads back equal; a mutated,
truncated, forged or zip-bombed file is refused with a WatchlistError naming the file, never a
traceback, and in bounded memory."""

from __future__ import annotations

import io
import json
import struct
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from openlfr.watchlist import Reference, Watchlist, WatchlistError
from openlfr.watchlist.store import FORMAT, MAX_DIM, META_NAME, TEMPLATES_NAME
from tests.test_watchlist_file import make_watchlist, npy_bytes

#: Any text, lone surrogates included (a file name that is not UTF-8 becomes one in Python).
any_text = st.text(max_size=20)
ids = st.text(min_size=1, max_size=12)


@st.composite
def watchlists(draw: st.DrawFn) -> Watchlist:
    dim = draw(st.integers(1, 8))
    wl = Watchlist(model_id=draw(ids), dim=dim, created_at=draw(any_text))
    ref_ids = iter(draw(st.lists(ids, unique=True, max_size=8)))
    for sid in draw(st.lists(ids, unique=True, max_size=4)):
        wl.add_subject(sid, draw(any_text), draw(st.dictionaries(any_text, any_text,
                                                                 max_size=3)))
        for rid in ref_ids:
            vector = [v / 64 for v in draw(st.lists(st.integers(-64, 64), min_size=dim,
                                                    max_size=dim))]
            if not any(vector):
                vector[0] = 1.0
            wl.add_reference(sid, Reference(rid, draw(any_text), draw(any_text),
                                            draw(any_text)), np.array(vector))
            if draw(st.booleans()):
                break
    return wl


@pytest.fixture(scope="module")
def valid(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("wl") / "valid.watchlist"
    make_watchlist(subjects=2, refs=2).save(path)
    return path.read_bytes()


def load_bytes(tmp_path: Path, data: bytes) -> Watchlist:
    path = tmp_path / "list.watchlist"
    path.write_bytes(data)
    return Watchlist.load(path)


def refused(tmp_path: Path, data: bytes) -> str:
    """The message of the WatchlistError that loading ``data`` raises; "" if it loaded."""
    try:
        load_bytes(tmp_path, data)
    except WatchlistError as exc:
        assert str(exc).startswith(str(tmp_path / "list.watchlist"))
        return str(exc)
    return ""


def archive(members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in members.items():
            z.writestr(name, data, compress_type=method)
    return buffer.getvalue()


def header(**fields: object) -> bytes:
    meta: dict[str, object] = {"format": FORMAT, "version": 1, "model_id": "m", "dim": 2,
                               "count": 0, "subjects": []}
    meta.update(fields)
    return json.dumps(meta).encode()


# -- round trip ----------------------------------------------------------------------------

#: Each example saves a file (with fsync): a quarter of the profile's examples.
SAVES = settings(max_examples=max(10, settings.default.max_examples // 4))


@SAVES
@given(watchlists())
@example(Watchlist(model_id="m", dim=1, created_at="\udcff"))  # a name from a non-UTF-8 file
def test_round_trip(tmp_path_factory: pytest.TempPathFactory, wl: Watchlist) -> None:
    path = tmp_path_factory.mktemp("wl") / "list.watchlist"
    try:
        wl.save(path)
    except WatchlistError as exc:  # text that UTF-8 cannot hold: refused, nothing written
        assert "cannot be written" in str(exc) and not path.exists()
        return
    assert Watchlist.load(path, expect_model_id=wl.model_id) == wl


# -- hostile files -------------------------------------------------------------------------

@given(st.data())
def test_mutated_files_are_refused_cleanly(tmp_path_factory: pytest.TempPathFactory,
                                           valid: bytes, data: st.DataObject) -> None:
    """Flipped bytes, cuts, insertions: a WatchlistError, or a sound watchlist (a change
    where nothing checks it, such as a file time in the archive)."""
    mutated = bytearray(valid)
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        at = data.draw(st.integers(0, max(len(mutated) - 1, 0)))
        if kind == "flip" and mutated:
            mutated[at] ^= data.draw(st.integers(1, 255))
        elif kind == "cut":
            del mutated[at:]
        elif kind == "insert":
            mutated[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            del mutated[at:at + data.draw(st.integers(1, 8))]
    tmp = tmp_path_factory.mktemp("mut")
    if not refused(tmp, bytes(mutated)):
        wl = load_bytes(tmp, bytes(mutated))
        assert len(wl) == 4 and wl.subject_count == 2


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=12)


@given(st.fixed_dictionaries(
    {}, optional={"format": st.just(FORMAT) | json_values, "version": st.just(1) | json_values,
                  "model_id": st.just("m") | json_values, "dim": st.integers(-1, 3) | json_values,
                  "count": st.integers(-1, 3) | json_values, "created_at": json_values,
                  "subjects": st.lists(st.fixed_dictionaries({}, optional={
                      "id": st.text(max_size=3) | json_values,
                      "references": st.lists(st.dictionaries(
                          st.sampled_from(["id", "source", "quality"]), json_values),
                          max_size=3) | json_values,
                      "metadata": json_values}), max_size=3) | json_values}),
       st.one_of(st.binary(max_size=64),
                 st.tuples(st.integers(0, 3), st.integers(1, 3), st.sampled_from(
                     ["<f4", ">f4", "<f8", "<i4", "|u1"])).map(
                     lambda t: npy_bytes(np.ones((t[0], t[1]), dtype=t[2])))),
       st.booleans())
def test_forged_headers_are_refused_cleanly(tmp_path_factory: pytest.TempPathFactory,
                                            meta: dict[str, object], npy: bytes,
                                            with_templates: bool) -> None:
    members = {META_NAME: json.dumps(meta).encode()}
    if with_templates:
        members[TEMPLATES_NAME] = npy
    refused(tmp_path_factory.mktemp("forged"), archive(members))


def test_deeply_nested_header(tmp_path: Path) -> None:
    """Regression: a meta.json of 100,000 "[" raised RecursionError."""
    message = refused(tmp_path, archive({META_NAME: b"[" * 100_000}))
    assert "nested too deeply" in message


def _patch_method(data: bytes, method: int, flags: int = 0) -> bytes:
    """The archive with every member's compression method (and flags) rewritten."""
    out = bytearray(data)
    for signature, method_at, flags_at in ((b"PK\x03\x04", 8, 6), (b"PK\x01\x02", 10, 8)):
        at = out.find(signature)
        while at >= 0:
            struct.pack_into("<H", out, at + method_at, method)
            struct.pack_into("<H", out, at + flags_at, flags)
            at = out.find(signature, at + 4)
    return bytes(out)


def test_unsupported_compression_and_encryption(tmp_path: Path, valid: bytes) -> None:
    """Regression: an unknown compression method raised NotImplementedError, an encrypted
    member RuntimeError."""
    assert "not supported" in refused(tmp_path, _patch_method(valid, 99))
    assert "encrypted" in refused(tmp_path, _patch_method(valid, 0, flags=1))


def _deflated_spaces(size: int) -> bytes:
    """A deflate stream of ``size`` spaces, made without holding them all."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = b" " * (1 << 20)
    parts = [packer.compress(chunk) for _ in range(size >> 20)]
    return b"".join([*parts, packer.flush()])


def _patch_entries(data: bytes, name: str, **fields: int) -> bytes:
    """The archive with the local and central entries of ``name`` patched: ``method``,
    ``crc`` or ``size`` (uncompressed)."""
    out = bytearray(data)
    #: signature: (offset of method, crc, uncompressed size, name length; header length)
    layout = {b"PK\x03\x04": (8, 14, 22, 26, 30), b"PK\x01\x02": (10, 16, 24, 28, 46)}
    for signature, (method_at, crc_at, size_at, name_len_at, length) in layout.items():
        at = out.find(signature)
        while at >= 0:
            name_len = struct.unpack_from("<H", out, at + name_len_at)[0]
            if out[at + length:at + length + name_len] == name.encode():
                for field, offset, fmt in (("method", method_at, "<H"), ("crc", crc_at, "<I"),
                                           ("size", size_at, "<I")):
                    if field in fields:
                        struct.pack_into(fmt, out, at + offset, fields[field])
            at = out.find(signature, at + 4)
    return bytes(out)


def _bomb(name: str, size: int) -> bytes:
    """A watchlist whose member ``name`` is ``size`` spaces, deflated (about 1000 to 1)."""
    meta = header(count=1, dim=4, subjects=[{"id": "s", "references": [{"id": "r"}]}])
    members = {META_NAME: meta, TEMPLATES_NAME: npy_bytes(np.eye(1, 4, dtype="<f4"))}
    members[name] = _deflated_spaces(size)  # stored as it is, then labelled deflated
    return _patch_entries(archive(members), name, method=zipfile.ZIP_DEFLATED,
                          size=size, crc=zlib.crc32(b" " * min(size, 1 << 20)))


@pytest.mark.parametrize("name", [META_NAME, TEMPLATES_NAME])
def test_zip_bombs_are_refused_in_bounded_memory(tmp_path: Path, name: str) -> None:
    """Regression: a 300 KB file whose meta.json inflated to 300 MB took 600 MB to refuse
    (a 30 KB one, 60 MB). The archive's directory is now checked first: refused before
    anything is inflated."""
    bomb = _bomb(name, 32 << 20)
    assert len(bomb) < 64_000
    tracemalloc.start()
    try:
        message = refused(tmp_path, bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "zip bomb" in message or "more than the" in message, message
    assert peak < 8 << 20, f"refusing took {peak / 2**20:.0f} MB"


def test_a_member_that_lies_about_its_size_is_read_in_bounded_memory(tmp_path: Path) -> None:
    """Regression: a deflated meta.json whose directory entry claims 100 bytes but inflates to
    32 MB was inflated whole by zipfile before its check failed."""
    bomb = _patch_entries(_bomb(META_NAME, 32 << 20), META_NAME, size=100)
    tracemalloc.start()
    try:
        message = refused(tmp_path, bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert message
    assert peak < 8 << 20, f"refusing took {peak / 2**20:.0f} MB"


def test_huge_dimensions_are_refused_before_reading(tmp_path: Path) -> None:
    meta = header(dim=MAX_DIM + 1, count=1, subjects=[{"id": "s", "references": [{"id": "r"}]}])
    message = refused(tmp_path, archive({META_NAME: meta, TEMPLATES_NAME: b""}))
    assert f"more than any face model's ({MAX_DIM})" in message
