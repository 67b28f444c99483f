"""SFace on ONNX Runtime (batched, graph repaired in memory) gives OpenCV DNN's embeddings.

OpenCV's DNN runs the file as published, one crop at a time; it is the reference. The crops are
real aligned faces of several people (Obama, Biden and the six people of the group photo) so a
batch mixes identities, and any cross-talk between rows of a batch would show.
"""

from __future__ import annotations

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from openlfr.vision import get_engine, load_image, registry
from openlfr.vision.embed_sface import SFaceEmbedder, resolve_runtime
from openlfr.vision.sface_ort import (
    BATCH_DIM,
    dequantize,
    load_sface_session,
    repair_sface_graph,
)
from openlfr.vision.types import Template

COSINE_MIN = 0.9999
ABS_DIFF_MAX = 1e-4  # on unit vectors
NAMES = ("obama", "obama2", "obama3", "biden", "group")


@pytest.fixture(scope="module")
def crops(face_images) -> list[np.ndarray]:
    """Aligned 112x112 crops: one per single-face photo, then the six group faces."""
    engine = get_engine("sface")
    out = []
    for name in NAMES:
        image = load_image(face_images[name])
        faces = engine.detector.detect(image)
        assert faces, name
        out += engine.embedder.crops(image, faces)
    assert len(out) == 10
    return out


@pytest.fixture(scope="module")
def ort_embedder() -> SFaceEmbedder:
    return SFaceEmbedder(flip=True, runtime="onnxruntime", threads=1)


@pytest.fixture(scope="module")
def cv_embedder() -> SFaceEmbedder:
    return SFaceEmbedder(flip=True, runtime="opencv")


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_runtime_choice():
    assert resolve_runtime("auto") == "onnxruntime"
    assert resolve_runtime("opencv") == "opencv"
    with pytest.raises(ValueError, match="runtime"):
        resolve_runtime("tensorrt")


def test_session_has_one_input_with_dynamic_batch():
    session = load_sface_session(registry.resolve("sface"), threads=1)
    (inp,) = session.get_inputs()
    (out,) = session.get_outputs()
    assert inp.name == "data" and inp.shape == [BATCH_DIM, 3, 112, 112]
    assert out.name == "fc1" and out.shape == [BATCH_DIM, 128]
    for n in (1, 3):
        result = session.run(None, {"data": np.zeros((n, 3, 112, 112), np.float32)})[0]
        assert result.shape == (n, 128)


def test_model_file_is_not_modified():
    path = registry.resolve("sface")
    before = registry.sha256_file(path)
    load_sface_session(path, threads=1)
    assert registry.sha256_file(path) == before == registry.FILES["sface"].sha256


def test_preprocessing_is_blob_from_image(ort_embedder, crops):
    blob = ort_embedder._blob(crops)
    one_by_one = np.concatenate([
        cv2.dnn.blobFromImage(c, 1.0, (112, 112), (0, 0, 0), swapRB=True) for c in crops
    ])
    by_hand = np.stack([c[:, :, ::-1].transpose(2, 0, 1) for c in crops]).astype(np.float32)
    assert blob.dtype == np.float32 and blob.shape == (len(crops), 3, 112, 112)
    assert np.array_equal(blob, one_by_one)
    assert np.array_equal(blob, by_hand)


def test_raw_outputs_equal_opencv(crops):
    """The repaired graph, one batched run, against the published graph on cv2.dnn."""
    path = registry.resolve("sface")
    net = cv2.dnn.readNetFromONNX(str(path))
    reference = []
    for crop in crops:
        net.setInput(cv2.dnn.blobFromImage(crop, 1.0, (112, 112), (0, 0, 0), swapRB=True))
        reference.append(net.forward().reshape(-1))
    expected = np.stack(reference)
    blob = cv2.dnn.blobFromImages(crops, 1.0, (112, 112), (0, 0, 0), swapRB=True)
    for fast_prelu in (True, False):
        session = load_sface_session(path, threads=1, fast_prelu=fast_prelu)
        got = session.run(None, {"data": blob})[0]
        assert _cosines(got, expected).min() >= COSINE_MIN
        # Raw embeddings have norms around 10; the difference is float32 rounding.
        assert np.abs(got - expected).max() < 1e-3 * np.abs(expected).max()


@pytest.mark.parametrize("flip", [True, False])
def test_batched_onnxruntime_equals_opencv_one_at_a_time(crops, ort_embedder, cv_embedder, flip):
    ort_embedder.flip = cv_embedder.flip = flip
    try:
        got = ort_embedder.embed_crops(crops)
        expected = cv_embedder.embed_crops(crops)
    finally:
        ort_embedder.flip = cv_embedder.flip = True
    assert got.shape == expected.shape == (len(crops), 128)
    cosines = _cosines(got, expected)
    assert cosines.min() >= COSINE_MIN, cosines
    assert np.abs(got - expected).max() < ABS_DIFF_MAX
    # The batch really mixes people: Obama against Biden, and each row matches its own
    # reference row far better than any other (no rows swapped or mixed).
    assert float(got[0] @ got[3]) < 0.5
    similarity = got @ expected.T
    assert np.array_equal(similarity.argmax(axis=1), np.arange(len(crops)))


def test_batch_equals_single_images(crops, ort_embedder):
    batched = ort_embedder.embed_crops(crops)
    single = np.concatenate([ort_embedder.embed_crops([c]) for c in crops])
    assert np.abs(batched - single).max() < 1e-5
    order = np.random.default_rng(0).permutation(len(crops))
    shuffled = ort_embedder.embed_crops([crops[k] for k in order])
    assert np.abs(shuffled - batched[order]).max() < 1e-5


def test_runs_split_by_max_batch_give_the_same_embeddings(crops, ort_embedder):
    small = SFaceEmbedder(flip=True, runtime="onnxruntime", threads=1, max_batch=3)
    assert np.abs(small.embed_crops(crops) - ort_embedder.embed_crops(crops)).max() < 1e-5


def test_public_api_is_unchanged(face_images, ort_embedder, cv_embedder):
    image = load_image(face_images["group"])
    faces = get_engine("sface").detector.detect(image)
    for embedder in (ort_embedder, cv_embedder):
        assert embedder.model_id == "sface-2021dec-int8bq+flip" and embedder.dim == 128
        assert embedder.flip is True
        templates = embedder.embed(image, faces)
        assert len(templates) == len(faces)
        assert all(isinstance(t, Template) and t.model_id == embedder.model_id
                   for t in templates)
        assert embedder.embed_crops([]).shape == (0, 128)


@pytest.mark.parametrize(
    ("shape", "scale_shape", "axis", "block_size"),
    [((4, 6), (1,), 1, 0), ((4, 6), (6,), 1, 0), ((4, 6), (4, 2), 1, 3), ((8, 4), (2, 4), 0, 4),
     ((6, 4), (2, 4), 0, 4)],
)
def test_dequantize_matches_onnxruntime(shape, scale_shape, axis, block_size):
    """The NumPy DequantizeLinear used to fold the weights: per-tensor, per-axis, blocked
    (including a last block that is cut short)."""
    rng = np.random.default_rng(1)
    q = rng.integers(-128, 128, shape, dtype=np.int8)
    scale = rng.uniform(0.001, 0.1, scale_shape).astype(np.float32)
    zero = rng.integers(-20, 20, scale_shape, dtype=np.int8)
    if scale_shape == (1,):
        scale, zero = scale.reshape(()), zero.reshape(())
    attrs = {"axis": axis, **({"block_size": block_size} if block_size else {})}
    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], **attrs)], "dq", [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(q, "q"), numpy_helper.from_array(scale, "s"),
         numpy_helper.from_array(zero, "z")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {})[0]
    got = dequantize(q, scale, zero, axis=axis, block_size=block_size)
    assert got.dtype == np.float32
    assert np.array_equal(got, expected)


def test_repair_rewires_consumers_of_dangling_weight_inputs():
    """The failure the repair exists for, in miniature: a consumer reads ``w``, a graph input
    that nothing backs, while the quantiser's ``w_quantized`` -> DequantizeLinear ->
    ``w_dequantized`` -> Reshape -> ``w_reshaped`` chain holds the real weight."""
    rng = np.random.default_rng(2)
    q = rng.integers(-128, 128, (3, 4), dtype=np.int8)
    scale = rng.uniform(0.01, 0.1, (3, 1)).astype(np.float32)
    zero = rng.integers(-5, 5, (3, 1), dtype=np.int8)
    nodes = [
        helper.make_node("DequantizeLinear", ["w_quantized", "w_scales", "w_zero_point"],
                         ["w_dequantized"], axis=1, block_size=4),
        helper.make_node("Reshape", ["w_dequantized", "w_shape"], ["w_reshaped"]),
        helper.make_node("Gemm", ["x", "w"], ["y"], transB=1),
        helper.make_node("PRelu", ["y", "slope"], ["z"]),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
         helper.make_tensor_value_info("w", TensorProto.FLOAT, [3, 4]),
         helper.make_tensor_value_info("slope", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(q, "w_quantized"), numpy_helper.from_array(scale, "w_scales"),
         numpy_helper.from_array(zero, "w_zero_point"),
         numpy_helper.from_array(np.array([3, 4], np.int64), "w_shape"),
         numpy_helper.from_array(np.array([0.25, -0.5, 1.5], np.float32), "slope")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    repair_sface_graph(model)
    assert [i.name for i in model.graph.input] == ["x"]
    assert model.graph.node[0].op_type == "Gemm" and model.graph.node[0].input[1] == "w_reshaped"
    assert "PRelu" not in {n.op_type for n in model.graph.node}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = rng.normal(size=(5, 4)).astype(np.float32)
    y = x @ ((q.astype(np.float32) - zero) * scale).T
    expected = np.where(y < 0, y * np.array([0.25, -0.5, 1.5], np.float32), y)
    assert np.allclose(session.run(None, {"x": x})[0], expected, atol=1e-6)
