"""Privacy by construction: a passer-by leaves counters and nothing else; an alert carries
what a reviewer (and, once governance lands, the encrypted alert store) needs."""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import tempfile
import weakref
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from openlfr.cli import app
from openlfr.video.pipeline import CameraPipeline, PipelineConfig
from openlfr.video.preview import mask_frame
from openlfr.video.runner import Runner
from openlfr.video.sources import open_sources
from openlfr.video.types import Alert
from openlfr.vision import get_engine
from openlfr.watchlist import Watchlist

from . import videoclips

#: Traces of biometric data in text: a run of numbers (a template), a numpy repr, JPEG or PNG
#: bytes or their base64, or any long base64 run.
BIOMETRIC_TEXT = [
    re.compile(r"(-?\d+\.\d+(e-?\d+)?[,\s]+){8,}"),
    re.compile(r"array\(|np\.float|np\.uint8"),
    re.compile(r"\\xff\\xd8|\xff\xd8"),
    re.compile(r"/9j/|iVBORw0KGgo"),
    re.compile(r"[A-Za-z0-9+/]{100,}={0,2}"),
]


def _snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    files = {}
    for root in roots:
        if not root.exists():
            continue
        for dirpath, _, names in os.walk(root):
            for name in names:
                path = Path(dirpath) / name
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                files[str(path)] = (st.st_size, st.st_mtime_ns)
    return files


def _assert_no_biometric_text(label: str, text: str) -> None:
    for pattern in BIOMETRIC_TEXT:
        match = pattern.search(text)
        assert match is None, f"{label} holds something biometric-looking: {match.group(0)[:80]!r}"


def test_a_passer_by_leaves_no_file_no_row_and_no_log_line(clips, tmp_path, monkeypatch, caplog):
    work, data, tmp = tmp_path / "work", tmp_path / "data", tmp_path / "tmp"
    for d in (work, data, tmp):
        d.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("OPENLFR_DATA_DIR", str(data))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    # The home is the suite's temporary one (conftest.py), with the program's default folders:
    # whatever was left there before this run is not this run's doing.
    home = Path.home()
    ours = [home / ".local" / "share" / "openlfr", home / ".cache" / "openlfr",
            home / ".config" / "openlfr", home / ".local" / "state" / "openlfr"]
    watched = [work, data, tmp, clips.root, *ours]
    before, home_before = _snapshot(*watched), _snapshot(home)
    caplog.set_level(logging.DEBUG)

    result = CliRunner().invoke(app, ["watch", str(clips.stranger), "--watchlist",
                                      str(clips.watchlist), "--json"])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    summary = events[-1]
    assert summary["event"] == "summary"
    # Faces were seen, tracked, embedded and searched …
    assert summary["faces"] >= 30 and summary["tracks"] >= 1 and summary["embeddings"] >= 1
    # … and nothing came of it but counters.
    assert summary["alerts"] == 0
    assert not [e for e in events if e["event"].startswith("alert")]
    # No database rows: the run created no database file, in the home (libraries' caches
    # aside) or anywhere else it could write …
    after = _snapshot(*watched)
    created = sorted((after.keys() - before.keys()) | (_snapshot(home).keys() - home_before.keys()))
    assert not [p for p in created if re.search(r"\.(db|sqlite3?)$", p)], \
        f"the run created a database: {created}"
    # … and no other file either, nor changed one.
    assert after == before, f"files were written or changed: {created}"
    assert not list(work.iterdir()) and not list(data.iterdir()) and not list(tmp.iterdir())
    for label, text in [("stdout", result.stdout), ("stderr", result.stderr),
                        ("log", "\n".join(r.getMessage() for r in caplog.records))]:
        _assert_no_biometric_text(label, text)


@pytest.mark.parametrize("fuse_shots", [1, 3])
def test_templates_and_crops_of_non_matches_are_released_at_the_decision(clips, fuse_shots):
    """Every probe crop of a stranger is gone from memory by the next frame, and so is every
    template when tracks do not fuse templates (``fuse_shots=1``); when they do, a template
    lives in its track's record until the track ends, and not a frame longer."""
    engine = get_engine("sface")
    gallery, names = videoclips.load_gallery(clips.watchlist)
    refs: list[tuple[int, weakref.ref]] = []
    templates: list[tuple[int, weakref.ref]] = []  # (track, template) when fusing
    frame_no = [0]

    class Watching(CameraPipeline):
        def _decide(self, record, sighting):
            if sighting is not None:
                refs.append((frame_no[0], weakref.ref(sighting.crop)))
                original = self.engine.embed

                def embed(image, faces):
                    out = original(image, faces)
                    if fuse_shots == 1:
                        refs.extend((frame_no[0], weakref.ref(t.vector)) for t in out)
                    else:
                        templates.extend((record.track_id, weakref.ref(t.vector)) for t in out)
                    return out

                self.engine = _EngineProxy(self.engine, embed)
                try:
                    return super()._decide(record, sighting)
                finally:
                    self.engine = self.engine.inner

    (source,) = open_sources([str(clips.stranger)])
    pipeline = Watching(source.name, engine, gallery,
                        PipelineConfig(threshold=0.4, fuse_shots=fuse_shots), _NoSink(),
                        fps=source.fps, names=names)
    leaks: list[int] = []

    def on_frame(p, result):
        frame_no[0] += 1
        # no gc.collect() here: a crop or template must be freed by reference counting alone
        # (a reference cycle would keep it until a collection comes: this test calls that a
        # leak), and a full collection every frame took the test 80 s
        leaks.extend(n for n, ref in refs if ref() is not None and n < frame_no[0] - 1)
        leaks.extend(-track for track, ref in templates
                     if ref() is not None and track not in p.tracks)

    summary = Runner([(source, pipeline)], workers=1, on_frame=on_frame).run()
    gc.collect()
    assert summary.embeddings >= 1 and summary.alerts == 0
    kept = len(templates) if fuse_shots > 1 else 0
    assert len(refs) + kept >= 2 * summary.embeddings  # a crop and a template per decision
    assert leaks == [], "a stranger's template or crop outlived its decision (or its track)"
    assert all(ref() is None for _, ref in refs + templates)
    assert pipeline.tracks == {}


class _EngineProxy:
    def __init__(self, inner, embed) -> None:
        self.inner = inner
        self.embed = embed
        self.model_id = inner.model_id


class _NoSink:
    def publish(self, alert: Alert) -> None:
        raise AssertionError(f"no alert expected, got {alert.subject_id}")


class RecordingSink:
    """What the governance store will do: keep the alert (a test keeps it in memory)."""

    def __init__(self) -> None:
        self.kept: list[dict[str, object]] = []

    def publish(self, alert: Alert) -> None:
        ok, jpeg = cv2.imencode(".jpg", alert.probe_crop)
        assert ok
        self.kept.append({**alert.as_event(), "crop_jpeg": jpeg.tobytes(),
                          "model_id": alert.model_id, "frame_wall": alert.frame_wall})


def test_the_alert_path_hands_over_everything_that_must_be_kept(clips):
    engine = get_engine("sface")
    gallery, names = videoclips.load_gallery(clips.watchlist)
    sink = RecordingSink()
    (source,) = open_sources([str(clips.obama)])
    pipeline = CameraPipeline(source.name, engine, gallery,
                              PipelineConfig(threshold=engine.default_threshold), sink,
                              fps=source.fps, names=names)
    summary = Runner([(source, pipeline)], workers=1).run()
    assert summary.alerts == 1
    assert len(sink.kept) == summary.alerts + summary.alert_updates  # each alert and update
    first = sink.kept[0]
    assert first["event"] == "alert" and first["subject"] == "obama"
    assert first["camera"] == "obama" and first["track"] >= 1
    assert first["score"] >= first["threshold"] == engine.default_threshold
    assert first["model_id"] == engine.model_id
    references = {r.id for r in Watchlist.load(clips.watchlist).subjects["obama"].references}
    assert first["reference_id"] in references
    assert isinstance(first["t"], float) and isinstance(first["frame"], int)
    assert isinstance(first["wall_time"], float) and first["wall_time"] >= first["frame_wall"]
    crop = cv2.imdecode(np.frombuffer(first["crop_jpeg"], np.uint8), cv2.IMREAD_COLOR)
    assert crop is not None and min(crop.shape[:2]) >= 40
    assert engine.detect(crop), "the probe crop shows the face"


def test_the_preview_masks_faces_beyond_recognition_and_boxes_alerts(clips):
    engine = get_engine("sface")
    gallery, _ = videoclips.load_gallery(clips.watchlist)
    cap = cv2.VideoCapture(str(clips.obama))
    for _ in range(35):
        ok, image = cap.read()
    cap.release()
    assert ok
    faces = engine.detect(image)
    assert faces
    # Unmasked, the face is found and matches the watchlist.
    score = gallery.search(engine.embed(image, faces[:1])[0].vector[None], k=1)[0][0].score
    assert score >= engine.default_threshold
    masked = mask_frame(image, faces, [7], labels={})
    for face in engine.detect(masked):
        hit = gallery.search(engine.embed(masked, [face])[0].vector[None], k=1)[0][0]
        assert hit.score < engine.default_threshold / 2
    # An alert face is left visible, boxed in red and labelled.
    boxed = mask_frame(image, faces, [7], labels={7: "obama"})
    x, y, w, h = (int(v) for v in faces[0].box)
    assert np.array_equal(boxed[y + h // 2, x + w // 2], image[y + h // 2, x + w // 2])
    red = (boxed[..., 2] > 200) & (boxed[..., 0] < 50) & (boxed[..., 1] < 50)
    assert red.sum() > 4 * w
