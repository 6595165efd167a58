"""Transform throughput on Dask workers against the in-process loop, in the same run.

A CPU-bound learned method (latent-shift, convolutional autoencoder at 64 × 64 by default) is fitted
once on a small set (not measured), then transforms the built-in FERG-like set Parquet to Parquet
three ways: ``deid.pipeline.anonymize_table`` in this process (the reference), and
``deid.transform_dask.anonymize_table_dask`` on a LocalCluster of 1 and of 2 single-threaded
workers. Every side runs torch on one thread; the clusters start before the clock does (their
start-up time is printed apart). Each side's table is compared with the reference's, byte for byte.
The load average is printed before and after each measurement: on a shared machine it says how
much of the cores the run had.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_transform.py                 # 4,200 images, 1 repeat
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_transform.py --per-cell 50 --repeats 3
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_transform.py --doc docs/PERFORMANCE.md   # also write its section
    .venv/bin/python bench/bench_transform.py --from-json run.json --doc docs/PERFORMANCE.md   # a saved --json run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import markers, write_section

#: the learned method measured, at the settings of bench_learned.py's convolutional row; few epochs
#: (fit quality does not change the transform's cost)
METHOD = ("latent-shift", {"architecture": "conv", "image_size": 64, "width": 32, "code_channels": 256,
                           "ae_epochs": 1, "finetune_epochs": 1, "post_epochs": 0, "n_clusters": 4,
                           "device": "cpu", "random_state": 0})
SIDES = ("in-process", "dask 1 worker", "dask 2 workers")
BEGIN, END = markers("bench_transform")


def _tables(work: Path, per_cell: int, size: int) -> tuple[Path, Path]:
    """The ingested images table to transform (6 characters × 7 expressions × ``per_cell``) and a small one to fit on."""
    from deid.datasets.synthetic import SyntheticFergConfig, generate_ferg_like
    from deid.ingest import ingest_dataset
    from deid.preprocessing import PreprocessConfig

    out = {}
    for name, n in (("fit", 4), ("run", per_cell)):
        dest = work / f"{name}-{n}-{size}"
        if not (dest / "images").is_dir():
            tree = generate_ferg_like(work / f"raw-{n}", SyntheticFergConfig(6, n, size=size), workers=1)
            ingest_dataset("ferg", tree, dest, preprocess=PreprocessConfig(size=size), workers=1)
        out[name] = dest / "images"
    return out["fit"], out["run"]


def _warm_up(name: str) -> None:
    import torch  # noqa: F401

    from deid.methods import method_class

    method_class(name)


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (all its threads)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _cpu_now(client) -> float:
    """CPU seconds of this process and, with a ``client``, of every worker process."""
    return _cpu_seconds() + (sum(client.run(_cpu_seconds).values()) if client is not None else 0.0)


def _same(a: Path, b: Path) -> bool:
    from data_contracts import table_files

    fa, fb = [p.relative_to(a) for p in table_files(a)], [p.relative_to(b) for p in table_files(b)]
    return fa == fb and all((a / r).read_bytes() == (b / r).read_bytes() for r in fa)


def run(per_cell: int, repeats: int, batch_size: int, work: Path, say=print) -> dict:
    import logging

    import torch

    from data_contracts import count_rows
    from deid.faces_dask import DaskConfig, open_client
    from deid.pipeline import anonymize_table, fit_method
    from deid.provenance import git_commit, loadavg, machine
    from deid.transform_dask import anonymize_table_dask

    torch.set_num_threads(1)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    name, params = METHOD
    fit_images, images = _tables(work, per_cell, params["image_size"])
    n = count_rows(images)
    model_dir = work / "model"
    shutil.rmtree(model_dir, ignore_errors=True)
    method = fit_method(name, params, fit_images, model_dir)
    meta = {"machine": machine(), "commit": git_commit(), "images": n, "batch_size": batch_size,
            "method": f"{name} {params}", "load_start": loadavg(), "nice": os.nice(0)}
    say(f"machine: {meta['machine']}\ncommit: {meta['commit']}\n{name} {params}\n"
        f"{n:,} images at {params['image_size']} px, batch {batch_size}, {repeats} repeat(s); "
        f"load average at start: {meta['load_start']}")
    times: dict[str, list[float]] = {s: [] for s in SIDES}
    loads: dict[str, list[str]] = {s: [] for s in SIDES}
    cores: dict[str, list[float]] = {s: [] for s in SIDES}  # CPU seconds obtained per wall second
    identical = True
    clusters = {}
    try:
        for workers in (1, 2):
            t = time.perf_counter()
            cm = open_client(DaskConfig(n_workers=workers))
            clusters[workers] = (cm, cm.__enter__())
            # Each worker imports torch and the method's module before the clock (seconds of a fresh process,
            # paid once per worker); the model itself loads inside the measured run.
            clusters[workers][1].run(_warm_up, name)
            say(f"LocalCluster of {workers} worker(s) started and warmed up in {time.perf_counter() - t:.1f} s "
                "(not counted)")
        ref = work / "out-ref"
        for r in range(repeats):
            for side in SIDES:
                out = work / f"out-{side.replace(' ', '-')}"
                shutil.rmtree(out, ignore_errors=True)
                before = loadavg()
                client = None if side == "in-process" else clusters[1 if "1 worker" in side else 2][1]
                cpu0, wall0 = _cpu_now(client), time.perf_counter()
                if side == "in-process":
                    shutil.rmtree(ref, ignore_errors=True)
                    stats = anonymize_table(method, images, ref, batch_size=batch_size)
                else:
                    stats = anonymize_table_dask(model_dir, images, out, batch_size=batch_size, client=client)
                cpu, wall = _cpu_now(client) - cpu0, time.perf_counter() - wall0
                if side != "in-process":
                    identical &= _same(ref, out)
                times[side].append(stats["seconds"])
                cores[side].append(cpu / wall)
                loads[side].append(f"{before} → {loadavg()}")
                say(f"  repeat {r + 1} {side:15s} {stats['seconds']:7.1f} s  {n / stats['seconds']:7.1f} images/s  "
                    f"(model {stats['model_s']:.1f} s, decode {stats['decode_s']:.1f} s, encode+write "
                    f"{stats['encode_s']:.1f} s; {cores[side][-1]:.2f} cores obtained; load {loads[side][-1]})")
    finally:
        for cm, _ in clusters.values():
            cm.__exit__(None, None, None)
    rows = []
    for side in SIDES:
        s = statistics.median(times[side])
        rows.append({"side": side, "seconds": s, "images_per_s": n / s, "runs": times[side], "load": loads[side],
                     "cores": statistics.median(cores[side]),
                     "images_per_cpu_s": statistics.median(n / (t * c) for t, c in zip(times[side], cores[side]))})
    by = {r["side"]: r for r in rows}
    meta.update(load_end=loadavg(), identical=identical,
                speedup_2_over_1=by["dask 2 workers"]["images_per_s"] / by["dask 1 worker"]["images_per_s"],
                speedup_2_over_in_process=by["dask 2 workers"]["images_per_s"] / by["in-process"]["images_per_s"])
    say(f"\n{'side':16s} {'median s':>9s} {'images/s':>9s} {'cores':>6s} {'images/CPU-s':>12s}")
    for r in rows:
        say(f"{r['side']:16s} {r['seconds']:9.1f} {r['images_per_s']:9.1f} {r['cores']:6.2f} {r['images_per_cpu_s']:12.1f}")
    say(f"2 workers / 1 worker: {meta['speedup_2_over_1']:.2f}×; 2 workers / in-process: "
        f"{meta['speedup_2_over_in_process']:.2f}×; tables identical to the in-process one: {identical}; "
        f"load average at end: {meta['load_end']}")
    return {"meta": meta, "rows": rows}


def render(result: dict, command: str) -> str:
    """The section of docs/PERFORMANCE.md, between its markers."""
    m = result["meta"]
    L = [BEGIN, "## Transform on Dask workers", "",
         f"Written by `{command}`; nothing here is typed by hand.", "",
         f"- machine: {m['machine']}; commit {m['commit']}",
         f"- {m['images']:,} images of the built-in set, batch {m['batch_size']}; method `{m['method']}`, "
         "fitted on a small set beforehand (not measured); one torch thread per process",
         f"- load average (1/5/15 min) at start: {m['load_start']}; at end: {m['load_end']}; "
         f"this run's niceness: {m.get('nice', 'not recorded')}", "",
         "| side | median s | images/s | cores obtained | images per CPU-second | runs (s) | "
         "load average before → after each run |", "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        L.append(f"| {r['side']} | {r['seconds']:.1f} | {r['images_per_s']:.1f} | {r['cores']:.2f} | "
                 f"{r['images_per_cpu_s']:.1f} | {', '.join(f'{x:.1f}' for x in r['runs'])} | {'; '.join(r['load'])} |")
    per_cpu = {r["side"]: r["images_per_cpu_s"] for r in result["rows"]}
    L += ["", f"2 workers against 1 worker: **{m['speedup_2_over_1']:.2f}×** in wall time; per CPU-second, 2 workers "
          f"keep {per_cpu['dask 2 workers'] / per_cpu['dask 1 worker']:.0%} of 1 worker's throughput and 1 worker "
          f"{per_cpu['dask 1 worker'] / per_cpu['in-process']:.0%} of the in-process loop's. 2 workers against the "
          f"in-process loop: {m['speedup_2_over_in_process']:.2f}×. The Dask tables are byte-identical to the in-process one: "
          f"{'yes' if m['identical'] else 'NO'}. The clusters started (and imported torch) before the clock; the driver (reading "
          "row groups, writing the output) shares the two cores with the workers. *Cores obtained* is the CPU time "
          "of the driver and the workers over the wall time: what the run got of the machine, which other "
          "processes share; *images per CPU-second* is the throughput per core obtained, which says how 2 workers "
          "would scale on cores of their own (an estimate, not a measurement).", END]
    return "\n".join(L)


def main() -> None:
    from deid.provenance import command_line

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-cell", type=int, default=100, help="images per (character, expression): 42 × this in all")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--work", type=Path, default=None, help="data and outputs (default: a temporary folder)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--doc", type=Path, default=None, help="write the figures as a section of this Markdown file")
    ap.add_argument("--from-json", type=Path, default=None, help="measure nothing: write --doc from a --json file")
    a = ap.parse_args()
    if a.from_json:
        if not a.doc:
            ap.error("--from-json needs --doc")
        saved = json.loads(a.from_json.read_text())
        write_section(a.doc, "bench_transform", render(saved, saved["command"]))
        print(f"wrote its section of {a.doc} from {a.from_json}")
        return
    if a.per_cell < 1 or a.repeats < 1 or a.batch_size < 1:
        ap.error("--per-cell, --repeats and --batch-size must be at least 1")
    work = a.work or Path(tempfile.mkdtemp(prefix="bench-transform-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        result = run(a.per_cell, a.repeats, a.batch_size, work)
    finally:
        if a.work is None:
            shutil.rmtree(work, ignore_errors=True)
    cmd = f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} " + \
        command_line(".venv/bin/python", ["bench/bench_transform.py", *sys.argv[1:]])
    if a.json:
        a.json.write_text(json.dumps({**result, "command": cmd}, indent=1))
    if a.doc:
        write_section(a.doc, "bench_transform", render(result, cmd))
        print(f"wrote its section of {a.doc}")


if __name__ == "__main__":  # LocalCluster re-imports __main__ in its workers
    main()
