"""Benchmark: dlib face detection + alignment, bare loop vs. a Dask LocalCluster, on real photos.

Photos: ../shared/data/jaffe (when present) and scikit-image's real photos of people (astronaut,
camera), held as encoded bytes in memory so both paths do the same work per image: decode →
HOG detect → 5-point landmarks → aligned 64×64 chip. The bare loop and every cluster size run in
the same process, one after the other; the detection cache is off.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_detect.py --repeat 3 --workers 1 2 3

Also prints per-image detector costs (HOG at upsample 0/1, CNN) and an estimate of what a BLAS
build of dlib would give the CNN detector (the HOG detector does no matrix products).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

JAFFE = Path(__file__).resolve().parents[2] / "shared" / "data" / "jaffe"


def load_photos() -> list[tuple[str, bytes]]:
    photos: list[tuple[str, bytes]] = []
    if JAFFE.is_dir():
        photos += [(f.name, f.read_bytes()) for f in sorted(JAFFE.glob("*.tiff"))]
    from skimage import data as skd

    for name in ("astronaut", "camera"):
        img = getattr(skd, name)()
        bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else img
        photos.append((name, cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()))
    return photos


def work(batch: list[bytes], cfg_dict: dict) -> int:
    """The unit both paths run: decode, orient, detect, landmarks, chip; returns faces aligned."""
    from deid.faces import FaceError, align_face, apply_exif_orientation
    from deid.imageio import decode_image
    from deid.preprocessing import PreprocessConfig

    cfg = PreprocessConfig(**cfg_dict)
    n = 0
    for data in batch:
        img = apply_exif_orientation(decode_image(data), data)
        try:
            align_face(img, cfg=cfg)
            n += 1
        except FaceError:
            pass
    return n


def _warm(cfg_dict: dict) -> bool:
    from deid import faces

    faces._model("hog"), faces._model("landmarks5")
    return True


def bench_bare(blobs: list[bytes], cfg_dict: dict) -> tuple[int, float, float]:
    """(faces, wall seconds, CPU seconds of the computing process)."""
    _warm(cfg_dict)
    t, c = time.perf_counter(), time.process_time()
    n = sum(work([b], cfg_dict) for b in blobs)
    return n, time.perf_counter() - t, time.process_time() - c


def bench_dask(blobs: list[bytes], cfg_dict: dict, workers: int, batch: int) -> tuple[int, float, float, float]:
    """(faces, wall seconds, CPU seconds summed over the workers, cluster start seconds)."""
    from deid.faces_dask import DaskConfig, map_ordered, open_client

    t0 = time.perf_counter()
    with open_client(DaskConfig(n_workers=workers)) as client:
        client.run(_warm, cfg_dict)
        startup = time.perf_counter() - t0
        jobs = ((blobs[i : i + batch], cfg_dict) for i in range(0, len(blobs), batch))
        cpu0 = client.run(time.process_time)
        t = time.perf_counter()
        n = sum(map_ordered(client, _run_job, jobs))
        wall = time.perf_counter() - t
        cpu1 = client.run(time.process_time)
        return n, wall, sum(cpu1[k] - cpu0[k] for k in cpu1), startup


def _run_job(job: tuple[list[bytes], dict]) -> int:
    return work(*job)


def per_image_costs(photos: list[tuple[str, bytes]], cnn: bool) -> None:
    import dlib

    from deid import faces
    from deid.imageio import decode_image

    astro = decode_image(dict(photos)["astronaut"])
    jaffe = [decode_image(b) for n, b in photos if n.endswith(".tiff")][:40]
    hog = faces._model("hog")
    print("\n## Per-image detector cost (CPU time, one core)")
    for label, imgs in (("astronaut 512×512 RGB", [astro]), ("JAFFE 256×256 gray", jaffe)):
        if not imgs:
            continue
        for up in (0, 1):
            reps = max(1, 20 // len(imgs))
            t = time.process_time()
            for _ in range(reps):
                for im in imgs:
                    hog(im, up)
            print(f"HOG upsample={up} {label}: {1e3 * (time.process_time() - t) / (reps * len(imgs)):.1f} ms CPU")
    lm = faces._model("landmarks5")
    r = hog(astro, 0)[0]
    t = time.process_time()
    for _ in range(200):
        lm(astro, r)
    print(f"5-point landmarks: {1e3 * (time.process_time() - t) / 200:.2f} ms CPU")
    print(f"dlib {dlib.__version__}: DLIB_USE_BLAS={dlib.DLIB_USE_BLAS} DLIB_USE_LAPACK={dlib.DLIB_USE_LAPACK} "
          f"USE_AVX_INSTRUCTIONS={dlib.USE_AVX_INSTRUCTIONS}")
    if cnn:
        cnn_estimate(astro)


# (out channels, in channels, kernel, stride) of dlib's mmod_human_face_detector, input first
_MMOD = [(16, 3, 5, 2), (32, 16, 5, 2), (32, 32, 5, 2), (45, 32, 5, 1), (45, 45, 5, 1), (45, 45, 5, 1), (1, 45, 9, 1)]


def cnn_estimate(img: np.ndarray) -> None:
    """Time the CNN detector, and what its convolutions cost as single-core BLAS sgemm calls.

    The input pyramid (pyramid_down<6>, tiled) holds about 1/(1-(5/6)²) ≈ 3.27× the image area;
    each convolution is an im2col GEMM of (out) × (in·k²) × (output pixels). Timing numpy's
    OpenBLAS sgemm on those shapes bounds what a BLAS build of dlib could reach.
    """
    from deid import faces

    det = faces._model("cnn")
    det(img, 0)
    t = time.process_time()
    det(img, 0)
    cnn_s = time.process_time() - t
    area = img.shape[0] * img.shape[1] / (1 - (5 / 6) ** 2)
    rng = np.random.default_rng(0)
    flops, gemm_s, scale = 0.0, 0.0, 1.0
    for out_c, in_c, k, stride in _MMOD:
        scale /= stride * stride
        pix = int(area * scale)
        a = rng.standard_normal((out_c, in_c * k * k), dtype=np.float32)
        b = rng.standard_normal((in_c * k * k, pix), dtype=np.float32)
        a @ b
        t = time.process_time()
        a @ b
        gemm_s += time.process_time() - t
        flops += 2.0 * out_c * in_c * k * k * pix
    print(f"CNN (MMOD) detector, astronaut 512×512, upsample=0: {cnn_s:.2f} s "
          f"(~{flops / 1e9:.1f} GFLOP of convolution, {flops / 1e9 / cnn_s:.1f} GFLOP/s achieved)")
    print(f"same convolutions as OpenBLAS sgemm on one core: {gemm_s:.2f} s ({flops / 1e9 / gemm_s:.1f} GFLOP/s) "
          f"-> a BLAS build could run the CNN detector up to ~{cnn_s / max(gemm_s, 1e-9):.1f}x faster "
          "(upper bound: im2col, pooling of the pyramid and the HOG path are not sped up)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2, help="passes over the photo set (longer, steadier timings)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--batch", type=int, default=16, help="images per Dask task")
    ap.add_argument("--upsample", type=int, default=1)
    ap.add_argument("--no-cnn", action="store_true", help="skip the CNN detector timing (~2 s)")
    args = ap.parse_args()

    from deid.faces import FacePolicy
    from deid.preprocessing import PreprocessConfig

    photos = load_photos()
    blobs = [b for _, b in photos] * args.repeat
    cfg = PreprocessConfig(size=64, align="dlib",  # one pass at --upsample (bench_face_retry times the staged policy)
                           faces=FacePolicy(upsample=args.upsample, upsample_first=None)).model_dump()
    print(f"# Face detection + alignment: {len(photos)} real photos "
          f"({'JAFFE + ' if JAFFE.is_dir() else ''}skimage astronaut, camera) × {args.repeat} = {len(blobs)} images; "
          f"HOG upsample={args.upsample}, 64×64 chips, {os.cpu_count()} cores; "
          f"load average before: {os.getloadavg()[0]:.2f}")
    n, s, c = bench_bare(blobs, cfg)
    bare = n / s
    print("\n| path | faces | wall s | faces/s | × bare loop | CPU s | CPU ms/face | cores obtained | cluster start s |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| bare loop (1 process) | {n} | {s:.2f} | {bare:.1f} | 1.00 | {c:.2f} | {1e3 * c / n:.1f} | {c / s:.2f} | – |")
    for w in args.workers:
        n_d, s_d, c_d, start = bench_dask(blobs, cfg, w, args.batch)
        print(f"| Dask LocalCluster, {w} worker{'s' if w > 1 else ''} × 1 thread | {n_d} | {s_d:.2f} | "
              f"{n_d / s_d:.1f} | {n_d / s_d / bare:.2f} | {c_d:.2f} | {1e3 * c_d / n_d:.1f} | {c_d / s_d:.2f} | {start:.1f} |")
    n2, s2, c2 = bench_bare(blobs, cfg)
    print(f"| bare loop again (drift check) | {n2} | {s2:.2f} | {n2 / s2:.1f} | {n2 / s2 / bare:.2f} | {c2:.2f} | "
          f"{1e3 * c2 / n2:.1f} | {c2 / s2:.2f} | – |")
    print("\n'cores obtained' = CPU seconds / wall seconds of the computing processes: below 1 per process means "
          "other load on the machine took the rest. On an idle machine the Dask rate is about "
          "workers × bare rate × (bare CPU ms/face ÷ Dask CPU ms/face).")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    per_image_costs(photos, cnn=not args.no_cnn)


if __name__ == "__main__":
    main()
