"""Face quality: size, inter-ocular distance, sharpness, pose from landmarks, exposure.

Each measure that fails a policy yields a named reason, so an operator can tell *why* a photo
was refused (``too_small``, ``blurry``, ``pose_yaw`` …) rather than just that it was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from openlfr.vision.imageio import ImageArray, as_image
from openlfr.vision.types import Face, Quality

#: Nose-tip depth in front of the eye line, as a fraction of the inter-ocular distance (an
#: average adult face); turns the nose's sideways offset into a yaw angle.
NOSE_DEPTH = 0.6
#: Where the nose tip sits between the eye line (0) and the mouth line (1) in a frontal face.
NOSE_HEIGHT_FRONTAL = 0.5
SHARPNESS_SIZE = 112
#: Face width (pixels) beyond which size no longer improves a template: the embedder sees 112x112.
SIZE_SATURATION = 160.0
#: Laplacian variance (on a 112-pixel-wide face) beyond which a face counts as fully sharp.
SHARPNESS_SATURATION = 60.0


@dataclass(frozen=True)
class QualityPolicy:
    name: str
    min_face_width: float
    min_inter_ocular: float
    min_sharpness: float
    max_yaw: float
    max_pitch: float
    max_roll: float
    min_brightness: float
    max_brightness: float
    min_contrast: float


#: Enrolment photos must be good: they are what every live face is compared with.
ENROLMENT = QualityPolicy(
    name="enrolment",
    min_face_width=48,
    min_inter_ocular=20,
    min_sharpness=15,
    max_yaw=35,
    max_pitch=30,
    max_roll=30,
    min_brightness=40,
    max_brightness=225,
    min_contrast=12,
)

#: Live probes: looser, since the best shot of a track is chosen among many frames.
LIVE = QualityPolicy(
    name="live",
    min_face_width=32,
    min_inter_ocular=14,
    min_sharpness=8,
    max_yaw=45,
    max_pitch=35,
    max_roll=40,
    min_brightness=30,
    max_brightness=235,
    min_contrast=8,
)

POLICIES = {p.name: p for p in (ENROLMENT, LIVE)}


def estimate_pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """Yaw, pitch and roll in degrees, estimated from the 5 landmarks.

    Roll is the angle of the eye line. The face is then de-rotated; yaw comes from how far the
    nose tip sits beside the eyes' midpoint, pitch from where it sits between eyes and mouth.
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    right_eye, left_eye, nose, mouth_r, mouth_l = pts
    dx, dy = left_eye - right_eye
    roll = math.degrees(math.atan2(dy, dx))
    c, s = math.cos(-math.radians(roll)), math.sin(-math.radians(roll))
    rot = np.array([[c, -s], [s, c]])
    eye_mid = (right_eye + left_eye) / 2.0
    mouth_mid = (mouth_r + mouth_l) / 2.0
    nose_r = rot @ (nose - eye_mid)
    mouth_r_ = rot @ (mouth_mid - eye_mid)
    iod = max(float(np.hypot(dx, dy)), 1e-6)
    yaw = math.degrees(math.atan(nose_r[0] / (NOSE_DEPTH * iod)))
    span = max(float(mouth_r_[1]), 1e-6)
    pitch_ratio = nose_r[1] / span - NOSE_HEIGHT_FRONTAL
    pitch = math.degrees(math.atan(pitch_ratio * span / (NOSE_DEPTH * iod)))
    return yaw, pitch, roll


def _face_patch(image: ImageArray, face: Face) -> np.ndarray:
    h, w = image.shape[:2]
    x, y, bw, bh = face.box
    x0, y0 = max(int(x), 0), max(int(y), 0)
    x1, y1 = min(int(x + bw), w), min(int(y + bh), h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return np.zeros((2, 2), dtype=np.uint8)
    patch = image[y0:y1, x0:x1]
    if patch.ndim == 3:
        patch = as_image(cv2.cvtColor(patch, cv2.COLOR_BGR2GRAY))
    return patch


def measure(image: ImageArray, face: Face, policy: QualityPolicy = ENROLMENT) -> Quality:
    """Measure one face's quality and list every reason it fails ``policy``."""
    patch = _face_patch(image, face)
    scale = SHARPNESS_SIZE / max(patch.shape[1], 1)
    norm = cv2.resize(patch, (SHARPNESS_SIZE, max(int(patch.shape[0] * scale), 1)))
    sharpness = float(cv2.Laplacian(norm, cv2.CV_64F).var())
    brightness = float(patch.mean())
    contrast = float(patch.std())
    iod = float(np.linalg.norm(face.landmarks[1] - face.landmarks[0]))
    yaw, pitch, roll = estimate_pose(face.landmarks)
    width = float(face.box[2])

    reasons: list[str] = []
    if width < policy.min_face_width:
        reasons.append(f"too_small: face {width:.0f} px wide, need {policy.min_face_width:.0f}")
    if iod < policy.min_inter_ocular:
        reasons.append(
            f"eyes_too_close: inter-ocular {iod:.0f} px, need {policy.min_inter_ocular:.0f}"
        )
    if sharpness < policy.min_sharpness:
        reasons.append(f"blurry: sharpness {sharpness:.0f}, need {policy.min_sharpness:.0f}")
    if abs(yaw) > policy.max_yaw:
        reasons.append(f"pose_yaw: turned {yaw:+.0f}°, limit ±{policy.max_yaw:.0f}°")
    if abs(pitch) > policy.max_pitch:
        reasons.append(f"pose_pitch: tilted {pitch:+.0f}°, limit ±{policy.max_pitch:.0f}°")
    if abs(roll) > policy.max_roll:
        reasons.append(f"pose_roll: rolled {roll:+.0f}°, limit ±{policy.max_roll:.0f}°")
    if brightness < policy.min_brightness:
        reasons.append(f"underexposed: brightness {brightness:.0f}")
    elif brightness > policy.max_brightness:
        reasons.append(f"overexposed: brightness {brightness:.0f}")
    if contrast < policy.min_contrast:
        reasons.append(f"low_contrast: contrast {contrast:.0f}")
    return Quality(
        face_width=width,
        inter_ocular=iod,
        sharpness=sharpness,
        yaw=yaw,
        pitch=pitch,
        roll=roll,
        brightness=brightness,
        contrast=contrast,
        reasons=tuple(reasons),
    )


def template_weight(face: Face, quality: Quality) -> float:
    """How much a face's template is worth, from 0 to 1: size x sharpness x frontality x
    detector confidence (each saturating). It ranks a track's shots (the best shot), weighs
    the shots fused into one track template, and picks a subject's best enrolment image."""
    size = min(face.width, SIZE_SATURATION) / SIZE_SATURATION
    sharp = min(quality.sharpness / SHARPNESS_SATURATION, 1.0)
    frontal = max(math.cos(math.radians(quality.yaw)), 0.0) * max(
        math.cos(math.radians(quality.pitch)), 0.0)
    return size * (0.5 + 0.5 * sharp) * frontal * frontal * max(face.score, 0.0)
