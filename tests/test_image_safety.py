"""The image decoder against hostile files: broken metadata, broken headers, pixel bombs, and
random or mutated bytes (``hypothesis``). Every failure is one :class:`ImageError` naming the
reason; no file makes the decoder use more than its budget."""

from __future__ import annotations

import io
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from openlfr.vision import get_engine, imageio
from openlfr.vision.imageio import (
    MAX_PIXELS,
    MAX_SIDE,
    DecodeGate,
    ImageBusy,
    ImageError,
    decode_image,
    load_image,
    probe_image,
)
from tests.hostile import bad_dimensions_tiff, malformed_exif_jpeg, png_bomb

# PIL warns about the broken metadata these files are made of: expected here
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning",
                                        "ignore::PIL.Image.DecompressionBombWarning")


def test_malformed_exif_is_read_and_its_orientation_honoured(face_images: dict[str, Path]
                                                             ) -> None:
    upright = Image.open(face_images["obama"])
    data = malformed_exif_jpeg(upright)
    with pytest.raises(Exception) as crash:  # what the old decoder called, and crashed on
        ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    assert not isinstance(crash.value, ImageError)
    image = decode_image(data, "sideways.jpg")
    assert image.shape[:2] == (upright.height, upright.width)  # turned back upright
    faces = get_engine().detect(image)
    assert len(faces) == 1 and faces[0].score > 0.9


def test_a_tiff_with_invalid_dimensions_is_an_image_error() -> None:
    with pytest.raises(ImageError, match=r"bad\.tif: corrupt or truncated image \(Invalid "
                                         r"dimensions\)"):
        decode_image(bad_dimensions_tiff(), "bad.tif")
    with pytest.raises(ImageError, match="corrupt"):
        probe_image(bad_dimensions_tiff(), "bad.tif")


@pytest.mark.parametrize(("width", "height", "words"), [
    (1, 64_000_000, "too large: 1×64,000,000 pixels, more than the limit of 40,000,000"),
    (8000, 8000, "too large: 8,000×8,000 pixels"),
    (1000, 26000, "too elongated: 1,000×26,000 pixels, one side more than 20 times"),
])
def test_pixel_bombs_are_refused_from_the_header_at_once(width: int, height: int,
                                                         words: str) -> None:
    data = png_bomb(width, height)
    assert len(data) < 200_000
    started = time.perf_counter()
    with pytest.raises(ImageError, match=words):
        decode_image(data, "bomb.png")
    assert time.perf_counter() - started < 1.0
    with pytest.raises(ImageError, match=words):
        probe_image(data, "bomb.png")


def test_files_that_need_too_much_memory_to_decode_are_refused() -> None:
    # 40 MP is within the pixel budget, but a progressive 4:4:4 JPEG keeps every coefficient
    # (240 MB), and libwebp holds four full canvases of an 18 MP WebP
    big = Image.new("RGB", (7700, 5190), (90, 90, 90))
    out = io.BytesIO()
    big.save(out, "JPEG", progressive=True, subsampling=0)
    with pytest.raises(ImageError, match="too large to decode: a 7,700×5,190 progressive JPEG"):
        probe_image(out.getvalue(), "big.jpg")
    out = io.BytesIO()
    big.crop((0, 0, 4200, 4200)).save(out, "WEBP")
    with pytest.raises(ImageError, match=r"too large to decode: .* MB, more than the limit"):
        decode_image(out.getvalue(), "big.webp")


def test_large_images_are_decoded_at_reduced_size() -> None:
    # a 40 MP baseline JPEG is decoded at 1/4 (draft), not at full size and then scaled
    out = io.BytesIO()
    Image.new("RGB", (7700, 5190), (200, 30, 60)).save(out, "JPEG")
    image = decode_image(out.getvalue())
    assert image.shape == (1298, 1925, 3)
    assert abs(image[600, 900].astype(int) - [60, 30, 200]).max() < 8  # BGR
    # a PNG is reduced over whole-number boxes, band by band, to at most MAX_SIDE a side
    grey = png_bomb(6300, 6300)  # 39.7 MP of black, 150 KB
    image = decode_image(grey)
    assert image.shape == (2100, 2100, 3) and int(image.max()) == 0
    # and the orientation is applied to the reduced picture
    tall = Image.new("RGB", (4000, 1000), (0, 0, 255))
    tall.paste((0, 255, 0), (0, 0, 100, 1000))  # a green band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: rotate 90° clockwise to view
    out = io.BytesIO()
    tall.save(out, "PNG", exif=exif.tobytes())
    image = decode_image(out.getvalue())
    assert image.shape == (2000, 500, 3)
    assert image[10, 250].tolist() == [0, 255, 0]  # the green band is now on top


def test_decoding_is_bounded_by_slots_and_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    gate = DecodeGate(slots=2, memory=100)
    assert gate.acquire(40, timeout=0.1) and gate.acquire(40, timeout=0.1)
    assert not gate.acquire(1, timeout=0.05)  # no third slot
    gate.release(40)
    assert not gate.acquire(70, timeout=0.05)  # a slot, but not the memory
    assert gate.acquire(60, timeout=0.05)
    gate.release(60)
    # a decode waits for room, and proceeds when it comes
    waited: list[float] = []

    def late() -> None:
        started = time.perf_counter()
        assert gate.acquire(90, timeout=5)
        waited.append(time.perf_counter() - started)
        gate.release(90)

    thread = threading.Thread(target=late)
    thread.start()
    time.sleep(0.2)
    gate.release(40)
    thread.join(5)
    assert waited and waited[0] >= 0.15
    # the process-wide gate: when it stays full, a decode gives up and says "busy"
    monkeypatch.setattr(imageio, "GATE", DecodeGate(slots=1, memory=imageio.DECODE_MEMORY))
    monkeypatch.setattr(imageio, "DECODE_WAIT", 0.1)
    assert imageio.GATE.acquire(1, timeout=0.1)
    out = io.BytesIO()
    Image.new("RGB", (64, 64)).save(out, "PNG")
    with pytest.raises(ImageBusy, match="busy: 1 images are being decoded"):
        decode_image(out.getvalue())
    imageio.GATE.release(1)
    assert decode_image(out.getvalue()).shape == (64, 64, 3)


def test_pil_limit_agrees_with_ours(tmp_path: Path) -> None:
    assert Image.MAX_IMAGE_PIXELS == MAX_PIXELS
    path = tmp_path / "huge.png"
    path.write_bytes(png_bomb(9000, 9000))  # beyond twice the limit: PIL refuses at open
    with pytest.raises(ImageError, match="too large"):
        load_image(path)
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.png")


# -- properties: random and mutated bytes -------------------------------------------------------

def _samples() -> list[bytes]:
    """Small real images of every format we take, some with EXIF (where parsers are weakest)."""
    rng = np.random.default_rng(7)
    pixels = Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Make"
    out: list[bytes] = []
    for fmt, kw in [("JPEG", {"exif": exif.tobytes()}), ("JPEG", {"progressive": True}),
                    ("PNG", {}), ("PNG", {"exif": exif.tobytes()}), ("WEBP", {}),
                    ("BMP", {}), ("TIFF", {}), ("TIFF", {"compression": "tiff_deflate"})]:
        buf = io.BytesIO()
        pixels.save(buf, fmt, **kw)
        out.append(buf.getvalue())
    buf = io.BytesIO()
    pixels.convert("P").save(buf, "PNG")
    out.append(buf.getvalue())
    return out


SAMPLES = _samples()


def _check(data: bytes) -> None:
    """Either a picture within the budget, or an ImageError; never anything else."""
    try:
        image = decode_image(data, "fuzzed")
    except ImageError as exc:
        assert str(exc).startswith("fuzzed: ") and exc.detail
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert max(image.shape[:2]) <= MAX_SIDE
    header = probe_image(data, "fuzzed")
    assert header.width * header.height <= MAX_PIXELS


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 8))):
        # most of the parsing happens in the first few hundred bytes: aim there mostly
        limit = draw(st.sampled_from([min(len(data), 512), len(data)]))
        at = draw(st.integers(0, limit - 1))
        op = draw(st.sampled_from(["set", "insert", "delete", "truncate"]))
        if op == "set":
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and len(data) > 8:
            del data[at:at + draw(st.integers(1, 8))]
        elif op == "truncate" and at > 8:
            del data[at:]
    return bytes(data)


#: Tags the decoders act on: size, layout, strips, orientation, the EXIF and GPS pointers, and
#: the Make tag and its neighbour 0x014E (a SHORT where Make is ASCII).
TAGS = [256, 257, 258, 259, 262, 273, 274, 277, 278, 279, 284, 0x010F, 0x014E, 0x0112,
        0x8769, 0x8825, 0xA005]


def _ifd_entries(data: bytes) -> tuple[str, list[int]]:
    """The byte order and the offsets of the first IFD's entries of the TIFF structure in
    ``data`` (a TIFF file, or the EXIF block inside a JPEG, PNG or WebP)."""
    for magic, order in ((b"II*\x00", "<"), (b"MM\x00*", ">")):
        base = data.find(magic)
        if base < 0:
            continue
        ifd = base + struct.unpack(f"{order}I", data[base + 4:base + 8])[0]
        if ifd + 2 > len(data):
            continue
        count = struct.unpack(f"{order}H", data[ifd:ifd + 2])[0]
        entries = [ifd + 2 + 12 * i for i in range(min(count, 64))
                   if ifd + 14 + 12 * i <= len(data)]
        if entries:
            return order, entries
    return "<", []


@st.composite
def retagged(draw: st.DrawFn) -> bytes:
    """A real image whose TIFF/EXIF entries are given other tags, types, counts or values —
    how the malformed EXIF and the "Invalid dimensions" TIFF were found."""
    data = bytearray(draw(st.sampled_from([d for d in SAMPLES if _ifd_entries(d)[1]])))
    order, entries = _ifd_entries(bytes(data))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.sampled_from(entries))
        field = draw(st.sampled_from(["tag", "type", "count", "value"]))
        if field == "tag":
            data[at:at + 2] = struct.pack(f"{order}H", draw(st.sampled_from(TAGS)))
        elif field == "type":
            data[at + 2:at + 4] = struct.pack(f"{order}H", draw(st.integers(0, 13)))
        elif field == "count":
            count = draw(st.sampled_from([0, 1, 2, 3, 4, 255, 65535, 2**31, 2**32 - 1]))
            data[at + 4:at + 8] = struct.pack(f"{order}I", count)
        else:
            data[at + 8:at + 12] = draw(st.binary(min_size=4, max_size=4))
    return bytes(data)


FUZZ = settings(max_examples=250, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(mutated())
def test_mutated_images_decode_or_fail_cleanly(data: bytes) -> None:
    _check(data)


@FUZZ
@given(retagged())
def test_retagged_metadata_decodes_or_fails_cleanly(data: bytes) -> None:
    _check(data)


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_fail_cleanly(data: bytes) -> None:
    _check(data)


@FUZZ
@given(st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"II*\x00", b"MM\x00*",
                        b"BM", b"RIFF\x00\x00\x00\x00WEBPVP8 "]),
       st.binary(max_size=1024))
def test_a_valid_signature_then_garbage_fails_cleanly(magic: bytes, rest: bytes) -> None:
    _check(magic + rest)
