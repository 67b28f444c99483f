"""Reading images safely: clear errors for missing, corrupt, truncated or oversized files."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import IO

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

ImageArray = npt.NDArray[np.uint8]

#: Images larger than this many pixels are refused (decompression bombs).
MAX_PIXELS = 64_000_000
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


class ImageError(ValueError):
    """An image file could not be used; the message names the file and the reason."""


def _decode(source: Image.Image, label: str, max_pixels: int) -> ImageArray:
    width, height = source.size
    if width * height > max_pixels:
        raise ImageError(
            f"{label}: image is {width}×{height} pixels, more than the limit of {max_pixels:,}"
        )
    try:
        source.load()
        upright = ImageOps.exif_transpose(source) or source
        rgb = np.asarray(upright.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{label}: corrupt or truncated image ({exc})") from exc
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def _read(source: str | Path | IO[bytes], label: str, max_pixels: int) -> ImageArray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                return _decode(img, label, max_pixels)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{label}: image too large ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{label}: not an image file, or an unsupported format") from exc
    except OSError as exc:
        raise ImageError(f"{label}: cannot read image ({exc})") from exc


def load_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> ImageArray:
    """Load an image file as a BGR uint8 array, honouring EXIF orientation."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if not path.is_file():
        raise ImageError(f"{path}: not a file")
    return _read(path, str(path), max_pixels)


def decode_image(data: bytes, label: str = "upload", max_pixels: int = MAX_PIXELS) -> ImageArray:
    """Decode image bytes (an upload) with the same checks as :func:`load_image`."""
    return _read(io.BytesIO(data), label, max_pixels)


def is_image_file(path: Path) -> bool:
    suffix_ok = path.suffix.lower() in IMAGE_SUFFIXES
    return suffix_ok and path.is_file() and not path.name.startswith(".")
