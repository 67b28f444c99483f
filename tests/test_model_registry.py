"""The backend registry: one spec per recogniser, engines built from specs, and an ONNX
recogniser a user brings that gives SFace's templates when it is SFace's file."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from openlfr.video.detectors import DetectorPool
from openlfr.vision import engine as engine_module
from openlfr.vision import get_engine, load_image, registry
from openlfr.vision.detect import YuNetDetector
from openlfr.vision.embed_onnx import OnnxRecogniser, inspect_model, user_spec
from openlfr.vision.registry import ModelError

#: Largest |1 - cosine| allowed between the built-in SFace template of a face and the template
#: of the same face through the SFace file added as an outside model. Both paths feed the same
#: aligned 112x112 RGB crop (0-255) to the same weights, repaired the same way; they differ
#: only in ONNX Runtime's batching (one run per crop against batched runs) and the order of
#: float32 sums, about 1e-7 on a unit vector (measured: at most 1.2e-7). A real difference in
#: preprocessing (BGR for RGB, a one-pixel shift, mean 127.5) costs 1e-2 or more.
TEMPLATE_TOLERANCE = 1e-5


def sface_as_outside_model(path: Path | None = None) -> OnnxRecogniser:
    """SFace's pinned file, described as a user would describe an outside model."""
    source = registry.resolve("sface") if path is None else path
    config = OnnxRecogniser(path=str(source), sha256=registry.sha256_file(source),
                            model_id="user-outside-sface", width=112, height=112,
                            mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), colour="rgb")
    return inspect_model(config)


def test_every_builtin_spec_declares_what_its_engine_makes() -> None:
    """The model id, threshold and floor a spec declares are what its engine reports."""
    assert list(registry.BACKENDS) == ["sface", "dlib", "fusion"]
    for spec in registry.BACKENDS.values():
        engine = get_engine(spec.name)
        assert engine.spec is spec
        assert engine.model_id == spec.model_id, spec.name
        assert engine.default_threshold == spec.default_threshold == spec.default_floor
        assert registry.spec_for_model_id(spec.model_id) is spec
        assert engine_module.model_id_backend(spec.model_id) == spec.name
        assert all(registry.check_file(f).ok for f in spec.files)


def test_spec_lookup_by_model_id() -> None:
    assert registry.spec_for_model_id("sface-2021dec-int8bq+flip").name == "sface"
    with pytest.raises(ModelError, match="unknown model"):
        registry.spec_for_model_id("arcface-r100")
    with pytest.raises(ModelError, match="unknown backend 'nope'; known: sface, dlib, fusion"):
        get_engine("nope")


def test_a_name_or_model_id_is_registered_once() -> None:
    sface = registry.BACKENDS["sface"]
    assert registry.register(sface) is sface  # the same spec again: nothing changes
    with pytest.raises(ModelError, match="already registered"):
        registry.register(registry.BackendSpec("sface", "x", (), sface.detector,
                                               sface.embedder, 0.5, "another"))
    with pytest.raises(ModelError, match="model id"):
        registry.register(registry.BackendSpec("other", sface.model_id, (), sface.detector,
                                               sface.embedder, 0.5, "another"))
    assert "other" not in registry.BACKENDS


def test_the_detector_pool_copies_through_the_protocol() -> None:
    base = YuNetDetector(score_threshold=0.7, max_side=800)
    engine = engine_module.FaceEngine("sface", base, get_engine("sface").embedder)
    pool = DetectorPool(engine, size=3)
    assert pool.size == 3
    seen = []
    for _ in range(3):
        with pool.acquire() as d:
            seen.append(d)
    copies = [d for d in seen if d is not base]
    assert len(copies) == 2 and all(isinstance(d, YuNetDetector) for d in copies)
    assert all(d.score_threshold == 0.7 and d.max_side == 800 for d in copies)


def template_agreement(face_images: dict[str, Path]) -> tuple[float, int]:
    """Max |1 - cosine| between built-in SFace templates and the outside model's, over every
    face of the test photos, and how many faces."""
    outside = get_engine(user_spec("outside", sface_as_outside_model()))
    builtin = get_engine("sface")
    worst, faces_seen = 0.0, 0
    for path in face_images.values():
        image = load_image(path)
        faces = builtin.detect(image)
        mine = outside.embed(image, faces)
        ref = builtin.embed(image, faces)
        for a, b in zip(mine, ref, strict=True):
            assert a.model_id == "user-outside-sface" and a.vector.shape == (128,)
            worst = max(worst, abs(1.0 - float(np.dot(a.vector, b.vector))))
            faces_seen += 1
    return worst, faces_seen


def test_sface_as_an_outside_model_gives_the_same_templates(
        face_images: dict[str, Path]) -> None:
    config = sface_as_outside_model()
    assert (config.layout, config.input_name, config.output_name, config.dim) == (
        "nchw", "data", "fc1", 128)
    worst, faces = template_agreement(face_images)
    assert faces >= 10  # obama x3, biden, the group photo's six
    print(f"\nSFace as an outside model: max |1 - cosine| over {faces} faces = {worst:.3g}")
    assert worst < TEMPLATE_TOLERANCE, worst


def test_wrong_preprocessing_is_seen(face_images: dict[str, Path]) -> None:
    """The tolerance is tight enough to catch a swapped colour order."""
    config = sface_as_outside_model()
    from dataclasses import replace

    bgr = get_engine(user_spec("bgr", replace(config, colour="bgr",
                                               model_id="user-outside-bgr")))
    builtin = get_engine("sface")
    image = load_image(face_images["obama"])
    faces = builtin.detect(image)
    a, b = bgr.embed(image, faces)[0], builtin.embed(image, faces)[0]
    assert abs(1.0 - float(np.dot(a.vector, b.vector))) > 100 * TEMPLATE_TOLERANCE


def test_a_changed_file_is_refused_at_load(tmp_path: Path) -> None:
    copy = tmp_path / "outside.onnx"
    shutil.copy(registry.resolve("sface"), copy)
    config = sface_as_outside_model(copy)
    data = bytearray(copy.read_bytes())
    data[5000] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(registry.ModelIntegrityError, match=r"SHA-256.*refusing to load it"):
        config()
    status = registry.check_file(config.file)
    assert not status.ok and "changed since it was added" in status.message
    copy.unlink()
    with pytest.raises(ModelError, match="is missing"):
        config()


def _tiny_graph(path: Path, out_channels: int = 3) -> Path:
    """A valid ONNX graph (1,3,112,112) → global average pool → (1, C, 1, 1)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 112, 112])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, out_channels, 1, 1])
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "tiny", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(("make", "size", "message"), [
    (lambda p: p.write_text("not a model"), (112, 112), "not an ONNX model"),
    (None, (100, 100), "the graph takes width 112, not the 100 given"),
    (lambda p: _tiny_graph(p), (112, 112), "no output is one face template.*y has shape "
                                           r"\[1, 3, 1, 1\]"),
    (lambda p: None, (112, 112), "no such file"),
    (lambda p: p.mkdir(), (112, 112), "a directory"),
])
def test_bad_files_are_one_line_errors(tmp_path: Path, make, size, message) -> None:
    path = tmp_path / "model.onnx"
    if make is None:
        shutil.copy(registry.resolve("sface"), path)
    else:
        make(path)
    config = OnnxRecogniser(path=str(path), sha256="0" * 64, model_id="user-bad", width=size[0],
                            height=size[1], mean=(0, 0, 0), std=(1, 1, 1))
    with pytest.raises(ModelError, match=message) as err:
        inspect_model(config)
    assert "\n" not in str(err.value)
