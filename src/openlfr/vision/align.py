"""Face alignment: a similarity transform of the 5 landmarks onto a canonical template."""

from __future__ import annotations

import cv2
import numpy as np

from openlfr.vision.imageio import ImageArray, as_image

#: The canonical 5-point template for a 112×112 crop (ArcFace / SFace convention), in the
#: order right eye, left eye, nose tip, right mouth corner, left mouth corner.
TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)


def similarity_matrix(landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """The 2×3 similarity transform taking ``landmarks`` onto the template at ``size``."""
    dst = TEMPLATE_112 * (size / 112.0)
    matrix, _ = cv2.estimateAffinePartial2D(
        np.asarray(landmarks, dtype=np.float32), dst, method=cv2.LMEDS
    )
    if matrix is None:
        raise ValueError("landmarks are degenerate; cannot align this face")
    return matrix


def align(image: ImageArray, landmarks: np.ndarray, size: int = 112) -> ImageArray:
    """Crop and rotate one face to a ``size``×``size`` canonical view."""
    matrix = similarity_matrix(landmarks, size)
    return as_image(cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR))
