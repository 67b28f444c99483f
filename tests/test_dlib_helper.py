"""dlib's network in a helper process: the same descriptors, no lock held over the other
threads of a live run, its CPU counted, and a helper that dies is replaced by the in-process
network without losing an embedding."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from openlfr.video.pipeline import CameraPipeline, PipelineConfig
from openlfr.video.runner import Runner
from openlfr.video.sinks import MemorySink
from openlfr.video.sources import open_sources
from openlfr.vision import load_image, registry
from openlfr.vision.dlib_helper import DlibHelper
from openlfr.vision.embed_dlib import DlibEmbedder
from openlfr.vision.engine import build_engine
from openlfr.watchlist.gallery import Gallery

pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def obama(face_images):
    from openlfr.vision import get_engine

    image = load_image(face_images["obama"])
    return image, get_engine("sface").detect(image)


def _progress_during(embedder: DlibEmbedder, image, faces, calls: int = 3) -> tuple[int, int]:
    """How far a pure-Python thread counts while ``calls`` embeddings run, and how many
    Python byte-code switches it got (its count)."""
    stop = threading.Event()
    count = [0]

    def spin() -> None:
        while not stop.is_set():
            count[0] += 1

    thread = threading.Thread(target=spin)
    thread.start()
    try:
        for _ in range(calls):
            embedder.embed(image, faces)
    finally:
        stop.set()
        thread.join()
    return count[0], calls


def test_the_helper_gives_the_same_descriptors_and_lets_other_threads_run(obama):
    image, faces = obama
    embedder = DlibEmbedder()
    try:
        local = embedder.embed(image, faces)
        in_process, _ = _progress_during(embedder, image, faces)
        embedder.use_helper_process()
        embedder.use_helper_process()  # a second call keeps the one helper
        helped = embedder.embed(image, faces)
        assert [t.model_id for t in helped] == [t.model_id for t in local]
        np.testing.assert_array_equal(helped[0].vector, local[0].vector)
        with_helper, _ = _progress_during(embedder, image, faces)
        assert embedder.helper_cpu_seconds() > 0
    finally:
        embedder.close()
    # In-process, dlib holds Python's lock for the whole descriptor: the other thread barely
    # moves; with the helper it runs all the while.
    assert with_helper > 3 * in_process


def test_a_helper_that_dies_is_replaced_by_the_in_process_network(obama, caplog):
    image, faces = obama
    embedder = DlibEmbedder()
    try:
        expected = embedder.embed(image, faces)[0].vector
        embedder.use_helper_process()
        helper = embedder._helper
        assert isinstance(helper, DlibHelper)
        helper._proc.kill()
        helper._proc.wait()
        again = embedder.embed(image, faces)  # not lost: computed here instead
        np.testing.assert_array_equal(again[0].vector, expected)
        assert embedder._helper is None
        assert "helper process stopped" in caplog.text
    finally:
        embedder.close()


def test_bad_chips_are_refused_before_they_reach_the_helper():
    helper = DlibHelper(str(registry.resolve("dlib_resnet")))
    try:
        with pytest.raises(ValueError, match="150"):
            helper.describe(np.zeros((1, 100, 100, 3), np.uint8))
        assert helper.describe(np.zeros((0, 150, 150, 3), np.uint8)).shape == (0, 128)
    finally:
        helper.close()
    assert helper._proc.returncode == 0  # it ends when its input closes


def test_a_fusion_live_run_uses_the_helper_and_counts_its_cpu(clips, face_images):
    engine = build_engine(registry.backend_spec("fusion"))
    try:
        photo = load_image(face_images["obama"])
        template = engine.embed(photo, engine.detect(photo))[0]
        gallery = Gallery(engine.model_id, engine.embedder.dim)
        gallery.add("obama", "ref-1", template)
        sink = MemorySink()
        sources = open_sources([str(clips.obama)])
        config = PipelineConfig(threshold=registry.backend_spec("fusion").default_threshold)
        cameras = [(s, CameraPipeline(s.name, engine, gallery, config, sink, fps=s.fps,
                                      names={"obama": "Barack Obama"})) for s in sources]
        summary = Runner(cameras, workers=2).run()
        dlib = engine.embedder.dlib  # type: ignore[attr-defined]
        assert dlib._helper is not None  # the run moved dlib's network out of the process
        assert [a.subject_id for a in sink.firsts()] == ["obama"]
        assert summary.embeddings >= 1 and engine.helper_cpu_seconds() > 0
        assert summary.cpu_seconds > 0
    finally:
        engine.embedder.dlib.close()  # type: ignore[attr-defined]
