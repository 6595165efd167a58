"""Benchmark: staged face detection (upsample 0 first, misses retried at 1) against the bare dlib call.

Two sets built from ../shared/data/jaffe (213 photos, 256 × 256 gray), decoded once and held in memory:

- ``jaffe``: the photos as they are (faces ~110–130 px: upsample 0 finds them);
- ``small``: each photo shrunk to a seeded 25–45 % and pasted at a seeded place on a larger canvas of
  blurred noise (or blank), so faces are ~35–60 px and upsample 0 misses those below ~36 % (at 40 % it
  still finds every face, as a 73 px box: its smallest window).

Rows on each set, in interleaved rounds in one process (one pass of each row per round, so a change in the
machine's load falls on all of them alike): dlib's HOG detector called bare at upsample 1 (the reference),
bare at upsample 0, the staged policy as bare calls (``hog(img, 0) or hog(img, 1)``), and
``deid.faces.detect_faces`` with the default ``FacePolicy()`` (staged, plus 5-point landmarks) and with
``upsample_first=None`` (one pass at 1, plus landmarks). Then dlib's CNN (MMOD) detector in batches on the
first images of each set, and the bare upsample-1 call on the same images. Each row prints its images/s,
the images where a face was found and the 1-minute load average around its passes.
Whether the staged policy keeps what upsample 0 finds (it must: exactly its boxes) and how those boxes
compare with upsample 1's is checked on every image.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_face_retry.py --repeat 3 --cnn 8 --write-doc docs/faces.md
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

JAFFE = Path(__file__).resolve().parents[2] / "shared" / "data" / "jaffe"


def load_jaffe(root: Path = JAFFE) -> list[np.ndarray]:
    """JAFFE's photos, decoded, ``uint8`` ``(256, 256)``."""
    from deid.imageio import decode_image

    return [decode_image(f.read_bytes()) for f in sorted(root.glob("*.tiff"))]


def shrink_onto_canvas(imgs: list[np.ndarray], *, canvas: int = 384, scale: tuple[float, float] = (0.25, 0.45),
                       background: str = "noise", seed: int = 0) -> list[np.ndarray]:
    """Each image resized by a seeded factor in ``scale`` and pasted at a seeded place on a ``canvas``² image
    of blurred noise around mid-grey (``background="noise"``) or of flat grey (``"blank"``)."""
    import cv2

    out = []
    for i, img in enumerate(imgs):
        rng = np.random.default_rng([seed, i])
        f = rng.uniform(*scale)
        small = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        if background == "noise":
            bg = cv2.GaussianBlur(rng.normal(128, 40, (canvas, canvas) + img.shape[2:]).astype(np.float32), (0, 0), 2)
            bg = np.clip(bg, 0, 255).astype(np.uint8)
        else:
            bg = np.full((canvas, canvas) + img.shape[2:], 128, np.uint8)
        h, w = small.shape[:2]
        top, left = int(rng.integers(0, canvas - h + 1)), int(rng.integers(0, canvas - w + 1))
        bg[top : top + h, left : left + w] = small
        out.append(np.ascontiguousarray(bg))
    return out


def _load() -> float:
    return os.getloadavg()[0]


def timed(fn: Callable[[np.ndarray], int], imgs: list[np.ndarray], repeat: int) -> dict:
    """``fn`` over every image ``repeat`` times: found (images with a face, one pass), images/s, CPU ms/image."""
    return interleaved({"row": fn}, imgs, repeat)["row"]


def interleaved(fns: dict[str, Callable[[np.ndarray], int]], imgs: list[np.ndarray], repeat: int) -> dict:
    """Each of ``fns`` over every image, in ``repeat`` rounds of one pass per function, so a change in the
    machine's load falls on every row alike. Per function: found (images with a face), images/s over all
    rounds, CPU ms/image, and the 1-minute load average at the start and end of each of its passes."""
    acc = {k: {"found": 0, "images": len(imgs), "wall": 0.0, "cpu": 0.0, "loads": [], "rates": []} for k in fns}
    for r in range(repeat):
        for k, fn in fns.items():
            a = acc[k]
            a["loads"].append(_load())
            t, c = time.perf_counter(), time.process_time()
            n = sum(1 for img in imgs if fn(img))
            wall = time.perf_counter() - t
            a["wall"] += wall
            a["cpu"] += time.process_time() - c
            a["rates"].append(len(imgs) / wall)
            a["loads"].append(_load())
            a["found"] = n if r == 0 else a["found"]
    for a in acc.values():
        n = a["images"] * repeat
        a.update(per_s=n / a["wall"], cpu_ms=1e3 * a["cpu"] / n, load=(min(a["loads"]), max(a["loads"])))
    return acc


def _iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def agreement(imgs: list[np.ndarray]) -> dict:
    """Where upsample 0 finds a face: does the staged policy return exactly its boxes, and how do upsample 1's
    boxes and aligned 64 px chips compare (largest face's IoU, mean absolute grey-level difference of the chips,
    images where upsample 1 finds more faces)?"""
    from deid.faces import FaceError, FacePolicy, _model, align_face, detect_faces
    from deid.preprocessing import PreprocessConfig

    hog = _model("hog")
    pol = FacePolicy()
    cfg_staged = PreprocessConfig(size=64, align="dlib", faces=FacePolicy(min_face=1))
    cfg_single = PreprocessConfig(size=64, align="dlib", faces=FacePolicy(min_face=1, upsample_first=None))
    chip_diff: list[float] = []
    n0, same, more_at_1, ious, staged_only, only_1 = 0, 0, 0, [], 0, 0
    events: Counter = Counter()
    for img in imgs:
        r0, r1 = hog(img, 0), hog(img, 1)
        ev: list[str] = []
        staged = detect_faces(img, pol, events=ev)
        events.update(ev)
        box = lambda r: (max(0, r.left()), max(0, r.top()), min(img.shape[1], r.right() + 1),  # noqa: E731
                         min(img.shape[0], r.bottom() + 1))
        if len(r0):
            n0 += 1
            same += sorted(box(r) for r in r0) == sorted(d.box for d in staged)
            if len(r1):
                a = max((box(r) for r in r0), key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
                b = max((box(r) for r in r1), key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
                ious.append(_iou(a, b))
                more_at_1 += len(r1) > len(r0)
                try:
                    ca, cb = align_face(img, cfg=cfg_staged), align_face(img, cfg=cfg_single)
                    chip_diff.append(float(np.abs(ca.astype(np.int16) - cb.astype(np.int16)).mean()))
                except FaceError:
                    pass
            else:
                staged_only += 1
        only_1 += not len(r0) and len(r1) > 0
    return {"found_at_0": n0, "same_as_0": same, "iou": ious, "more_at_1": more_at_1, "staged_only": staged_only,
            "retry_found": only_1, "events": dict(sorted(events.items())),
            "chip_diff": chip_diff}


def cnn_batched(imgs: list[np.ndarray], n: int, batch: int, upsample: int) -> dict:
    """dlib's MMOD CNN detector on the first ``n`` images, ``batch`` per call (all one size)."""
    from deid.faces import _model

    det = _model("cnn")
    sub = [np.ascontiguousarray(np.dstack([i] * 3) if i.ndim == 2 else i) for i in imgs[:n]]
    det(sub[:1], upsample, batch_size=1)  # load and warm
    load0 = _load()
    t, c = time.perf_counter(), time.process_time()
    found = sum(1 for dets in det(sub, upsample, batch_size=batch) if len(dets))
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    load1 = _load()
    return {"found": found, "images": len(sub), "per_s": len(sub) / wall, "cpu_ms": 1e3 * cpu / len(sub),
            "wall": wall, "load": (min(load0, load1), max(load0, load1)), "rates": [len(sub) / wall]}


def run_set(name: str, imgs: list[np.ndarray], repeat: int, cnn: int, cnn_batch: int) -> tuple[list, dict]:
    from deid.faces import FacePolicy, _model, detect_faces

    hog = _model("hog")
    _model("landmarks5")
    hog(imgs[0], 1)
    staged, single = FacePolicy(), FacePolicy(upsample_first=None)
    ref_label = "bare dlib HOG, upsample 1 (reference)"
    main = interleaved({
        ref_label: lambda im: len(hog(im, 1)),
        "bare dlib HOG, upsample 0": lambda im: len(hog(im, 0)),
        "bare dlib HOG, 0 then 1 where 0 found none": lambda im: len(hog(im, 0)) or len(hog(im, 1)),
        "`detect_faces`, `FacePolicy()` (upsample_first 0, upsample 1; + landmarks)":
            lambda im: len(detect_faces(im, staged)),
        "`detect_faces`, `upsample_first: null` (one pass at 1; + landmarks)":
            lambda im: len(detect_faces(im, single)),
    }, imgs, repeat)
    rows = list(main.items())
    if cnn:
        k = min(cnn, len(imgs))
        for u in (0, 1) if name == "small" else (0,):
            rows.append((f"dlib CNN (MMOD), upsample {u}, batches of {cnn_batch}, first {k} images, one pass",
                         cnn_batched(imgs, cnn, cnn_batch, u)))
        rows.append((f"bare dlib HOG, upsample 1, same first {k} images, right after",
                     timed(lambda im: len(hog(im, 1)), imgs[:cnn], repeat)))
    for label, r in rows:
        print(f"  {name}: {label}: {r['per_s']:.1f} images/s (per pass: "
              f"{', '.join(f'{x:.1f}' for x in r['rates'])}), found {r['found']}/{r['images']}, "
              f"load {r['load'][0]:.2f}–{r['load'][1]:.2f}", flush=True)
    return rows, agreement(imgs)


def render(results: dict, meta: dict) -> str:
    lines = [f"`{meta['command']}`", "",
             f"Measured {meta['when']} UTC, dlib {meta['dlib']}, {meta['cores']} cores shared with other work; "
             f"`uptime` load average (1, 5, 15 min) before the run {meta['uptime0']}, after {meta['uptime1']}. "
             f"The first five rows of a set ran in {meta['repeat']} interleaved rounds (one pass of each row per "
             "round, in one process), so a change in the load falls on all of them alike; × reference is the row's "
             "images/s over the bare upsample-1 row's; the load column is the 1-minute load average's "
             "lowest and highest reading at the start and end of the row's passes. The CNN rows are one pass "
             "over the first images, followed by the bare upsample-1 call on the same images.", ""]
    for name, (rows, agr) in results.items():
        ref = rows[0][1]["per_s"]
        lines += [f"**{meta['sets'][name]}**", "",
                  "| path | images with a face | images/s | × reference | CPU ms/image | load avg (1 min) |",
                  "|---|---:|---:|---:|---:|---|"]
        for label, r in rows:
            lines.append(f"| {label} | {r['found']} / {r['images']} | {r['per_s']:.1f} | {r['per_s'] / ref:.2f} | "
                         f"{r['cpu_ms']:.1f} | {r['load'][0]:.2f}–{r['load'][1]:.2f} |")
        iou = np.array(agr["iou"]) if agr["iou"] else np.array([np.nan])
        cd = np.array(agr["chip_diff"]) if agr["chip_diff"] else np.array([np.nan])
        ev = ", ".join(f"`{k}` {v}" for k, v in agr["events"].items())
        lines += ["", f"Staged policy's events: {ev}. Upsample 0 found a face in {agr['found_at_0']} images; in "
                      f"{agr['same_as_0']} of them the staged policy returned exactly upsample 0's boxes. Where both "
                      f"passes find a face, the largest face's box at 0 against at 1: median IoU {np.median(iou):.2f}, "
                      f"lowest {iou.min():.2f}; the aligned 64 px chips differ by {np.median(cd):.1f} grey levels "
                      f"(median of the mean absolute difference; largest {cd.max():.1f}); upsample 1 finds more "
                      f"faces than 0 in {agr['more_at_1']} images "
                      f"(a difference only under `on_multiple: quarantine`), and none in {agr['staged_only']} "
                      f"where 0 finds one. The retry found the face in {agr['retry_found']} images.", ""]
    return "\n".join(lines).rstrip() + "\n"


def _uptime() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jaffe", type=Path, default=JAFFE, help="folder of JAFFE's .tiff photos")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds: passes over each set per row")
    ap.add_argument("--canvas", type=int, default=384, help="side of the canvas the small faces are pasted on")
    ap.add_argument("--background", choices=["noise", "blank"], default="noise")
    ap.add_argument("--scale", type=float, nargs=2, default=(0.25, 0.45), metavar=("LO", "HI"),
                    help="range of the seeded shrink factor of the small set")
    ap.add_argument("--cnn", type=int, default=16, help="images per set for the CNN rows (0: skip them)")
    ap.add_argument("--cnn-batch", type=int, default=8)
    ap.add_argument("--write-doc", type=Path, default=None, help="replace this bench's section of that Markdown file")
    a = ap.parse_args(argv)
    if not a.jaffe.is_dir():
        raise SystemExit(f"{a.jaffe} not found: this bench needs JAFFE's photos")
    import dlib

    meta = {"command": "OMP_NUM_THREADS=1 .venv/bin/python bench/bench_face_retry.py "
                       + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:])),
            "when": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "dlib": dlib.__version__,
            "cores": len(os.sched_getaffinity(0)), "repeat": a.repeat, "uptime0": _uptime()}
    jaffe = load_jaffe(a.jaffe)
    small = shrink_onto_canvas(jaffe, canvas=a.canvas, scale=tuple(a.scale), background=a.background)
    meta["sets"] = {"jaffe": f"JAFFE, {len(jaffe)} photos at 256 × 256",
                    "small": f"The same photos shrunk to {100 * a.scale[0]:.0f}–{100 * a.scale[1]:.0f} % and pasted "
                             f"on a {a.canvas} × {a.canvas} canvas of "
                             f"{'blurred noise' if a.background == 'noise' else 'flat grey'}"}
    print(f"load average before: {meta['uptime0']}", flush=True)
    results = {name: run_set(name, imgs, a.repeat, a.cnn, a.cnn_batch)
               for name, imgs in (("jaffe", jaffe), ("small", small))}
    meta["uptime1"] = _uptime()
    text = render(results, meta)
    print("\n" + text)
    if a.write_doc:
        from bench.common import write_section

        write_section(a.write_doc, "bench_face_retry", text)


if __name__ == "__main__":
    main()
