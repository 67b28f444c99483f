"""Reading images safely: clear errors for missing, corrupt, truncated or oversized files, and a
bounded amount of memory for any file, however hostile.

Every image goes through one decoder (:func:`decode_image`, :func:`load_image`):

1. **Header first.** The file is opened lazily (only JPEG, PNG, WebP, BMP and TIFF; a WebP's
   size is read from its bytes, because PIL's WebP plugin decodes as soon as it opens) and its
   dimensions are checked before a single pixel is decoded: at most :data:`MAX_PIXELS` pixels,
   no side longer than :data:`MAX_ASPECT` times the other, and an estimate of the memory the
   decoder needs within :data:`DECODE_MEMORY`. A refusal names the reason (``too large``,
   ``too elongated``, ``needs about … MB to decode``).
2. **Reduced size.** A JPEG larger than :data:`MAX_SIDE` pixels a side is decoded at 1/2, 1/4
   or 1/8 of its size (``Image.draft``); any image is then scaled so that its longer side is at
   most :data:`MAX_SIDE` — face detection works at 1280 pixels, so nothing is lost.
3. **Bounded.** At most :data:`DECODE_SLOTS` decodes run at once and their estimated memory
   together stays within :data:`DECODE_MEMORY`; a decode waits for room up to
   :data:`DECODE_WAIT` seconds, then gives up with :class:`ImageBusy`. Afterwards the freed
   memory is given back to the system (:func:`release_memory`).
4. **One error.** Whatever the decoder raises on a broken file (PIL raises many types) becomes
   :class:`ImageError` naming the file and the reason. Broken metadata does not make a picture
   unreadable: an EXIF block that cannot be parsed is ignored (its orientation too).
"""

from __future__ import annotations

import ctypes
import io
import logging
import math
import struct
import threading
import time
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import cv2
import numpy as np
import numpy.typing as npt
from PIL import ExifTags, Image

from openlfr import errors

ImageArray = npt.NDArray[np.uint8]


def as_image(array: npt.NDArray[Any]) -> ImageArray:
    """An OpenCV result on 8-bit input, typed as what it is (OpenCV's stubs say "any number
    type"). No copy, no conversion."""
    return cast(ImageArray, array)

#: Images larger than this many pixels are refused (decompression bombs).
MAX_PIXELS = 40_000_000
#: The longer side may be at most this many times the shorter one.
MAX_ASPECT = 20
#: Decoded images are scaled so that their longer side is at most this many pixels.
MAX_SIDE = 3072
#: Memory (bytes) that image decoding may use at once, all decodes together; one image that
#: would need more is refused.
DECODE_MEMORY = 256 * 1024 * 1024
#: Decodes that may run at once (in the whole process).
DECODE_SLOTS = 2
#: Seconds a decode waits for its turn before giving up (:class:`ImageBusy`).
DECODE_WAIT = 30.0

#: Image files larger than this are refused before they are read.
MAX_FILE_BYTES = 64 * 1024 * 1024
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
#: The PIL formats we open (a multi-picture JPEG from a camera opens as JPEG, format "MPO").
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF")

# PIL's own limit agrees with ours: it raises DecompressionBombError above twice this, before
# our check could run; between the two we refuse with a named reason, so its warning is noise.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
# Broken metadata in a file makes PIL warn ("Corrupt EXIF data", "Truncated File Read"): the
# file is either decoded or refused with a clear error; the warnings only add noise.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
# PIL also logs some refusals before raising them: they reach the application's log handlers,
# but are not printed on their own (beside the one-line error) where none are configured.
logging.getLogger("PIL").addHandler(logging.NullHandler())

#: What PIL, its codecs and OpenCV raise on broken or hostile files: OSError (truncated data,
#: UnidentifiedImageError), ValueError ("Invalid dimensions"), struct.error, SyntaxError,
#: IndexError, TypeError and KeyError from the parsers of corrupt headers and metadata,
#: DecompressionBombError (its own class), MemoryError from an allocation the checks above did
#: not foresee. Anything else is a bug of ours, and is not hidden as the file's fault.
DECODE_FAILURES: tuple[type[BaseException], ...] = (
    OSError, ValueError, TypeError, SyntaxError, struct.error, IndexError, KeyError,
    EOFError, ZeroDivisionError, OverflowError, MemoryError, zlib.error,
    Image.DecompressionBombError, cv2.error,
)

_ORIENTATION = ExifTags.Base.Orientation
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
#: Full-size buffers a decoder holds at its peak, counting the image itself (measured):
#: libtiff's strips, libwebp's canvases and frame copy, PIL's BMP run-length decoder's bytes.
_BUFFERS = {"TIFF": 2, "WEBP": 4, "BMP": 3}


class ImageError(errors.InvalidInput):
    """An image file could not be used: ``"<label>: <detail>"``, the detail starting with the
    reason (``too large``, ``too elongated``, ``corrupt or truncated image``, …)."""

    def __init__(self, label: str, detail: str) -> None:
        super().__init__(f"{label}: {detail}")
        self.label = label
        self.detail = detail

    def __reduce__(self) -> tuple[type[ImageError], tuple[str, str]]:  # across processes
        return type(self), (self.label, self.detail)


class ImageBusy(errors.Unavailable):
    """Too many images are being decoded at once: try again in a moment (not the file's
    fault; the web answers 503)."""

    def __init__(self, message: str = "", retry_after: int | None = 10) -> None:
        super().__init__(message, retry_after)


@dataclass(frozen=True, slots=True)
class ImageHeader:
    """What an image's header says, checked; ``memory`` is the decoder's estimated need."""

    format: str
    width: int
    height: int
    mode: str
    memory: int


# -- the gate: at most DECODE_SLOTS decodes within DECODE_MEMORY ------------------------------

class DecodeGate:
    """Admits a decode when a slot is free and its memory fits beside the running ones."""

    def __init__(self, slots: int, memory: int) -> None:
        self.slots = slots
        self.memory = memory
        self._running = 0
        self._used = 0
        self._cond = threading.Condition()

    def acquire(self, need: int, timeout: float) -> bool:
        need = min(need, self.memory)
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._running >= self.slots or self._used + need > self.memory:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            self._running += 1
            self._used += need
            return True

    def release(self, need: int) -> None:
        need = min(need, self.memory)
        with self._cond:
            self._running -= 1
            self._used -= need
            self._cond.notify_all()

    @property
    def running(self) -> int:
        return self._running


GATE = DecodeGate(DECODE_SLOTS, DECODE_MEMORY)


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc
        return None


_TRIM = _malloc_trim()


def release_memory() -> None:
    """Return freed memory to the system (glibc; elsewhere nothing). glibc keeps what the
    threads' arenas freed for reuse, so successive large decodes (and face detection on their
    pictures) on different threads would ratchet the process's resident memory up by hundreds
    of megabytes; trimming after each keeps a peak a peak. Takes a few milliseconds."""
    if _TRIM is not None:
        _TRIM(0)


# -- header checks ------------------------------------------------------------------------------

def _bytes_per_pixel(mode: str) -> int:
    """PIL's storage per pixel: 1 for 1/L/P, 2 for I;16, 4 for everything else."""
    if mode in ("1", "L", "P"):
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4


def _draft_size(width: int, height: int) -> tuple[int, int] | None:
    """The size to ask a JPEG decoder for, so it decodes at the largest reduction (1/2, 1/4,
    1/8) that still keeps the longer side at least half of :data:`MAX_SIDE`."""
    longer = max(width, height)
    if longer <= MAX_SIDE:
        return None
    t = (MAX_SIDE / 2) / longer
    return max(1, math.ceil(width * t)), max(1, math.ceil(height * t))


def _factor(width: int, height: int) -> int:
    """The whole-number reduction that brings the longer side within :data:`MAX_SIDE`."""
    return max(1, math.ceil(max(width, height) / MAX_SIDE))


def _shrunk_size(width: int, height: int) -> tuple[int, int]:
    f = _factor(width, height)
    return math.ceil(width / f), math.ceil(height / f)


def _check_dimensions(width: int, height: int, label: str) -> None:
    if width < 1 or height < 1:
        raise ImageError(label, f"corrupt image: it claims {width}×{height} pixels")
    if width * height > MAX_PIXELS:
        raise ImageError(label, f"too large: {width:,}×{height:,} pixels, more than the limit "
                                f"of {MAX_PIXELS:,}")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise ImageError(label, f"too elongated: {width:,}×{height:,} pixels, one side more "
                                f"than {MAX_ASPECT} times the other")


def _check_memory(memory: int, width: int, height: int, kind: str, mode: str,
                  label: str) -> None:
    if memory > DECODE_MEMORY:
        raise ImageError(label, f"too large to decode: a {width:,}×{height:,} {kind} "
                                f"({mode}) needs about {memory / 1e6:,.0f} MB, more than "
                                f"the limit of {DECODE_MEMORY / 1e6:,.0f} MB; save it at a "
                                "smaller size or as an ordinary JPEG")


def _check_header(img: Image.Image, label: str) -> ImageHeader:
    width, height = img.size
    _check_dimensions(width, height, label)
    fmt = img.format or "?"
    draft = _draft_size(width, height) if fmt in ("JPEG", "MPO") else None
    fmt = "JPEG" if fmt == "MPO" else fmt
    scale = 1 if draft is None else _draft_scale(width, height, draft)
    dw, dh = math.ceil(width / scale), math.ceil(height / scale)
    memory = dw * dh * _bytes_per_pixel(img.mode) * _BUFFERS.get(fmt, 1)
    kind = fmt
    if fmt == "JPEG" and ("progressive" in img.info or "progression" in img.info):
        # libjpeg keeps every coefficient of a progressive file (2 bytes), at full size
        memory += int(width * height * _jpeg_samples_per_pixel(img) * 2)
        kind = "progressive JPEG"
    sw, sh = _shrunk_size(dw, dh)
    memory += sw * sh * 4 * 2  # the reduced copy and its conversion
    _check_memory(memory, width, height, kind, img.mode, label)
    return ImageHeader(fmt, width, height, img.mode, memory)


def _webp_size(head: bytes) -> tuple[int, int] | None:
    """A WebP's canvas size from its first 30 bytes; None if the file is not a WebP."""
    if head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return None
    chunk = head[12:16]
    if chunk == b"VP8X" and len(head) >= 30:
        return (int.from_bytes(head[24:27], "little") + 1,
                int.from_bytes(head[27:30], "little") + 1)
    if chunk == b"VP8 " and len(head) >= 30 and head[23:26] == b"\x9d\x01\x2a":
        return (int.from_bytes(head[26:28], "little") & 0x3FFF,
                int.from_bytes(head[28:30], "little") & 0x3FFF)
    if chunk == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    raise ValueError("a WebP file whose size cannot be read")


def _early_header(head: bytes, label: str) -> ImageHeader | None:
    """The header of a file that PIL would not open lazily: its WebP plugin runs libwebp's
    decoder, and allocates its canvases, as soon as the file is opened. Checked from the
    bytes, before PIL sees them."""
    size = _webp_size(head)
    if size is None:
        return None
    width, height = size
    _check_dimensions(width, height, label)
    sw, sh = _shrunk_size(width, height)
    memory = width * height * 4 * _BUFFERS["WEBP"] + sw * sh * 4 * 2
    _check_memory(memory, width, height, "WEBP", "RGBA", label)
    return ImageHeader("WEBP", width, height, "RGBA", memory)


def _jpeg_samples_per_pixel(img: Image.Image) -> float:
    """Samples per pixel over a JPEG's components (1.5 for the usual 4:2:0, 3 for 4:4:4)."""
    layers = getattr(img, "layer", None) or []
    factors = [(int(h), int(v)) for _, h, v, _ in layers if int(h) > 0 and int(v) > 0]
    if not factors:
        return float(len(img.getbands()))
    hmax = max(h for h, _ in factors)
    vmax = max(v for _, v in factors)
    return sum(h * v for h, v in factors) / (hmax * vmax)


def _draft_scale(width: int, height: int, size: tuple[int, int]) -> int:
    """The reduction a JPEG decoder picks for ``size`` (as ``JpegImageFile.draft`` does)."""
    scale = min(width // size[0], height // size[1])
    return next(s for s in (8, 4, 2, 1) if scale >= s)


def _open(source: str | Path | IO[bytes]) -> Image.Image:
    return Image.open(source, formats=FORMATS)


def _failure(label: str, exc: BaseException) -> ImageError:
    if isinstance(exc, Image.UnidentifiedImageError):
        return ImageError(label, "not an image file, or an unsupported format (JPEG, PNG, "
                                 "WebP, BMP or TIFF)")
    if isinstance(exc, Image.DecompressionBombError):
        return ImageError(label, f"too large: more than the limit of {MAX_PIXELS:,} pixels "
                                 f"({' '.join(str(exc).split())[:120]})")
    if isinstance(exc, OSError) and exc.errno is not None:  # the file system, not the file
        return ImageError(label, f"cannot read it ({exc.strerror or exc})")
    if isinstance(exc, MemoryError):
        return ImageError(label, "too large: not enough memory to decode it")
    detail = " ".join(str(exc).split())[:200] or type(exc).__name__
    return ImageError(label, f"corrupt or truncated image ({detail})")


# -- decoding -----------------------------------------------------------------------------------

def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1–8), or 1 when there is none or the metadata is broken."""
    try:
        value = img.getexif().get(_ORIENTATION, 1)
    except DECODE_FAILURES:
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


def _reducible(band: Image.Image) -> Image.Image:
    """A mode ``Image.reduce`` takes: 1 → L, P → RGB(A), I;16 → I."""
    if band.mode == "1":
        return band.convert("L")
    if band.mode in ("P", "PA"):
        return band.convert("RGBA" if band.mode == "PA" or "transparency" in band.info
                            else "RGB")
    if band.mode.startswith("I;16"):
        return band.convert("I")
    return band


def _shrink(img: Image.Image) -> Image.Image:
    """``img`` with its longer side at most :data:`MAX_SIDE`: averaged over whole-number
    boxes, one band of rows at a time, so that no second full-size copy is ever made (PIL's
    own resize keeps an intermediate image, and premultiplies alpha in a full copy)."""
    width, height = img.size
    f = _factor(width, height)
    if f == 1:
        return img
    rows = f * max(1, (4 * 1024 * 1024) // max(1, width * 4))  # bands of about 4 MB
    out: Image.Image | None = None
    for top in range(0, height, rows):
        part = _reducible(img.crop((0, top, width, min(top + rows, height)))).reduce(f)
        if out is None:
            out = Image.new(part.mode, _shrunk_size(width, height))
        out.paste(part, (0, top // f))
    assert out is not None
    return out


def _to_bgr(img: Image.Image) -> ImageArray:
    if img.mode.startswith("I;16"):
        grey = (np.asarray(img).astype(np.uint16, copy=False) >> 8).astype(np.uint8)
        return as_image(cv2.cvtColor(np.ascontiguousarray(grey), cv2.COLOR_GRAY2BGR))
    if img.mode in ("I", "F"):
        values = np.asarray(img, dtype=np.float32)
        top = float(values.max()) if values.size else 0.0
        if top > 255:  # 16-bit samples as 8 (or, beyond, scaled to the brightest)
            values = values * (255.0 / max(top, 65535.0))
        grey = np.clip(values, 0, 255).astype(np.uint8)
        return as_image(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))
    rgb = img if img.mode == "RGB" else img.convert("RGB")
    return as_image(cv2.cvtColor(np.asarray(rgb), cv2.COLOR_RGB2BGR))


def _decode_open(img: Image.Image, header: ImageHeader) -> ImageArray:
    if header.format in ("JPEG", "MPO"):
        size = _draft_size(header.width, header.height)
        if size is not None:
            img.draft(None, size)
    img.load()
    orientation = _orientation(img)
    small = _shrink(img)
    if small is not img:
        img.close()  # free the full-size pixels now
    method = _TRANSPOSE.get(orientation)
    if method is not None:
        small = small.transpose(method)
    return _to_bgr(small)


def _head(source: str | Path | IO[bytes]) -> bytes:
    if isinstance(source, str | Path):
        with open(source, "rb") as f:
            return f.read(64)
    head = source.read(64)
    source.seek(0)
    return head


def _within(header: ImageHeader, max_pixels: int | None, label: str) -> None:
    if max_pixels is not None and header.width * header.height > max_pixels:
        raise ImageError(label, f"too large: {header.width:,}×{header.height:,} pixels, more "
                                f"than the limit of {max_pixels:,}")


def _acquire(memory: int, label: str) -> int:
    if not GATE.acquire(memory, DECODE_WAIT):
        raise ImageBusy(f"{label}: busy: {GATE.running} images are being decoded; try again "
                        "in a moment")
    return memory


def _read(source: str | Path | IO[bytes], label: str, max_pixels: int | None) -> ImageArray:
    held: int | None = None
    try:
        early = _early_header(_head(source), label)
        if early is not None:
            _within(early, max_pixels, label)
            held = _acquire(early.memory, label)
        with _open(source) as img:
            header = _check_header(img, label)
            _within(header, max_pixels, label)
            if held is None:
                held = _acquire(header.memory, label)
            return _decode_open(img, header)
    except (ImageError, ImageBusy):
        raise
    except DECODE_FAILURES as exc:
        raise _failure(label, exc) from None
    finally:
        if held is not None:
            GATE.release(held)
            release_memory()


def probe_image(data: bytes, label: str = "upload") -> ImageHeader:
    """Check an image's header (format, size, shape, memory needed) without decoding it:
    :class:`ImageError` names what is wrong. Quick: nothing but the header is read."""
    try:
        early = _early_header(data[:64], label)
        if early is not None:
            return early
        with _open(io.BytesIO(data)) as img:
            return _check_header(img, label)
    except ImageError:
        raise
    except DECODE_FAILURES as exc:
        raise _failure(label, exc) from None


def load_image(path: str | Path, max_pixels: int | None = None) -> ImageArray:
    """Load an image file as a BGR uint8 array, honouring EXIF orientation, its longer side at
    most :data:`MAX_SIDE` pixels. Raises :class:`ImageError` (or :class:`ImageBusy`)."""
    path = Path(path)
    if not path.exists():
        raise ImageError(str(path), "no such file")
    if not path.is_file():
        raise ImageError(str(path), "not a file")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageError(str(path), f"cannot read it ({exc.strerror or exc})") from None
    if size > MAX_FILE_BYTES:
        raise ImageError(str(path), f"too large: {size:,} bytes, more than the limit of "
                                    f"{MAX_FILE_BYTES:,}")
    return _read(path, str(path), max_pixels)


def decode_image(data: bytes, label: str = "upload", max_pixels: int | None = None
                 ) -> ImageArray:
    """Decode image bytes (an upload) with the same checks as :func:`load_image`."""
    return _read(io.BytesIO(data), label, max_pixels)


def is_image_file(path: Path) -> bool:
    suffix_ok = path.suffix.lower() in IMAGE_SUFFIXES
    return suffix_ok and path.is_file() and not path.name.startswith(".")
