"""Enrolment choices on LFW: flipped-image enrolment, best-quality enrolment image, sface vs fusion.

Usage:
    python benchmarks/bench_accuracy.py embed --part sface --out /tmp/lfw-feat.npz
    python benchmarks/bench_accuracy.py embed --part dlib [--no-mirror] --out /tmp/lfw-feat-dlib.npz
    python benchmarks/bench_accuracy.py report --feat /tmp/lfw-feat.npz
    python benchmarks/bench_accuracy.py clip [--backend sface] [--fuse-shots 3] [--flip-enrol]
        [--early]

``embed`` detects the central face of every LFW image once and keeps, per image, its SFace and
dlib embeddings of the image and of its mirror, and its quality score
(:func:`openlfr.vision.quality.template_weight`). ``report`` then measures, from those:

* LFW verification accuracy on the View-2 folds (threshold chosen on the other folds), with
  neither, both, or only the first image of a pair (the "enrolled" one) flip-averaged;
* open-set identification at a gallery of 1,000 (FNIR at FPIR 0.01 and 0.001, seed 0, the
  protocol of ``openlfr eval identify``), enrolling each identity's first image by name or its
  best-quality one, with and without flip enrolment (probes are never flipped: live faces).

``clip`` runs the live pipeline over the Hamilton clip (every frame, in stream time, so the
figures do not depend on how busy the machine is) with a watchlist of Lin-Manuel Miranda and
three distractors, and prints every search (track, frame, best candidate, score) and the alert
delay: stream seconds from the first frame where the alerted track's face is of enrolment
quality to the frame whose search raised the alert.

Needs the evaluation data beside the project (not part of it); not a test.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from openlfr.evaluation.groups import scan_dataset
from openlfr.evaluation.identify import choose_enrolled, threshold_at_fpir
from openlfr.evaluation.metrics import kfold_accuracy
from openlfr.evaluation.pairs import read_pairs
from openlfr.evaluation.verify import RETRY_PAD, pick_face
from openlfr.vision import quality as q
from openlfr.vision.embed_dlib import DlibEmbedder
from openlfr.vision.embed_sface import SFaceEmbedder
from openlfr.vision.engine import get_engine
from openlfr.vision.imageio import as_image, load_image

LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw"


def embed(out: Path, data: Path, part: str, mirror: bool = True) -> int:
    """``part="sface"``: SFace of the image and its mirror, and the quality weight;
    ``part="dlib"``: dlib of the image and (when ``mirror``) its mirror. Two processes can run
    the two parts side by side; ``report`` reads both files. An ``out`` file already there is
    taken up where it stopped (its images are not embedded again)."""
    ds = scan_dataset(data / "images")
    engine = get_engine("sface")
    model = SFaceEmbedder() if part == "sface" else DlibEmbedder()
    n = len(ds.images)
    keys = ("s", "sf") if part == "sface" else ("d", "df")
    feats = {k: np.zeros((n, 128), np.float32) for k in keys}
    weight = np.full(n, -1.0)
    ok = np.zeros(n, bool)
    if out.exists():
        before = np.load(out)
        if list(before["images"]) == list(ds.images):
            ok = before["ok"].copy()
            weight = before["weight"].copy()
            for k in keys:
                feats[k] = before[k].copy()
    start = time.perf_counter()
    # The images of the pairs first, so that a run stopped early (it saves every 250 images)
    # already measures verification; then the rest, for identification.
    in_pairs = set()
    for p in read_pairs(data / "pairs.txt"):
        in_pairs |= {p.left, p.right}
    order = sorted(range(n), key=lambda i: (ds.images[i] not in in_pairs, i))

    def save() -> None:
        np.savez(out, images=np.array(ds.images), identities=np.array(ds.identities), ok=ok,
                 weight=weight, **feats)

    for done, i in enumerate(order):
        rel = ds.images[i]
        if done % 250 == 0:
            save()
            print(f"{done}/{n} {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        if ok[i]:
            continue
        image = load_image(data / "images" / rel)
        faces = engine.detect(image) or engine.detect(image, pad=RETRY_PAD)
        face = pick_face(faces, image.shape)
        if face is None:
            continue
        flipped = as_image(np.ascontiguousarray(cv2.flip(image, 1)))
        feats[keys[0]][i] = model.embed(image, [face])[0].vector
        if mirror:
            feats[keys[1]][i] = model.embed(flipped, [face.mirrored(image.shape[1])])[0].vector
        weight[i] = q.template_weight(face, q.measure(image, face, q.ENROLMENT))
        ok[i] = True
    save()
    return 0


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def templates(z: dict[str, np.ndarray], backend: str, flip: bool) -> np.ndarray:
    def one(key: str) -> np.ndarray:
        v = z[key]
        return unit(v + z[key + "f"]) if flip else v
    if backend == "sface":
        return one("s")
    if backend == "dlib":
        return one("d")
    w = 0.5  # registry.FUSION_WEIGHT; fusion's SFace part is always flip-averaged
    return np.hstack([np.sqrt(w) * unit(z["s"] + z["sf"]), np.sqrt(1 - w) * one("d")])


def identify(z: dict[str, np.ndarray], gal: np.ndarray, probe: np.ndarray, best: bool,
             size: int = 1000, seed: int = 0) -> tuple[float, float | None, float | None]:
    """Rank-1 and FNIR at FPIR 0.01 and 0.001 (``openlfr eval identify``'s protocol)."""
    ids = z["identities"]
    ok = z["ok"]
    usable: dict[str, list[int]] = {}
    for i, ident in enumerate(ids):
        if ok[i]:
            usable.setdefault(str(ident), []).append(i)
    enrolled = choose_enrolled(usable, min(size, len(usable) // 2), seed)
    enrol = {k: (max(usable[k], key=lambda i: (z["weight"][i], -i)) if best else usable[k][0])
             for k in enrolled}
    g = gal[[enrol[k] for k in enrolled]]
    mated = [(i, k) for k in enrolled for i in usable[k] if i != enrol[k]]
    nonmated = [i for k, v in usable.items() if k not in enrol for i in v]
    ms = probe[[i for i, _ in mated]] @ g.T
    top = ms.argmax(1)
    hit = np.where(np.array([enrolled[t] == k for t, (_, k) in zip(top, mated, strict=True)]),
                   ms.max(1), -np.inf)
    nm = (probe[nonmated] @ g.T).max(1)
    out: list[float | None] = []
    for target in (0.01, 0.001):
        t = threshold_at_fpir(nm, target)
        out.append(None if t is None else float(np.mean(~(hit >= t))))
    return float(np.mean(np.isfinite(hit))), out[0], out[1]


def tracks(z: dict[str, np.ndarray], backend: str, size: int = 1000, seed: int = 0,
           shots: int = 3) -> None:
    """Tracks simulated from LFW: ``shots`` images of one person, in increasing quality (as the
    pipeline embeds them). Identities with more than ``shots`` usable images are split in two:
    one half enrolled (their best-quality image; the others make mated tracks), the other half
    never enrolled (non-mated tracks); the gallery is filled up to ``size`` with other
    identities. A track's score is the highest of its searches."""
    vec = templates(z, backend, False)
    w = z["weight"]
    usable: dict[str, list[int]] = {}
    for i, ident in enumerate(z["identities"]):
        if z["ok"][i]:
            usable.setdefault(str(ident), []).append(i)
    rng = np.random.default_rng(seed)
    multi = sorted(k for k, v in usable.items() if len(v) > shots)
    multi = [multi[i] for i in rng.permutation(len(multi))]
    enrolled_multi, never = multi[::2], multi[1::2]
    others = sorted(k for k in usable if k not in set(multi))
    others = [others[i] for i in rng.permutation(len(others))]
    enrolled = enrolled_multi + others[: size - len(enrolled_multi)]
    enrol = {k: max(usable[k], key=lambda i: (w[i], -i)) for k in enrolled}
    gallery = vec[[enrol[k] for k in enrolled]]

    def track_of(k: str) -> list[int]:
        rest = [i for i in usable[k] if enrol.get(k) != i]
        pick = [rest[j] for j in rng.permutation(len(rest))[:shots]]
        return sorted(pick, key=lambda i: w[i])

    def scores(idx: list[int], mode: str) -> list[np.ndarray]:
        from openlfr.video.bestshot import fuse_templates
        shots_ = [(vec[i], float(w[i])) for i in idx]
        if mode == "one by one":
            queries = [vec[i] for i in idx]
        elif mode == "fused (first alone)":
            queries = [fuse_templates(shots_[: n + 1], shots) for n in range(len(idx))]
        elif mode == "plain mean":
            queries = [fuse_templates([(v, 1.0) for v, _ in shots_[: n + 1]], shots)
                       for n in range(len(idx))]
        else:  # fused once, at the end
            queries = [fuse_templates(shots_, shots)]
        return [gallery @ qv for qv in queries]

    mated = [(k, track_of(k)) for k in enrolled_multi]
    non = [track_of(k) for k in never]
    print(f"Tracks of {shots} shots ({backend}, gallery {len(enrolled)}): {len(mated)} mated, "
          f"{len(non)} non-mated; FNIR at FPIR 0.01 / 0.05, rank-1 of the last search:")
    for mode in ("one by one", "plain mean", "fused (first alone)", "fused once"):
        nm = np.array([max(float(s.max()) for s in scores(t, mode)) for t in non])
        hit = []
        last_ok = 0
        for k, t in mated:
            target = enrolled.index(k)
            ss = scores(t, mode)
            good = [float(s[target]) for s in ss if int(s.argmax()) == target]
            hit.append(max(good) if good else -np.inf)
            last_ok += int(ss[-1].argmax()) == target
        hit_a = np.array(hit)
        out = []
        for target_fpir in (0.01, 0.05):
            thr = threshold_at_fpir(nm, target_fpir)
            out.append("n/a" if thr is None else f"{np.mean(~(hit_a >= thr)):.4f}")
        print(f"  {mode:20s} FNIR {out[0]} / {out[1]}; rank-1 (last) "
              f"{last_ok / len(mated):.4f}")


def report(feat: Path, data: Path) -> int:
    z = dict(np.load(feat))
    dlib_file = feat.with_name(feat.stem + "-dlib.npz")
    if dlib_file.exists():
        d = np.load(dlib_file)
        z.update(d=d["d"], df=d["df"], ok=z["ok"] & d["ok"])
    row = {str(p): i for i, p in enumerate(z["images"])}
    pairs = read_pairs(data / "pairs.txt")
    left = np.array([row.get(p.left, -1) for p in pairs])
    right = np.array([row.get(p.right, -1) for p in pairs])
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    good = (left >= 0) & (right >= 0)
    good &= z["ok"][np.maximum(left, 0)] & z["ok"][np.maximum(right, 0)]
    print(f"LFW verification (View-2 folds, mean ± std), {int(good.sum())} of {len(pairs)} "
          "pairs (the others: no face found, or not embedded yet):")
    for backend in (("sface", "fusion") if "d" in z else ("sface",)):
        for name, fl, fr in (("no flip", False, False), ("flip on enrolled side", True, False),
                             ("flip both", True, True)):
            a, b = templates(z, backend, fl), templates(z, backend, fr)
            s = np.sum(a[left[good]] * b[right[good]], 1)
            r = kfold_accuracy(s, same[good], folds[good])
            acc = np.array(r.accuracies) * 100
            print(f"  {backend:6s} {name:22s} {acc.mean():.2f} ± {acc.std():.2f} %")
    backends = ("sface", "fusion") if "d" in z else ("sface",)
    for backend in backends:
        tracks(z, backend)
    n_ids = len({str(k) for k, o in zip(z["identities"], z["ok"], strict=True) if o})
    print(f"Open-set identification, gallery {min(1000, n_ids // 2)} of {n_ids} identities "
          "(rank-1, FNIR@FPIR 0.01, 0.001):")
    for backend in backends:
        probe = templates(z, backend, False)
        for flip in (False, True):
            gal = templates(z, backend, flip)
            for best in (False, True):
                r1, f2, f3 = identify(z, gal, probe, best)
                print(f"  {backend:6s} flip={flip!s:5s} enrol={'best' if best else 'first':5s} "
                      f"rank-1 {r1:.4f} FNIR {f2} {f3}")
    return 0


PEOPLE = {"lin-manuel-miranda": "lin-manuel-miranda.png", "alex-lacamoire": "alex-lacamoire.png",
          "obama": "obama.jpg", "biden": "biden.jpg"}


def clip(data: Path, backend: str, fuse_shots: int, flip_enrol: bool, early: bool) -> int:
    from openlfr.video.pipeline import CameraPipeline, PipelineConfig
    from openlfr.video.sinks import MemorySink
    from openlfr.video.types import Frame
    from openlfr.watchlist.enrol import EnrolJob, enrol
    from openlfr.watchlist.store import Watchlist

    engine = get_engine(backend)
    wl = Watchlist(engine.model_id, engine.embedder.dim)
    jobs = [EnrolJob(data / image, sid, sid) for sid, image in PEOPLE.items()]
    outcomes = enrol(engine, wl, jobs, flip=flip_enrol) if flip_enrol else enrol(engine, wl, jobs)
    assert all(o.accepted for o in outcomes), outcomes
    gallery = wl.gallery()
    searches: list[tuple[int, str, float]] = []

    class Logged:
        model_id = gallery.model_id

        def __len__(self) -> int:
            return len(gallery)

        def search(self, queries: np.ndarray, k: int = 5, per_subject: bool = True
                   ) -> list[list[object]]:
            hits = gallery.search(queries, k, per_subject)
            searches.append((frame_index, hits[0][0].subject_id, float(hits[0][0].score)))
            return hits  # type: ignore[return-value]

    sink = MemorySink()
    from openlfr.video.bestshot import ShotPolicy

    config = PipelineConfig(threshold=engine.default_threshold, fuse_shots=fuse_shots,
                            shots=ShotPolicy(early=early))
    cap = cv2.VideoCapture(str(data / "short_hamilton_clip.mp4"))
    fps = cap.get(cv2.CAP_PROP_FPS)
    pipe = CameraPipeline("clip", engine, Logged(), config, sink, fps=fps)  # type: ignore[arg-type]
    enrol_quality: dict[int, int] = {}
    frame_index = 0
    cpu0 = time.process_time()
    while True:
        ok, image = cap.read()
        if not ok:
            break
        t = frame_index / fps
        pipe.process(Frame("clip", frame_index, t, t, t, image))
        for tid, record in pipe.tracks.items():
            if record.enrol_quality_mono is not None and tid not in enrol_quality:
                enrol_quality[tid] = round(record.enrol_quality_mono * fps)
        frame_index += 1
    pipe.flush()
    cpu = time.process_time() - cpu0
    print(f"{backend}: {frame_index} frames ({frame_index / fps:.1f} s of video), "
          f"{pipe.stats.embeddings} embeddings, CPU {cpu:.1f} s = "
          f"{cpu / (frame_index / fps):.3f} CPU-s per camera-second (every frame detected)")
    for f, sid, score in searches:
        print(f"  search at frame {f}: {sid} {score:.3f}")
    for alert in sink.firsts():
        start = enrol_quality.get(alert.track_id)
        raised = next(f for f, sid, score in searches
                      if sid == alert.subject_id and abs(score - alert.score) < 1e-6)
        delay = None if start is None else (raised - start) / fps
        print(f"ALERT {alert.subject_id} track {alert.track_id} frame {alert.frame} "
              f"(searched at frame {raised}) score {alert.score:.3f} "
              f"(threshold {alert.threshold}); enrolment-quality face "
              f"from frame {start}; delay {delay if delay is None else round(delay, 3)} s")
    print(f"{len(sink.firsts())} alert(s), {len(sink.alerts)} with updates; "
          f"best scores: " + ", ".join(f"{a.subject_id} {a.score:.3f}" for a in sink.alerts))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["embed", "report", "clip"])
    ap.add_argument("--part", choices=["sface", "dlib"], default="sface")
    ap.add_argument("--backend", default="sface")
    ap.add_argument("--fuse-shots", type=int, default=3)
    ap.add_argument("--flip-enrol", action="store_true")
    ap.add_argument("--no-mirror", action="store_true",
                    help="embed: skip the mirror images (fusion's dlib part does not use them)")
    ap.add_argument("--early", action="store_true",
                    help="embed a first enrolment-quality shot before its window closes")
    ap.add_argument("--data", type=Path, default=LFW)
    ap.add_argument("--out", type=Path, default=Path("/tmp/lfw-feat.npz"))
    ap.add_argument("--feat", type=Path, default=Path("/tmp/lfw-feat.npz"))
    args = ap.parse_args()
    if args.what == "embed":
        return embed(args.out, args.data, args.part, not args.no_mirror)
    if args.what == "clip":
        return clip(args.data.parent / "face_recognition_examples", args.backend,
                    args.fuse_shots, args.flip_enrol, args.early)
    return report(args.feat, args.data)


if __name__ == "__main__":
    raise SystemExit(main())
