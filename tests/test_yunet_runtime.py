"""YuNet on ONNX Runtime (the default) finds the same faces as OpenCV's ``FaceDetectorYN``:
same count, boxes, landmarks and scores, on real photos at several sizes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from openlfr.vision.detect import YuNetDetector
from openlfr.vision.imageio import as_image, load_image


@pytest.fixture(scope="module")
def both() -> tuple[YuNetDetector, YuNetDetector]:
    return YuNetDetector(runtime="onnxruntime"), YuNetDetector(runtime="opencv")


def test_auto_is_onnxruntime_and_copies_keep_it() -> None:
    detector = YuNetDetector()
    assert detector.runtime == "onnxruntime"
    assert detector.copy().runtime == "onnxruntime"
    assert YuNetDetector(runtime="opencv").copy().runtime == "opencv"
    with pytest.raises(ValueError, match="unknown"):
        YuNetDetector(runtime="gpu")


@pytest.mark.parametrize("size", [None, (640, 352), (333, 250), (1000, 700)])
def test_same_faces_as_opencv(both: tuple[YuNetDetector, YuNetDetector],
                              face_images: dict[str, Path],
                              size: tuple[int, int] | None) -> None:
    ort_det, cv_det = both
    seen = 0
    for name in ("group", "obama", "biden", "obama2"):
        image = load_image(face_images[name])
        if size is not None:  # sides that are not multiples of 32 are padded, as OpenCV does
            image = as_image(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
        a, b = ort_det.detect(image), cv_det.detect(image)
        assert len(a) == len(b), (name, size)
        for x, y in zip(a, b, strict=True):
            assert np.allclose(x.box, y.box, atol=0.05), (name, x.box, y.box)
            assert np.allclose(x.landmarks, y.landmarks, atol=0.05)
            assert abs(x.score - y.score) < 1e-3
        seen += len(a)
    assert seen >= 8  # most of the six in the group photo (at any size), one a portrait


def test_no_face(both: tuple[YuNetDetector, YuNetDetector]) -> None:
    blank = np.full((360, 640, 3), 127, np.uint8)
    assert both[0].detect(blank) == [] == both[1].detect(blank)
