"""Per-track template fusion, flip enrolment and quality weights, on real faces and models."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from openlfr.video.bestshot import TrackRecord, fuse_templates, make_sighting
from openlfr.video.pipeline import CameraPipeline, PipelineConfig
from openlfr.video.sinks import MemorySink
from openlfr.video.types import Frame
from openlfr.vision import get_engine
from openlfr.vision import quality as q
from openlfr.vision.imageio import as_image, load_image
from openlfr.vision.types import Face
from openlfr.watchlist.enrol import assess
from openlfr.watchlist.gallery import Gallery


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _face(image: np.ndarray) -> Face:
    faces = get_engine("sface").detect(image)
    assert faces, "the fixture photo must show a face"
    return max(faces, key=lambda f: f.width)


def _shot(path: Path, blur: int = 0, scale: float = 1.0) -> tuple[np.ndarray, Face, float]:
    """A real photo (optionally blurred and shrunk, as a poor video frame), its face and the
    face's quality weight."""
    image = load_image(path)
    if scale != 1.0:
        image = as_image(cv2.resize(image, None, fx=scale, fy=scale,
                                    interpolation=cv2.INTER_AREA))
    if blur:
        image = as_image(cv2.GaussianBlur(image, (blur, blur), 0))
    face = _face(image)
    return image, face, q.template_weight(face, q.measure(image, face, q.LIVE))


def test_fusion_is_a_weighted_normalised_mean_of_the_best_k():
    a, b, c = np.eye(3, dtype=np.float32)
    fused = fuse_templates([(a, 3.0), (b, 1.0)], k=3)
    assert np.linalg.norm(fused) == pytest.approx(1.0, abs=1e-6)
    assert np.allclose(fused, _unit(np.array([3.0, 1.0, 0.0])), atol=1e-6)
    # order does not matter; inputs are normalised before weighing (length is not a vote)
    assert np.allclose(fuse_templates([(5 * b, 1.0), (a, 3.0)], k=3), fused, atol=1e-6)
    # only the k best-weighted shots count; k=1 is the best shot alone
    assert np.allclose(fuse_templates([(c, 0.1), (a, 3.0), (b, 1.0)], k=2), fused, atol=1e-6)
    assert np.allclose(fuse_templates([(c, 0.1), (a, 3.0), (b, 1.0)], k=1), a)
    # a zero or negative weight is a tiny one, never a vote against
    neg = fuse_templates([(a, 1.0), (b, -5.0)], k=2)
    assert neg[0] > 0.99 and 0 < neg[1] < 1e-3
    with pytest.raises(ValueError):
        fuse_templates([], k=3)
    with pytest.raises(ValueError):
        fuse_templates([(a, 1.0)], k=0)
    with pytest.raises(ValueError):
        PipelineConfig(threshold=0.5, fuse_shots=0)


def test_a_poor_shot_weighs_less_and_does_not_dominate_the_fused_template(face_images):
    engine = get_engine("sface")
    good_img, good_face, good_w = _shot(face_images["obama2"])
    poor_img, poor_face, poor_w = _shot(face_images["obama3"], blur=9, scale=0.35)
    assert poor_w < good_w / 2, (poor_w, good_w)  # quality.py's weight tells them apart
    ref_img = load_image(face_images["obama"])
    ref = engine.embed(ref_img, [_face(ref_img)])[0].vector
    good = engine.embed(good_img, [good_face])[0].vector
    poor = engine.embed(poor_img, [poor_face])[0].vector
    fused = fuse_templates([(poor, poor_w), (good, good_w)])
    plain = fuse_templates([(poor, 1.0), (good, 1.0)])
    # the fused template sits nearer the good shot than the plain mean does
    assert float(fused @ good) > float(plain @ good)
    assert float(fused @ good) > float(fused @ poor)
    # and it still matches the person at least as well as the poor shot alone
    assert float(fused @ ref) > float(poor @ ref)


def test_the_pipeline_searches_the_first_shot_alone_then_the_fused_template(face_images):
    engine = get_engine("sface")
    ref_img = load_image(face_images["obama"])
    gallery = Gallery(engine.model_id, engine.embedder.dim)
    gallery.add("obama", "obama/ref", engine.embed(ref_img, [_face(ref_img)])[0])
    queries: list[np.ndarray] = []

    class Recording:
        """The real gallery, keeping the queries it is asked."""

        model_id = gallery.model_id

        def __len__(self) -> int:
            return len(gallery)

        def search(self, queries_: np.ndarray, k: int = 5, per_subject: bool = True):
            queries.append(np.array(queries_[0]))
            return gallery.search(queries_, k, per_subject)

    sink = MemorySink()
    pipe = CameraPipeline("cam", engine, Recording(),  # type: ignore[arg-type]
                          PipelineConfig(threshold=engine.default_threshold), sink)
    record = TrackRecord(1, 0.0, 0.0, (0, 0, 1, 1))
    embedded = []
    for i, (path, blur, scale) in enumerate([(face_images["obama3"], 9, 0.35),
                                             (face_images["obama2"], 0, 1.0)]):
        image, face, weight = _shot(path, blur, scale)
        frame = Frame("cam", i, float(i), time.time(), time.monotonic(), image)
        sighting = make_sighting(frame, 1, face, weight)
        embedded.append((engine.embed(sighting.crop, [sighting.face])[0].vector, weight))
        pipe._decide(record, sighting)
    assert len(queries) == 2 and len(record.templates) == 2
    assert np.allclose(queries[0], embedded[0][0], atol=1e-5)  # the first shot, alone
    assert np.allclose(queries[1], fuse_templates(embedded), atol=1e-5)
    assert not np.allclose(queries[1], embedded[1][0], atol=1e-3)
    assert sink.alerts and sink.alerts[-1].subject_id == "obama"


def test_mirrored_face_keeps_landmark_meaning():
    face = Face((10.0, 20.0, 30.0, 40.0),
                np.array([[15, 30], [30, 30], [22, 40], [16, 50], [29, 50]], np.float32), 0.9)
    m = face.mirrored(100)
    assert m.box == (59.0, 20.0, 30.0, 40.0)
    # the right eye (first) is still the one on the image's left after mirroring
    assert m.landmarks[0][0] < m.landmarks[1][0]
    assert np.allclose(m.landmarks[0], [99 - 30, 30]) and np.allclose(m.landmarks[2], [77, 40])
    back = m.mirrored(100)
    assert back.box == face.box and np.allclose(back.landmarks, face.landmarks)


def test_flip_enrolment_averages_the_mirror_image_in(face_images):
    engine = get_engine("sface")
    image = load_image(face_images["obama"])
    plain = assess(engine, image)
    flipped = assess(engine, image, flip=True)
    assert plain.template is not None and flipped.template is not None
    assert flipped.template.model_id == plain.template.model_id  # same model: comparable
    v, f = plain.template.vector, flipped.template.vector
    assert np.linalg.norm(f) == pytest.approx(1.0, abs=1e-5)
    assert not np.allclose(v, f, atol=1e-3) and float(v @ f) > 0.9
    mirror = as_image(np.ascontiguousarray(cv2.flip(image, 1)))
    m = engine.embed(mirror, [plain.face.mirrored(image.shape[1])])[0].vector  # type: ignore[union-attr]
    assert np.allclose(f, _unit(v + m), atol=1e-5)


def test_early_shot_is_due_at_once_only_when_asked_whole_and_of_enrolment_quality(face_images):
    from openlfr.video.bestshot import ShotPolicy

    image = load_image(face_images["obama2"])
    face = _face(image)
    face = face.with_quality(q.measure(image, face, q.LIVE))
    assert q.measure(image, face, q.ENROLMENT).ok  # enrolment quality
    frame = Frame("cam", 0, 0.0, time.time(), time.monotonic(), image)
    x, _y, w, _h = face.box
    cut = face.shifted(-(x + w / 2), 0)  # half the face beyond the frame's left edge
    for shot, early, due in ((face, True, True), (face, False, False), (cut, True, False)):
        policy = ShotPolicy(window=10.0, early=early)
        record = TrackRecord(1, 0.0, 0.0, shot.box)
        record.offer(make_sighting(frame, 1, shot, 1.0), policy)
        assert record.due(0.0, policy) is due, (early, shot.box)
