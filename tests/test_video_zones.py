"""Analysis zones and privacy masks in the live pipeline, on a real clip (made from
registry-package photos) with the real detector and recogniser."""

from __future__ import annotations

import numpy as np
import pytest

from openlfr.errors import InvalidInput
from openlfr.video.pipeline import CameraPipeline, PipelineConfig
from openlfr.video.preview import mask_frame
from openlfr.video.sinks import MemorySink
from openlfr.video.zones import CameraZones, check_polygons, polygon_area
from openlfr.vision import get_engine

from . import videoclips
from .test_video_pipeline import _frames

W, H = 640, 360


def _run(clips, zones: CameraZones | None):
    engine = get_engine("sface")
    gallery, names = videoclips.load_gallery(clips.watchlist)
    sink = MemorySink()
    pipeline = CameraPipeline("cam", engine, gallery,  # type: ignore[arg-type]
                              PipelineConfig(threshold=engine.default_threshold), sink,
                              fps=15.0, names=names, zones=zones)
    results = [pipeline.process(f) for f in _frames(clips.obama)]
    pipeline.flush()
    return pipeline, sink, results


def _rect(x0: float, y0: float, x1: float, y1: float):
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


@pytest.fixture(scope="module")
def face_area(clips) -> tuple[float, float, float, float]:
    """Where the walking face appears (normalised), from a run without zones."""
    _p, sink, results = _run(clips, None)
    assert len(sink.firsts()) == 1
    boxes = [f.box for r in results for f in r.faces]
    x0 = min(b[0] for b in boxes) / W
    y0 = min(b[1] for b in boxes) / H
    x1 = max(b[0] + b[2] for b in boxes) / W
    y1 = max(b[1] + b[3] for b in boxes) / H
    return (max(x0 - 0.05, 0), max(y0 - 0.05, 0), min(x1 + 0.05, 1), min(y1 + 0.05, 1))


def test_a_face_under_a_privacy_mask_is_never_analysed_alerted_or_shown(clips, face_area):
    zones = CameraZones(masks=(_rect(*face_area),))
    pipeline, sink, results = _run(clips, zones)
    assert sink.alerts == []
    figures = pipeline.stats.figures()
    assert figures.faces == 0 and figures.tracks == 0 and figures.embeddings == 0
    keep = zones.mask_for(H, W)
    assert (keep == 0).sum() > 0.9 * polygon_area(_rect(*face_area)) * W * H
    for r in results:  # what the pipeline (and so the preview) holds is blacked out
        assert not r.frame.image[keep == 0].any()
        shown = mask_frame(r.frame.image, r.faces, r.track_ids, r.labels)
        assert not shown[keep == 0].any()
    assert results[-1].frame.image[keep == 255].any()  # the rest of the frame is kept
    assert zones.mask_for(H, W) is keep  # drawn once per frame size


def test_analysis_zones_choose_which_faces_are_analysed(clips, face_area):
    x0, y0, x1, y1 = face_area
    elsewhere = CameraZones(zones=(((0.0, 0.0), (0.05, 0.0), (0.0, 0.05)),))
    pipeline, sink, _ = _run(clips, elsewhere)
    assert sink.alerts == [] and pipeline.stats.figures().faces == 0
    inside = CameraZones(zones=(_rect(x0, y0, x1, y1),))
    pipeline, sink, results = _run(clips, inside)
    assert len(sink.firsts()) == 1 and sink.firsts()[0].subject_id == "obama"
    assert pipeline.stats.figures().faces >= 30
    # an analysis zone hides nothing: the frame is not changed
    assert results[-1].frame.image is not None and results[-1].frame.image.any()


def test_a_mask_survives_a_change_of_resolution():
    zones = CameraZones(masks=(_rect(0.5, 0.5, 1.0, 1.0),))
    for h, w in ((360, 640), (1080, 1920)):
        image = np.full((h, w, 3), 200, np.uint8)
        out = zones.apply(image)
        assert out[: h // 2 - 2].all() and not out[h // 2 + 2:, w // 2 + 2:].any()
        assert image.all()  # the source frame is not changed in place
    assert CameraZones().apply(image) is image


def test_polygon_checks_name_the_camera_and_field():
    assert check_polygons("[[[0,0],[1,0],[1,1]]]", "gate", "zones") == (
        ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0)),)
    with pytest.raises(InvalidInput, match="camera gate: zones: polygon 1 has no area") as e:
        check_polygons([[[0, 0], [0.5, 0.5], [1, 1]]], "gate", "zones")
    assert e.value.field == "zones"
    with pytest.raises(InvalidInput, match="must be a JSON list"):
        check_polygons("{}", "gate", "masks")


def test_a_frame_whose_detection_failed_is_still_masked(clips):
    """The runner passes a frame it could not detect on to ``advance`` as it came: what goes on
    to the preview is masked all the same."""
    from openlfr.video.pipeline import Detected

    engine = get_engine("sface")
    gallery, names = videoclips.load_gallery(clips.watchlist)
    zones = CameraZones(masks=(_rect(0.0, 0.0, 0.5, 1.0),))
    pipeline = CameraPipeline("cam", engine, gallery,  # type: ignore[arg-type]
                              PipelineConfig(threshold=engine.default_threshold), MemorySink(),
                              fps=15.0, names=names, zones=zones)
    frame = _frames(clips.obama)[20]
    assert frame.image[:, : W // 2 - 2].any()
    result = pipeline.advance(Detected(frame, None, False))
    assert not result.frame.image[:, : W // 2 - 2].any()
    assert result.frame.image[:, W // 2 + 2:].any()
