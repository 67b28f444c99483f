"""Peak memory of the server while it takes hostile image uploads.

Runs the real server (``openlfr serve`` in a process of its own, on SQLite in a temporary data
directory), uploads images as an operator through the JSON API
(``POST /api/v1/watchlists/{id}/subjects``) and measures the server's peak resident memory for
each upload: the peak is reset before it (``/proc/PID/clear_refs``, Linux), and the figure is
``VmHWM`` after it minus ``VmRSS`` before it. A normal photo is measured in the same run as the
baseline; the target is that no upload under the size cap raises the peak by more than 300 MB.

    python benchmarks/bench_upload_memory.py                # every case, a table
    python benchmarks/bench_upload_memory.py --json out.json

The hostile files are made here (PIL, zlib); the normal photo is face_recognition's
``obama.jpg`` from ../shared/data (never copied), or the tests' cache of it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from PIL import Image

HERE = Path(__file__).resolve().parent
PHOTOS = [HERE.parent.parent / "shared" / "data" / "face_recognition_examples" / "obama.jpg",
          Path.home() / ".cache" / "openlfr-test" / "images" / "obama.jpg"]
PASSWORD = "correct horse battery staple"
REASON = "Warrant W-77 of the crown court, failing to appear at trial"
TARGET_MB = 300.0

sys.path.insert(0, str(HERE.parent))
from tests.hostile import png_bomb  # noqa: E402  (the tests' own hostile PNGs)

# -- hostile files ------------------------------------------------------------------------------

def pil_file(size: tuple[int, int], fmt: str, mode: str = "RGB", **kw: object) -> bytes:
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        out = io.BytesIO()
        Image.new(mode, size, (90,) * len(mode)).save(out, fmt, **kw)
        return out.getvalue()
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def phone_photo(photo: bytes) -> bytes:
    """The normal photo as a phone takes it: 4032 × 3024 (12 MP), JPEG quality 90."""
    picture = Image.open(io.BytesIO(photo)).convert("RGB")
    scale = 4032 / picture.width
    picture = picture.resize((4032, round(picture.height * scale)), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (4032, 3024), (128, 128, 128))
    canvas.paste(picture, (0, (3024 - picture.height) // 2))
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=90)
    return out.getvalue()


def cases(photo: bytes) -> list[tuple[str, Callable[[], bytes], int]]:
    """(name, how to make the file, how many uploads at once); the first is the baseline."""
    phone = phone_photo(photo)
    return [
        ("normal photo: 12 MP phone JPEG of obama.jpg", lambda: phone, 1),
        ("normal photo: obama.jpg as it is", lambda: photo, 1),
        ("PNG 1 × 64,000,000 grey", lambda: png_bomb(1, 64_000_000), 1),
        ("two of those at once", lambda: png_bomb(1, 64_000_000), 2),
        ("PNG 8000 × 8000 grey", lambda: png_bomb(8000, 8000), 1),
        ("PNG 6300 × 6300 RGB (39.7 MP, accepted)", lambda: png_bomb(6300, 6300, 2), 1),
        ("PNG 6300 × 6300 RGBA (39.7 MP, accepted)", lambda: png_bomb(6300, 6300, 6), 1),
        ("two RGBA 39.7 MP PNGs at once", lambda: png_bomb(6300, 6300, 6), 2),
        ("PNG 1414 × 28280 RGB (1:20, 40 MP)", lambda: png_bomb(1414, 28280, 2), 1),
        ("JPEG 7700 × 5190 baseline (40 MP)", lambda: pil_file((7700, 5190), "JPEG"), 1),
        ("JPEG 7700 × 5190 progressive 4:2:0", lambda: pil_file(
            (7700, 5190), "JPEG", progressive=True), 1),
        ("JPEG 7000 × 5000 progressive 4:4:4", lambda: pil_file(
            (7000, 5000), "JPEG", progressive=True, subsampling=0), 1),
        ("TIFF 5000 × 5000 deflate (25 MP)", lambda: pil_file(
            (5000, 5000), "TIFF", compression="tiff_adobe_deflate"), 1),
        ("WebP 3500 × 3500 (12 MP)", lambda: pil_file((3500, 3500), "WEBP"), 1),
        ("three 12 MP WebPs at once", lambda: pil_file((3500, 3500), "WEBP"), 3),
        ("WebP 4500 × 4500 (20 MP)", lambda: pil_file((4500, 4500), "WEBP"), 1),
    ]


# -- the server ---------------------------------------------------------------------------------

def _status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def set_up(data_dir: Path) -> str:
    """A fresh installation with an operator; returns the operator's API token."""
    from openlfr.config import Settings
    from openlfr.governance import users
    from openlfr.governance.authz import Actor
    from openlfr.governance.system import initialise
    from openlfr.store.enums import Role
    from openlfr.web import tokens

    system, _ = initialise(Settings(data_dir=data_dir))
    try:
        users.create_first_admin(system.db, "admin", PASSWORD)
        admin = Actor("admin", Role.ADMIN)
        users.add_user(system.db, admin, "op1", Role.OPERATOR, PASSWORD)
        return tokens.create_token(system.db, admin, "op1", "bench")[1]
    finally:
        system.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args()
    photo_path = next((p for p in PHOTOS if p.exists()), None)
    if photo_path is None:
        sys.exit(f"no normal photo found: looked at {', '.join(map(str, PHOTOS))}")
    photo = photo_path.read_bytes()

    with tempfile.TemporaryDirectory(prefix="openlfr-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        token = set_up(data_dir)
        port = _free_port()
        env = dict(os.environ, OPENLFR_DATA_DIR=str(data_dir))
        server = subprocess.Popen(
            [sys.executable, "-c", "from openlfr.cli import main; main()", "serve",
             "--port", str(port), "--no-resume", "--log-level", "warning"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        base = f"http://127.0.0.1:{port}"
        auth = {"Authorization": f"Bearer {token}"}
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            else:
                sys.exit("the server did not start")
            with httpx.Client(base_url=base, headers=auth, timeout=300) as client:
                r = client.post("/api/v1/watchlists", json={
                    "name": "bench", "purpose": "Find people wanted by the courts"})
                r.raise_for_status()
                wl_id = r.json()["id"]
                counter = iter(range(1_000_000))

                def upload(data: bytes, results: list[tuple[int, str, float]]) -> None:
                    started = time.perf_counter()
                    with httpx.Client(base_url=base, headers=auth, timeout=300) as c:
                        resp = c.post(f"/api/v1/watchlists/{wl_id}/subjects", data={
                            "reference": f"case {next(counter)}",
                            "category": "wanted_by_court", "reason": REASON,
                            "expires": "30d", "source": "bench"},
                            files={"image": ("upload", data, "application/octet-stream")})
                    detail = resp.json().get("detail", "") if resp.status_code >= 400 else ""
                    results.append((resp.status_code, str(detail)[:110],
                                    time.perf_counter() - started))

                # warm up: the face models load on the first upload, and the detector sizes
                # its buffers for full-size pictures (1280 px; padded when no face is found,
                # as for any photo without one)
                upload(photo, [])
                upload(phone_photo(photo), [])
                for size in ((4032, 3024), (3024, 4032), (3000, 3000)):
                    upload(pil_file(size, "JPEG"), [])
                time.sleep(0.5)
                steady = _status(server.pid)["VmRSS"]
                rows = []
                for name, make, at_once in cases(photo):
                    data = make()
                    time.sleep(0.5)
                    before = _status(server.pid)["VmRSS"]
                    _reset_peak(server.pid)
                    results: list[tuple[int, str, float]] = []
                    threads = [threading.Thread(target=upload, args=(data, results))
                               for _ in range(at_once)]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                    peak = _status(server.pid)["VmHWM"]
                    rows.append({
                        "case": name, "bytes": len(data), "at_once": at_once,
                        "status": sorted({s for s, _, _ in results}),
                        "answer": results[0][1], "seconds": max(t for _, _, t in results),
                        "peak_increase_mb": (peak - before) / 1e6,
                        "peak_over_steady_mb": (peak - steady) / 1e6,
                    })
                    print(f"  {name}: {rows[-1]['status']} "
                          f"+{rows[-1]['peak_increase_mb']:.0f} MB", file=sys.stderr)
                end = _status(server.pid)["VmRSS"]
        finally:
            server.terminate()
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()

    baseline = rows[0]["peak_increase_mb"]
    print(f"\nServer peak memory per upload (openlfr serve). Resident after the warm-up "
          f"upload: {steady / 1e6:,.0f} MB; at the end: {end / 1e6:,.0f} MB.\n"
          "Peak increase: VmHWM during the upload minus VmRSS just before it. Over steady: "
          "VmHWM minus the resident memory after warm-up (counts what earlier uploads left).\n")
    base_s = rows[0]["seconds"]
    print("| Upload | Size | Answer | Time | Time × normal photo | Peak increase "
          "| × normal photo | Over steady |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        answer = f"{'/'.join(map(str, row['status']))} {row['answer']}".strip()
        print(f"| {row['case']} | {row['bytes'] / 1000:,.0f} KB | {answer} | "
              f"{row['seconds']:.1f} s | {row['seconds'] / max(base_s, 1e-3):.1f} | "
              f"{row['peak_increase_mb']:.0f} MB | "
              f"{row['peak_increase_mb'] / max(baseline, 1.0):.1f} | "
              f"{row['peak_over_steady_mb']:.0f} MB |")
    worst = max(max(r["peak_increase_mb"], r["peak_over_steady_mb"]) for r in rows)
    verdict = "met" if worst <= TARGET_MB else "MISSED"
    print(f"\nWorst: +{worst:.0f} MB (target ≤ {TARGET_MB:.0f} MB: {verdict}); normal photo "
          f"+{baseline:.0f} MB.")
    if args.json:
        args.json.write_text(json.dumps({"baseline_mb": baseline, "worst_mb": worst,
                                         "steady_mb": steady / 1e6, "end_mb": end / 1e6,
                                         "target_mb": TARGET_MB, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
