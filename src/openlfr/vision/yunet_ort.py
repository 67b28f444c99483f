"""YuNet through ONNX Runtime: the OpenCV Zoo int8 graph repaired in memory, and the decoding
``cv2.FaceDetectorYN`` does, in NumPy.

The file ``face_detection_yunet_2023mar_int8bq.onnx`` has the faults of the SFace file
(:mod:`openlfr.vision.sface_ort`): block-quantised weights behind ``DequantizeLinear`` nodes
that ONNX Runtime would run on every call, and a fixed input of 1x3x640x640. The same repair
(:func:`openlfr.vision.sface_ort.repair_graph`) folds the weights into plain floats once; the
input's height and width are then made symbolic, so one session takes any frame size whose
sides are multiples of 32. On one core, a 640x352 frame costs about 6 ms against about 15 ms
in OpenCV's DNN module (``python benchmarks/bench_profile.py``; README "Cheaper cameras").

Decoding follows OpenCV's ``FaceDetectorYN`` (``modules/objdetect/src/face_detect.cpp``) step
for step, so the two runtimes give the same faces: the image is padded with black at the
bottom and right to multiples of 32 and fed as BGR floats 0-255; for each stride (8, 16, 32)
the score of a cell is ``sqrt(clamp(cls) * clamp(obj))``, its box centre ``(col + dx,
row + dy) * stride``, its size ``exp(dw, dh) * stride``, its landmarks ``(col + lx, row + ly) *
stride``; then non-maximum suppression on the integer boxes (``cv2.dnn.NMSBoxes``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import onnxruntime as ort

from openlfr.vision.sface_ort import QUIET_LOG_SEVERITY, repair_graph

#: YuNet's feature strides, in the order of its outputs.
STRIDES = (8, 16, 32)


def load_yunet_session(path: Path, threads: int = 1) -> ort.InferenceSession:
    """An ORT CPU session for the YuNet file at ``path``, repaired in memory, taking
    ``1x3xHxW`` float32 BGR input with H and W multiples of 32. ``threads``: intra-op threads
    (1: a live run has one detection per worker thread)."""
    model = repair_graph(onnx.load(str(path)))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    for output in model.graph.output:  # cells per stride follow the input size
        output.type.tensor_type.shape.dim[1].dim_param = f"cells_{output.name}"
    del model.graph.value_info[:]  # stale 640x640 shapes; ORT infers them again
    options = ort.SessionOptions()
    options.log_severity_level = QUIET_LOG_SEVERITY
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


class YuNetSession:
    """One repaired YuNet graph and its decoding; :meth:`detect` returns rows as
    ``cv2.FaceDetectorYN.detect`` does (``x, y, w, h``, 5 landmarks ``x, y``, score), or
    ``None``. Safe to call from several threads (ORT sessions are)."""

    def __init__(self, path: Path, score_threshold: float, nms_threshold: float, top_k: int,
                 threads: int = 1) -> None:
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.top_k = top_k
        self._session = load_yunet_session(path, threads)
        self._input = self._session.get_inputs()[0].name
        names = [o.name for o in self._session.get_outputs()]
        self._order = [names.index(f"{kind}_{s}") for kind in ("cls", "obj", "bbox", "kps")
                       for s in STRIDES]
        self._grids: dict[tuple[int, int], list[Any]] = {}

    def _grid(self, pad_w: int, pad_h: int) -> list[Any]:
        """Per stride: each cell's column and row (float32), cached per padded size."""
        key = (pad_w, pad_h)
        grid = self._grids.get(key)
        if grid is None:
            grid = []
            for s in STRIDES:
                rows, cols = np.mgrid[0: pad_h // s, 0: pad_w // s].astype(np.float32)
                grid.append((cols.reshape(-1), rows.reshape(-1)))
            if len(self._grids) > 16:  # a camera changing size often: keep a few
                self._grids.clear()
            self._grids[key] = grid
        return grid

    def detect(self, image: np.ndarray) -> np.ndarray | None:
        h, w = image.shape[:2]
        pad_h, pad_w = -(-h // 32) * 32, -(-w // 32) * 32
        blob = np.zeros((1, 3, pad_h, pad_w), np.float32)
        blob[0, :, :h, :w] = image.transpose(2, 0, 1)
        out = self._session.run(None, {self._input: blob})
        cls, obj, bbox, kps = ([out[self._order[3 * k + i]][0] for i in range(3)]
                               for k in range(4))
        found = []
        for i, s in enumerate(STRIDES):
            score = np.sqrt(np.clip(cls[i][:, 0], 0, 1) * np.clip(obj[i][:, 0], 0, 1))
            keep = np.flatnonzero(score >= self.score_threshold)
            if not keep.size:
                continue
            cols, rows = (g[keep] for g in self._grid(pad_w, pad_h)[i])
            b = bbox[i][keep]
            size = np.exp(b[:, 2:4]) * s
            centre = np.stack([cols + b[:, 0], rows + b[:, 1]], 1) * s
            k = kps[i][keep].reshape(-1, 5, 2)
            marks = (k + np.stack([cols, rows], 1)[:, None, :]) * s
            found.append(np.hstack([centre - size / 2, size, marks.reshape(-1, 10),
                                    score[keep, None]]).astype(np.float32))
        if not found:
            return None
        faces = np.vstack(found)
        if len(faces) > 1:
            boxes = [tuple(int(v) for v in row[:4]) for row in faces]
            kept = cv2.dnn.NMSBoxes(boxes, faces[:, 14].tolist(), self.score_threshold,
                                    self.nms_threshold, 1.0, self.top_k)
            faces = faces[np.asarray(kept, dtype=np.int64).reshape(-1)]
        return faces
