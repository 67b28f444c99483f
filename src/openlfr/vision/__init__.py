"""Pixels to faces: detect, align, measure quality, embed. Knows nothing of people or storage."""

from openlfr.vision.engine import FaceEngine, get_engine
from openlfr.vision.imageio import ImageError, load_image
from openlfr.vision.registry import ModelError
from openlfr.vision.types import Candidate, Face, Quality, Template

__all__ = [
    "Candidate",
    "Face",
    "FaceEngine",
    "ImageError",
    "ModelError",
    "Quality",
    "Template",
    "get_engine",
    "load_image",
]
