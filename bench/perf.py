"""The performance table: each stage of the pipeline at N images of the built-in dataset, next to a
bare-library loop doing the same work in the same run; writes docs/PERFORMANCE.md and a plot.

Every (stage, N) runs in a fresh process (``python -m bench.perf --one STAGE N DATA``) so its peak
resident memory is its own; the process measures our code and then the reference loop, each in a
child of its own.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["run_perf", "STAGES"]

STAGES = ("ingest", "detect", "cluster", "fit", "transform", "evaluate")
_WHAT = {
    "ingest": ("`deid.ingest.ingest_dataset` (decode, grayscale, resize to 50 px, PNG encode, content ids, split, "
               "validated Parquet write), 1 worker, every check on",
               "the tree listed, then cv2.imread + cvtColor + resize + imencode per file"),
    "detect": ("`deid.faces.detect_faces` (dlib HOG, upsample 1, plus 5-point landmarks per face) on the ingested "
               "50 px images", "dlib frontal face detector called directly, upsample 1"),
    "cluster": ("`deid.clustering.centre_targets` (Dask k-means, in-process scheduler), K=50 on 64-d PCA codes",
                "scikit-learn `KMeans(n_clusters=50, n_init=1)` on the same codes"),
    "fit": ("`deid.pipeline.fit_method('ksame-pixel', k=5)` (reads Parquet, PCA, identity-level k-Same clusters, saves)",
            "scikit-learn `PCA(64, svd_solver=\"randomized\")` fitted on the same pixels, held in memory"),
    "transform": ("`deid.pipeline.anonymize_table` with `blur` σ=2 (Parquet → decode → blur → PNG encode → validated "
                  "Parquet)", "cv2.GaussianBlur over the in-memory array"),
    "evaluate": ("`deid.evaluation.audit.audit` of one method (blur), as the audit task runs it: both tables "
                 "decoded to `uint8` on disk (`deid.data.open_image_set`) and read a chunk at a time; linear attacker "
                 "only, reference CNNs 1 epoch",
                 "scikit-learn PCA(64) + LogisticRegression for identity and expression on the same split"),
}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


# -- inside the measuring process ----------------------------------------------------------------------
def _data(n: int, work: Path) -> tuple[Path, Path]:
    """The generated tree and the ingested images table for about ``n`` images (6 characters × 7 expressions)."""
    from deid.datasets.synthetic import SyntheticFergConfig, generate_ferg_like

    per_cell = max(1, round(n / 42))
    tree = generate_ferg_like(work / "data" / f"perf-{per_cell}", SyntheticFergConfig(6, per_cell, size=64),
                              workers=2)
    return tree, work / "datasets" / f"perf-{per_cell}"


def _ensure_ingested(tree: Path, out: Path) -> Path:
    from deid.ingest import ingest_dataset
    from deid.preprocessing import PreprocessConfig

    ingest_dataset("ferg", tree, out, preprocess=PreprocessConfig(size=50), workers=1)
    return out / "images"


def _measure(stage: str, side: str, tree: Path, ingested: Path, tmp: Path) -> dict:
    import numpy as np

    t0 = time.perf_counter()
    if stage == "ingest":  # both sides start from the tree's path: the loop lists it, as ingest's scan does
        if side == "ours":
            from deid.ingest import ingest_dataset
            from deid.preprocessing import PreprocessConfig

            t0 = time.perf_counter()
            n = ingest_dataset("ferg", tree, tmp / "ingest", preprocess=PreprocessConfig(size=50), workers=1).input
        else:
            from bench.common import ingest_reference

            t0 = time.perf_counter()
            files = sorted(tree.rglob("*.png"))
            ingest_reference(files)
            n = len(files)
    else:
        from deid.data import load_image_set

        images = _ensure_ingested(tree, ingested)
        if stage in ("detect", "cluster") or side == "ref":
            data = load_image_set(images)
            X = data.X
        t0 = time.perf_counter()
        n = len(X) if stage in ("detect", "cluster") or side == "ref" else None
        if stage == "detect":
            u8 = (np.clip(X[:, 0], 0, 1) * 255).astype(np.uint8)
            if side == "ours":
                from deid.faces import FacePolicy, detect_faces

                pol = FacePolicy(upsample=1, upsample_first=None)  # one pass, as the reference
                t0 = time.perf_counter()
                for img in u8:
                    detect_faces(img, pol)
            else:
                import dlib

                det = dlib.get_frontal_face_detector()
                t0 = time.perf_counter()
                for img in u8:
                    det(img, 1)
        elif stage == "cluster":
            from sklearn.decomposition import PCA

            codes = PCA(min(64, len(X) - 1), random_state=0).fit_transform(X.reshape(len(X), -1)).astype(np.float32)
            t0 = time.perf_counter()
            if side == "ours":
                from deid.clustering.centres import centre_targets

                centre_targets(codes, min(50, len(codes)), random_state=0, client="sync")
            else:
                from sklearn.cluster import KMeans

                KMeans(min(50, len(codes)), n_init=1, random_state=0).fit(codes)
        elif stage == "fit":
            if side == "ours":
                from data_contracts import count_rows
                from deid.pipeline import fit_method

                n = count_rows(images)
                t0 = time.perf_counter()
                fit_method("ksame-pixel", {"k": 5}, images, tmp / "model", splits=("train", "val", "test"))
            else:
                from sklearn.decomposition import PCA

                PCA(min(64, len(X) - 1), svd_solver="randomized", random_state=0).fit(X.reshape(len(X), -1))
        elif stage == "transform":
            if side == "ours":
                from data_contracts import count_rows
                from deid.methods import get_method
                from deid.pipeline import anonymize_table

                n = count_rows(images)
                m = get_method("blur", sigma=2.0).fit(np.zeros((1, 1, 50, 50), np.float32))
                t0 = time.perf_counter()
                anonymize_table(m, images, tmp / "anon")
            else:
                import cv2

                for img in X[:, 0]:
                    cv2.GaussianBlur(img, (0, 0), 2.0)
        elif stage == "evaluate":
            if side == "ours":
                from deid.data import open_image_set
                from deid.evaluation.audit import AuditConfig, audit
                from deid.methods import get_method
                from deid.pipeline import anonymize_table
                from data_contracts import count_rows

                anon_dir = tmp / "anon"  # blur's table, written as a run writes it (not timed)
                anonymize_table(get_method("blur", sigma=2.0).fit(np.zeros((1, 1, 50, 50), np.float32)), images,
                                anon_dir)
                n = count_rows(images)
                t0 = time.perf_counter()  # as the audit task: images decoded to disk, then read in chunks
                cache = tmp / "pixels"
                audit(open_image_set(images, cache), {"blur": open_image_set(anon_dir, cache, anonymized=True)},
                      AuditConfig(attackers=["linear"], cnn_epochs=1, cnn_width=16, linkage_repeats=1, device="cpu"),
                      scratch=cache)
            else:
                from sklearn.decomposition import PCA
                from sklearn.linear_model import LogisticRegression

                tr = np.isin(data.split, ["train", "val"])
                F = X.reshape(len(X), -1)
                for y in (data.identity, data.label):
                    pca = PCA(64, random_state=0).fit(F[tr])
                    clf = LogisticRegression(max_iter=200).fit(pca.transform(F[tr]), y[tr].astype(str))
                    clf.score(pca.transform(F[~tr]), y[~tr].astype(str))
        else:
            raise ValueError(f"unknown stage '{stage}'")
    secs = time.perf_counter() - t0
    return {"seconds": secs, "n": n, "peak_mb": _peak_mb()}


def _child(stage: str, side: str, n: int, work: Path) -> dict:
    """One measurement in a fresh process: its own peak memory."""
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "bench.perf", "--one", stage, side, str(n), str(work)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[1])
    if r.returncode != 0:
        raise RuntimeError(f"perf {stage}/{side} at N={n} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _demo(work: Path, say) -> str:
    """The default demo end to end in a fresh work folder (data generation included).

    Output goes to a log file, not a pipe (helper servers the flow starts may outlive it), and
    whatever the demo's own process group leaves behind is stopped afterwards.
    """
    import shutil
    import signal

    from deid.provenance import loadavg

    d = work / "perf-demo"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    env = dict(os.environ, DEID_WORK=str(d))
    root = Path(__file__).resolve().parents[1]
    say(f"timing the default demo (deid demo) in a fresh work folder; log in {d / 'demo.log'}")
    la = loadavg()
    with open(d / "demo.log", "w") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen([str(Path(sys.executable).with_name("deid")), "demo", "--set", f"work_dir={d}"],
                                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True)
        rc = proc.wait()
        secs = time.perf_counter() - t0
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # the demo's own session only
    except ProcessLookupError:
        pass
    if rc != 0:
        tail = (d / "demo.log").read_text().strip().splitlines()[-1:] or [""]
        return f"the demo failed (exit {rc}) after {secs:.0f} s: `{tail[0][:300]}`"
    return (f"`deid demo` (configs/ferg.yaml: generate the built-in set, ingest, blur/pixelate/blackout, audit with "
            f"15-epoch CNN and linear attackers, HTML report, MLflow run): **{secs:.0f} s** from an empty work "
            f"folder (load average before: {la}; after: {loadavg()}).")


def refresh_demo(out: Path, work: Path, say=print) -> Path:
    """Re-measure only the demo and re-render ``PERFORMANCE.md`` from the stage rows already measured."""
    from bench.common import kept_sections
    from deid.reporting.study import perf_plot, render_performance

    saved = json.loads((work / "perf" / "performance.json").read_text())  # written by the last full `deid perf`
    meta, rows = saved["meta"], saved["rows"]
    meta["demo"] = _demo(work / "perf", say) + " Re-timed with `deid perf --demo-only`."
    (work / "perf" / "performance.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    plot = perf_plot(rows, out / "performance_scaling.png")
    path = out / "PERFORMANCE.md"
    path.write_text(render_performance(rows, meta, plot.name) + kept_sections(path))
    return path


def run_perf(sizes: list[int], *, out: Path, work: Path, demo: bool = True, stages: list[str] | None = None,
             say=print) -> Path:
    from deid.provenance import command_line, loadavg, machine
    from bench.common import kept_sections
    from deid.reporting.study import perf_plot, render_performance

    t_start = time.perf_counter()
    meta = {"command": command_line(), "machine": machine(), "load_start": loadavg(),
            "sizes": ", ".join(f"{n:,}" for n in sizes)}
    rows = []
    pw = work / "perf"
    for n in sizes:
        say(f"N={n:,}: generating and ingesting the built-in dataset (not measured)")
        _child("prep", "-", n, pw)
        for stage in stages or STAGES:
            ours = _child(stage, "ours", n, pw)
            ref = _child(stage, "ref", n, pw)
            row = {"stage": stage, "n": ours["n"], "seconds": ours["seconds"], "peak_mb": ours["peak_mb"],
                   "images_per_s": ours["n"] / ours["seconds"], "ref_seconds": ref["seconds"],
                   "ref_images_per_s": ref["n"] / ref["seconds"], "ref_peak_mb": ref["peak_mb"],
                   "start_mb": ours.get("start_mb", float("nan")),
                   "what": _WHAT[stage][0], "ref": _WHAT[stage][1]}
            say(f"{stage:10s} N={row['n']:>7,}  ours {row['seconds']:8.2f} s  ref {row['ref_seconds']:8.2f} s  "
                f"peak {row['peak_mb']:.0f} MB")
            rows.append(row)
    if demo:
        meta["demo"] = _demo(pw, say)
    meta["load_end"] = loadavg()
    meta["wall_time"] = f"{(time.perf_counter() - t_start) / 60:.1f} min"
    out.mkdir(parents=True, exist_ok=True)
    plot = perf_plot(rows, out / "performance_scaling.png")
    (pw / "performance.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    path = out / "PERFORMANCE.md"
    path.write_text(render_performance(rows, meta, plot.name) + kept_sections(path))
    return path


def _one(stage: str, side: str, n: int, work: Path) -> None:
    import shutil
    import tempfile

    tree, ingested = _data(n, work)
    if stage == "prep":  # generate and ingest once, outside every measured process
        _ensure_ingested(tree, ingested)
        print(json.dumps({}))
        return
    tmp = Path(tempfile.mkdtemp(prefix=f"perf-{stage}-", dir=work))
    try:
        import cv2  # noqa: F401  the same import floor on both sides
        import sklearn.decomposition  # noqa: F401
        import torch  # noqa: F401

        import deid.data  # noqa: F401
        import deid.pipeline  # noqa: F401

        start = _rss_mb()
        res = _measure(stage, side, tree, ingested, tmp)
        res["start_mb"] = start
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(res))


if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) == 6 and sys.argv[1] == "--one":
        _one(sys.argv[2], sys.argv[3], int(sys.argv[4]), Path(sys.argv[5]))
    else:
        sys.exit("usage: python -m bench.perf --one STAGE ours|ref N WORK")
