"""Hostile image files, made on the fly (nothing binary is kept in the repository).

- :func:`png_bomb`: a valid PNG of ``width × height`` black pixels, compressed as far as zlib
  goes (1 × 64,000,000 is 124 KB; 8000 × 8000 is 62 KB), written a megabyte at a time.
- :func:`malformed_exif_jpeg`: a JPEG whose EXIF says "rotate 90°" (orientation 6) and whose
  Make tag was retagged 0x014E (still ASCII): ``ImageOps.exif_transpose`` raises
  ``struct.error`` on it.
- :func:`bad_dimensions_tiff`: a TIFF whose width is a FLOAT: PIL raises
  ``ValueError: Invalid dimensions`` while opening it.
"""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png_bomb(width: int, height: int, colour_type: int = 0) -> bytes:
    """A real PNG (8-bit; colour type 0 grey, 2 RGB, 6 RGBA) of zeros, highly compressed."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    row = 1 + width * channels  # the filter byte, then the samples
    per_block = max(1, (1 << 20) // row)
    block = b"\x00" * (row * per_block)
    packer = zlib.compressobj(9)
    parts = []
    left = height
    while left > 0:
        n = min(left, per_block)
        parts.append(packer.compress(block[: n * row]))
        left -= n
    parts.append(packer.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"".join(parts))
            + _chunk(b"IEND", b""))


def malformed_exif_jpeg(upright: Image.Image) -> bytes:
    """``upright`` stored turned a quarter (as a camera held sideways stores it), with EXIF
    orientation 6 — so only a reader that honours the orientation sees it upright — and the
    Make tag's id changed to 0x014E."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Canon"
    raw = exif.tobytes()
    order = "<" if raw[6:8] == b"II" else ">"
    broken = raw.replace(struct.pack(f"{order}HH", 0x010F, 2),
                         struct.pack(f"{order}HH", 0x014E, 2))
    assert broken != raw
    stored = upright.convert("RGB").transpose(Image.Transpose.ROTATE_90)
    out = io.BytesIO()
    stored.save(out, "JPEG", quality=92, exif=broken)
    return out.getvalue()


def bad_dimensions_tiff() -> bytes:
    """A small TIFF whose ImageWidth tag is a FLOAT (type 11) instead of an integer."""
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 20, 30)).save(out, "TIFF")
    data = bytearray(out.getvalue())
    at = data.find(struct.pack("<HH", 256, 4))  # ImageWidth, LONG
    if at < 0:
        at = data.find(struct.pack("<HH", 256, 3))  # ImageWidth, SHORT
    assert at >= 0
    data[at + 2:at + 4] = struct.pack("<H", 11)
    data[at + 4:at + 8] = struct.pack("<I", 1)
    data[at + 8:at + 12] = struct.pack("<f", 16.0)
    return bytes(data)
