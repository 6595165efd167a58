"""A whole release run, timed: `deid run CONFIG` end to end in a fresh work folder, its peak memory, each
stage's images/s (from the run's own summary) next to a bare-library loop on the same data, and its audit.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_release.py configs/ferg-full.yaml

Writes a section of docs/PERFORMANCE.md (time, memory, stages against their references, and what a
1M- and a 10M-image release would need, estimated from the measured per-image costs) and one of
docs/RESULTS.md (the run's audit table), each between its own markers, so a rerun replaces them.
The work folder (default /tmp/deid-release-bench/<config>) is emptied first: the run starts cold.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import write_section  # noqa: E402


class TreeMemory:
    """Samples the resident memory of a process and all its descendants once a second; keeps the peaks."""

    def __init__(self, pid: int):
        import psutil

        self.root = psutil.Process(pid)
        self.peak_total_mb = 0.0
        self.peak_single_mb = 0.0
        self.peak_single_cmd = ""
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(1.0):
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            total = 0.0
            for p in procs:
                try:
                    mb = p.memory_info().rss / 2**20
                except psutil.Error:
                    continue
                total += mb
                if mb > self.peak_single_mb:
                    try:
                        self.peak_single_mb, self.peak_single_cmd = mb, " ".join(p.cmdline()[:3])
                    except psutil.Error:
                        self.peak_single_mb = mb
            self.peak_total_mb = max(self.peak_total_mb, total)

    def stop(self) -> None:
        self._stop.set()
        self._t.join()


def run_release(config: Path, work: Path) -> dict:
    """``deid run config`` with ``work_dir`` = ``work`` (emptied first); wall time, peaks and the summary."""
    from deid.config import load_config
    from deid.provenance import loadavg

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    name = load_config(config).name
    la0 = loadavg()
    log = work.parent / f"{work.name}.log"
    with open(log, "w") as f:
        t0 = time.perf_counter()
        proc = subprocess.Popen([str(Path(sys.executable).with_name("deid")), "run", str(config), "--set",
                                 f"work_dir={work}"], stdout=f, stderr=subprocess.STDOUT, cwd=ROOT,
                                start_new_session=True)
        mem = TreeMemory(proc.pid)
        rc = proc.wait()
        wall = time.perf_counter() - t0
        mem.stop()
    try:
        os.killpg(proc.pid, 15)  # servers the run started and left behind (its own session only)
    except ProcessLookupError:
        pass
    import resource

    summary_path = work / "runs" / name / "summary.json"
    if not summary_path.is_file():
        tail = log.read_text().strip().splitlines()[-5:]
        raise SystemExit(f"the run wrote no summary (exit {rc}); log {log}:\n" + "\n".join(tail))
    return {"exit": rc, "wall_s": wall, "load_start": la0, "load_end": loadavg(), "log": str(log),
            "peak_tree_mb": mem.peak_total_mb, "peak_process_mb": mem.peak_single_mb,
            "peak_process": mem.peak_single_cmd,
            "peak_child_maxrss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "summary": json.loads(summary_path.read_text()), "work": str(work), "name": name}


def references(work: Path, summary: dict) -> dict:
    """Bare-library loops on the run's own data: the floor each stage's images/s is compared with."""
    import numpy as np

    from bench.common import ingest_reference
    from deid.data import load_image_set

    out = {}
    files = sorted(p for p in (work / "data").rglob("*.png"))
    if files:  # ingest: decode, grayscale, resize, PNG encode, nothing else
        out["ingest"] = (len(files), ingest_reference(files), "cv2 imread + cvtColor + resize + imencode per file")
    images = next(p for p in (work / "datasets").rglob("images") if p.is_dir())
    t0 = time.perf_counter()
    data = load_image_set(images)
    out["decode"] = (len(data), time.perf_counter() - t0, "the images table decoded into memory (float32)")
    X = data.X
    from deid.methods import DeidMethod

    models = work / "runs" / summary["config_name"] / "models"
    for d in sorted(p for p in models.iterdir() if p.is_dir()) if models.is_dir() else []:
        label = d.name.rsplit("-", 1)[0]
        try:
            m = DeidMethod.load(d)
        except Exception as exc:  # noqa: BLE001 - a model this bench cannot load is named, not fatal
            out[f"transform {label}"] = (0, float("nan"), f"not loaded: {exc}")
            continue
        if m.set_level:  # the whole split at once, as the pipeline calls it
            parts = [np.flatnonzero(data.split == s) for s in np.unique(data.split)]
            how = "one call per split"
        else:
            parts = [np.arange(s, min(s + 1024, len(X))) for s in range(0, len(X), 1024)]
            how = "1,024 images a call"
        t0 = time.perf_counter()
        for idx in parts:
            m.transform(X[idx], data.identity[idx], data.label[idx])
        out[f"transform {label}"] = (len(X), time.perf_counter() - t0,
                                     f"the fitted `{label}`'s transform over the in-memory array, {how}")
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression

    tr = np.isin(data.split, ["train", "val"])
    F = X.reshape(len(X), -1)
    t0 = time.perf_counter()
    for y in (data.identity, data.label):
        pca = PCA(64, random_state=0).fit(F[tr])
        clf = LogisticRegression(max_iter=200).fit(pca.transform(F[tr]), y[tr].astype(str))
        clf.score(pca.transform(F[~tr]), y[~tr].astype(str))
    out["audit"] = (len(X), time.perf_counter() - t0,
                    "scikit-learn PCA(64) + LogisticRegression for identity and expression, originals only, in memory")
    return out


def _fmt_s(s: float) -> str:
    return f"{s / 60:.1f} min" if s >= 120 else f"{s:.1f} s"


def performance_section(res: dict, refs: dict, meta: dict) -> str:
    tm = res["summary"].get("timings") or {}
    n = tm.get("images") or res["summary"]["dataset"].get("rows")
    st = tm.get("stages_s", {})
    L = [f"## A release at full size: `{res['config']}`", "",
         f"Written by `{meta['command']}`; nothing here is typed by hand.", "",
         f"- machine: {meta['machine']}; commit {meta['commit']}",
         f"- load average (1/5/15 min) at start: {res['load_start']}; at end: {res['load_end']}",
         f"- `deid run` end to end from an empty work folder (data generation included): "
         f"**{_fmt_s(res['wall_s'])}** for {n:,} images, exit code {res['exit']}",
         f"- peak memory: the largest single process {res['peak_process_mb']:,.0f} MB "
         f"(`{res['peak_process']}`); all processes of the run together (flow, Prefect and MLflow servers) "
         f"{res['peak_tree_mb']:,.0f} MB at most, sampled once a second", ""]
    L += ["| stage | wall s | images | images/s | bare-library reference | reference images/s |",
          "|---|---|---|---|---|---|"]
    ing = refs.get("ingest")
    L.append(f"| data generation + ingest | {st.get('ingest', float('nan')):.1f} | {n:,} | "
             f"{n / st['ingest']:,.0f} | {ing[2] if ing else '–'} | "
             f"{(ing[0] / ing[1]) if ing else float('nan'):,.0f} |" if st.get("ingest") else "| ingest | – | | | | |")
    for m, f in tm.get("methods", {}).items():
        if "fit_seconds" in f:
            ref = refs.get(f"transform {m}")
            L.append(f"| fit `{m}` | {f['fit_seconds']:.1f} | – | – | – | – |")
            L.append(f"| transform `{m}` | {f['rows'] / f['images_per_s']:.1f} | {f['rows']:,} | "
                     f"{f['images_per_s']:,.0f} | {ref[2] if ref else '–'} | "
                     f"{(ref[0] / ref[1]) if ref and ref[0] else float('nan'):,.0f} |")
    a = refs.get("audit")
    if st.get("audit"):
        L.append(f"| audit (all methods) | {st['audit']:.1f} | {n:,} × {len(tm.get('methods', {}))} | "
                 f"{n * len(tm.get('methods', {})) / st['audit']:,.0f} | {a[2] if a else '–'} | "
                 f"{(a[0] / a[1]) if a else float('nan'):,.0f} |")
    for k in ("report_and_tracking", "release"):
        if k in st:
            L.append(f"| {k.replace('_', ' ')} | {st[k]:.1f} | | | | |")
    per_method = {m: f.get("audit_seconds") for m, f in tm.get("methods", {}).items() if f.get("audit_seconds")}
    if per_method:
        L += ["", "Audit seconds per row: " + ", ".join(f"`{m}` {s:.0f} s" for m, s in per_method.items()) + "."]
    L += ["", growth(res, tm, n)]
    return "\n".join(L)


def growth(res: dict, tm: dict, n: int) -> str:
    """What 1M and 10M images would need, from this run's measured per-image costs (an estimate)."""
    st = tm.get("stages_s", {})
    fits = sum(f.get("fit_seconds", 0.0) for f in tm.get("methods", {}).values())
    transform = sum(f["rows"] / f["images_per_s"] for f in tm.get("methods", {}).values() if f.get("images_per_s"))
    ingest, audit = st.get("ingest", 0.0), st.get("audit", 0.0)
    per = {"ingest": ingest / n, "transform": transform / n, "audit": audit / n}
    rows = {m: f["audit_seconds"] for m, f in tm.get("methods", {}).items() if f.get("audit_seconds")}
    ref_row = rows.pop("original", 0.0)
    fixed = max(0.0, audit - ref_row - sum(rows.values()))  # the negative control, decoding, the CNN features
    L = ["### Growth on paper (an estimate from the figures above, not a measurement)", "",
         f"Per image on this machine: ingest {1e3 * per['ingest']:.2f} ms, transform (all methods) "
         f"{1e3 * per['transform']:.2f} ms, audit (all methods) {1e3 * per['audit']:.2f} ms; the fits took "
         f"{fits / 60:.1f} min and train a fixed number of steps, so they do not grow with N (a bigger set would "
         "be given more steps by choice, not by necessity). Ingest and transform are per-image and spread over "
         "workers (ingest's process pool, the Dask transform). The audit streams, so its memory stays flat and "
         "its time grows linearly; on a Dask cluster (a `dask` block in the config) its method rows are dealt "
         f"into one part per worker (`deid.audit_dask`), each part auditing the originals too: with {len(rows)} "
         f"method rows here, at most {len(rows)} parts, each costing the reference row ({ref_row:.0f} s here) and "
         f"the fixed work ({fixed:.0f} s) plus its share of the rows ({sum(rows.values()):.0f} s in all).", "",
         "| images | workers (2 cores each) | ingest h | transform h | audit h, one process | "
         "audit h, split by method | wall h, estimate | memory per worker |", "|---|---|---|---|---|---|---|---|"]
    peak = res["peak_process_mb"]
    for N in (1_000_000, 10_000_000):
        for w in (1, 8, 32):
            scale = N / n / 3600
            hi = N * per["ingest"] / w / 3600
            ht = N * per["transform"] / w / 3600
            ha = N * per["audit"] / 3600
            parts = max(1, min(w, len(rows)))
            hs = (ref_row + fixed + sum(rows.values()) / parts) * scale if rows else ha
            L.append(f"| {N:,} | {w} | {hi:.1f} | {ht:.1f} | {ha:.1f} | {hs:.1f} | {hi + ht + hs + fits / 3600:.1f} | "
                     f"≤ {peak / 1024:.1f} GB (this run's largest process) |")
    L += ["", "The audit dominates, and splitting it by method stops at one part per method row: a 10M-image "
          "release of one method audits in one part whatever the cluster. The next split is inside a row (each "
          "attacker and each label on a worker of its own: they train on chunks already). With GPUs the torch "
          "parts (the learned methods' fits and transforms, the reference CNNs of the audit) shrink; no GPU was "
          "available here, so no GPU figure is given."]
    return "\n".join(L)


def results_section(res: dict, meta: dict) -> str:
    from deid.reporting.summary import RunSummaryDoc
    from deid.reporting.text import verdict_markdown

    doc = RunSummaryDoc.model_validate(res["summary"])
    body = verdict_markdown(doc).split("\n", 1)[1]  # without its own heading
    d = res["summary"]["dataset"]
    return "\n".join([f"## A release at full size: `{res['config']}`", "",
                      f"Written by `{meta['command']}` from the run's summary; nothing here is typed by hand. "
                      f"{d.get('rows', 0):,} images, {d.get('identities', '?')} identities, splits {d.get('by_split')}; "
                      f"load average at start {res['load_start']}, at end {res['load_end']}; "
                      f"{_fmt_s(res['wall_s'])} end to end.", body])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", type=Path)
    ap.add_argument("--work", type=Path, default=None, help="work folder (emptied first)")
    ap.add_argument("--docs", type=Path, default=ROOT / "docs")
    ap.add_argument("--json", type=Path, default=None, help="also write the measurements here")
    a = ap.parse_args()
    from deid.provenance import command_line, git_commit, machine

    work = a.work or Path("/tmp/deid-release-bench") / a.config.stem
    meta = {"command": command_line("bench/bench_release.py"), "machine": machine(), "commit": git_commit()}
    print(f"running {a.config} end to end in {work} ...", flush=True)
    res = run_release(a.config.resolve(), work)
    res["config"] = str(a.config)
    print(f"done in {_fmt_s(res['wall_s'])} (exit {res['exit']}); measuring the references ...", flush=True)
    refs = references(work, res["summary"])
    if a.json:
        a.json.write_text(json.dumps({"run": {k: v for k, v in res.items() if k != "summary"}, "refs": refs,
                                      "timings": res["summary"].get("timings")}, indent=1, default=str))
    name = f"bench_release {a.config.stem}"
    write_section(a.docs / "PERFORMANCE.md", name, performance_section(res, refs, meta))
    write_section(a.docs / "RESULTS.md", name, results_section(res, meta))
    print(performance_section(res, refs, meta))


if __name__ == "__main__":
    main()
