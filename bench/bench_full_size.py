"""The release run at FERG's size: generate and ingest the built-in FERG-like set at 55,776 images
(6 characters × 7 expressions × 1,328, the nearest to FERG-DB's 55,767), then fit and transform each
method of configs/ferg-full.yaml on it with ``deid.pipeline.fit_method`` and ``anonymize_table``.

Every stage runs in a process of its own under ``/usr/bin/time -v``, so its wall time and peak
resident memory are its own (the generator's and the ingest's worker processes are counted by the
process-group sampler, ``group peak``). A watchdog stops a stage that runs longer than
``--max-minutes`` or whose process group holds more than ``--max-mb``, and the table says so. The
audit is not measured. The load average is printed before and after each stage: on a shared machine
it says how much of the two cores a stage had.

    .venv/bin/python bench/bench_full_size.py --work /tmp/ff                       # everything, 15 min / 4 GB caps
    .venv/bin/python bench/bench_full_size.py --work /tmp/ff --stages generate ingest
    .venv/bin/python bench/bench_full_size.py --work /tmp/ff --stages methods \\
        --methods blur pixelate ksame-select:k=6 proxy-mix:k=3,epochs=1 proxy-mix:k=3 --json /tmp/ff/rows.json
    .venv/bin/python bench/bench_full_size.py --work /tmp/ff --from-json /tmp/ff/rows.json   # its table again

A method is ``name`` or ``name:key=value,key=value`` (values read as YAML). ``proxy-mix:k=3,epochs=1``
is one full pass over the training split: its seconds per optimiser step times the default's steps
(30 epochs, ``epochs × ⌈n_train / 64⌉``) is what the default fit costs at this size. ``fit_rows=N``
(read by this script, not the method) fits on a uniform sample of N training rows and then transforms
the whole table: a step costs the same whatever the set's size, so ``proxy-mix:k=3,epochs=1,min_steps=0,
fit_rows=6400`` gives the seconds per step and the full-size transform in a few minutes; ``transform=false``
(also this script's) fits only. Two sample sizes give the seconds per step without the fixed cost:

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_full_size.py --work /tmp/ff --stages methods --methods \\
        proxy-mix:k=3,epochs=1,min_steps=0,fit_rows=1280 proxy-mix:k=3,epochs=1,min_steps=0,fit_rows=6400,transform=false
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: what configs/ferg-full.yaml asks for
PER_CELL, CHARACTERS, EXPRESSIONS = 1328, 6, 7
SPLIT = {"val": 0.1, "test": 0.2, "seed": 0}
METHODS = ("blur", "pixelate", "ksame-select:k=6", "proxy-mix:k=3")


def _parse_method(spec: str) -> tuple[str, dict]:
    from bench.common import key_values

    name, _, rest = spec.partition(":")
    return name, key_values(rest.split(","))


def _label(spec: str) -> str:
    return re.sub(r"[^a-z0-9.-]+", "-", spec.lower()).strip("-")


def _paths(work: Path, per_cell: int) -> tuple[Path, Path]:
    return work / "data" / f"ferg-{per_cell}", work / "datasets" / f"ferg-{per_cell}"


# -- inside the measured process -------------------------------------------------------------------------------
def _one(stage: str, work: Path, per_cell: int, workers: int) -> dict:
    import resource

    data, ingested = _paths(work, per_cell)
    if stage == "generate":
        from deid.datasets.synthetic import SyntheticFergConfig, generate_ferg_like

        if data.exists():
            shutil.rmtree(data)
        t0 = time.perf_counter()
        tree = generate_ferg_like(data, SyntheticFergConfig(CHARACTERS, per_cell, size=256, entanglement=0.5),
                                  workers=workers)
        secs = time.perf_counter() - t0
        n = sum(1 for _ in tree.rglob("*.png"))
        res = {"rows": n, "seconds": secs}
    elif stage == "ingest":
        from deid.ingest import ingest_dataset
        from deid.preprocessing import PreprocessConfig
        from deid.splits import SplitConfig

        if ingested.exists():
            shutil.rmtree(ingested)
        tree = data / "FERG_DB_256"
        t0 = time.perf_counter()
        s = ingest_dataset("ferg", tree, ingested, preprocess=PreprocessConfig(size=50, grayscale=True),
                           split=SplitConfig(**SPLIT), workers=workers)
        res = {"rows": s.written, "seconds": time.perf_counter() - t0, "quarantined": s.quarantined}
    elif stage.startswith("method="):
        import numpy as np
        import torch

        from data_contracts import IMAGES_SCHEMA, count_rows, read_table
        from deid.pipeline import anonymize_table, fit_method

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
        spec = stage.split("=", 1)[1]
        name, params = _parse_method(spec)
        images = ingested / "images"
        out = work / "runs" / _label(spec)
        shutil.rmtree(out, ignore_errors=True)
        n_train = read_table(images, IMAGES_SCHEMA, columns=["split"], splits=("train",)).num_rows
        fit_rows = params.pop("fit_rows", None)
        transform = params.pop("transform", True)
        t0 = time.perf_counter()
        if fit_rows is None:
            method = fit_method(name, params, images, out / "model")
        else:  # fitted on a uniform sample of the training split (a step's cost does not depend on the set's size)
            from data_contracts import atomic_dir
            from deid.data import load_image_set
            from deid.methods import get_method

            train = load_image_set(images, splits=("train",))
            rows = np.sort(np.random.default_rng(0).choice(len(train.X), int(fit_rows), replace=False))
            method = get_method(name, **params).fit(train.X[rows], train.identity[rows], train.label[rows])
            del train
            with atomic_dir(out / "model") as tmp:
                method.save(tmp)
            n_train = int(fit_rows)
        fit_s = time.perf_counter() - t0
        fit_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        res = {"rows": count_rows(images), "n_train": n_train, "fit_s": fit_s, "fit_peak_mb": fit_peak}
        if transform:
            stats = anonymize_table(method, images, out / "anonymized")
            res.update(transform_s=stats["seconds"], images_per_s=stats["images_per_s"], decode_s=stats["decode_s"],
                       model_s=stats["model_s"], encode_s=stats["encode_s"])
        report = getattr(method, "train_report_", None)
        if isinstance(report, dict) and "epochs" in report:
            bs = int(min(getattr(method, "batch_size", 64), n_train))
            res["epochs"] = int(report["epochs"])
            res["steps"] = int(report["epochs"]) * -(-n_train // bs)
        shutil.rmtree(out / "anonymized", ignore_errors=True)  # the scratch disk holds one method's output at a time
    else:
        raise SystemExit(f"unknown stage {stage!r}")
    res["peak_mb_self"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return res


# -- the driver ----------------------------------------------------------------------------------------------
def _group_rss_mb(pgid: int) -> float:
    """Resident memory of every process in process group ``pgid``."""
    total = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            for line in (d / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1024


def _time_v(text: str) -> dict:
    out = {}
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    if m:
        out["peak_mb"] = int(m.group(1)) / 1024
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    if m:
        secs = 0.0
        for part in m.group(1).split(":"):
            secs = secs * 60 + float(part)
        out["wall_s"] = secs
    m = re.search(r"Percent of CPU this job got: (\d+)%", text)
    if m:
        out["cpu_pct"] = int(m.group(1))
    cpu = [float(v) for v in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", text)]
    if cpu:
        out["cpu_s"] = sum(cpu)
    return out


def _loadavg() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def run_stage(stage: str, args, say=print) -> dict:
    """``stage`` in a child under ``/usr/bin/time -v``, stopped past the time or memory cap."""
    logs = args.work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{_label(stage)}.log"
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               PYTHONPATH=str(ROOT))
    cmd = ["/usr/bin/time", "-v", sys.executable, str(Path(__file__).resolve()), "--one", stage,
           "--work", str(args.work), "--per-cell", str(args.per_cell), "--workers", str(args.workers)]
    before = _loadavg()
    say(f"{stage}: running (load {before}); log {log}")
    t0 = time.perf_counter()
    group_peak, stopped = 0.0, None
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=ROOT,
                                start_new_session=True)
        while proc.poll() is None:
            group_peak = max(group_peak, _group_rss_mb(proc.pid))
            elapsed = time.perf_counter() - t0
            if elapsed > args.max_minutes * 60:
                stopped = f"stopped after {elapsed / 60:.1f} min (cap {args.max_minutes:g} min)"
            elif group_peak > args.max_mb:
                stopped = f"stopped at {group_peak:.0f} MB resident (cap {args.max_mb} MB)"
            if stopped:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(1.0)
        stdout = proc.communicate()[0]
    wall = time.perf_counter() - t0
    row = {"stage": stage, "load_before": before, "load_after": _loadavg(), "group_peak_mb": group_peak,
           "wall_s": wall}
    row.update(_time_v(log.read_text()))
    if stopped:
        row["note"] = stopped
    elif proc.returncode != 0:
        tail = [ln for ln in log.read_text().splitlines() if ln.strip() and not ln.startswith("\t")][-1:]
        row["note"] = f"failed (exit {proc.returncode}): {tail[0][:200] if tail else ''}"
    else:
        row.update(json.loads(stdout.strip().splitlines()[-1]))
    say(f"{stage}: {json.dumps(row)}")
    return row


def _f(v, fmt="{:,.1f}") -> str:
    return fmt.format(v) if isinstance(v, (int, float)) else "—"


def table(rows: list[dict], meta: dict) -> str:
    lines = [(f"Full-size run, {meta['images']:,} images ({CHARACTERS} × {EXPRESSIONS} × {meta['per_cell']}), "
             f"split val {SPLIT['val']} / test {SPLIT['test']}, 50 px grayscale; OMP_NUM_THREADS={meta['threads']}, "
             f"workers={meta['workers']}; caps {meta['max_minutes']:g} min, {meta['max_mb']} MB."),
             (f"Machine: {meta['machine']}; commit {meta['commit']}; load average at start {meta['load_start']}, "
             f"at end {meta['load_end']}."), "",
             ("| stage | rows | train rows | fit s | transform s | transform images/s | epochs | steps | s/step | "
             "wall s | CPU s | CPU % | peak MB | group peak MB | load before | load after | note |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        stage = r["stage"].removeprefix("method=")
        secs = r.get("seconds")
        per_step = r["fit_s"] / r["steps"] if r.get("steps") else None
        ips = r.get("images_per_s") or (r["rows"] / secs if secs and r.get("rows") else None)
        lines.append("| " + " | ".join([
            f"`{stage}`", _f(r.get("rows"), "{:,}"), _f(r.get("n_train"), "{:,}"), _f(r.get("fit_s")),
            _f(r.get("transform_s") if "transform_s" in r else secs), _f(ips, "{:,.0f}"),
            _f(r.get("epochs"), "{}"), _f(r.get("steps"), "{:,}"), _f(per_step, "{:.3f}"), _f(r.get("wall_s")),
            _f(r.get("cpu_s")), _f(r.get("cpu_pct"), "{}"), _f(r.get("peak_mb"), "{:,.0f}"),
            _f(r.get("group_peak_mb"), "{:,.0f}"), r["load_before"], r["load_after"], r.get("note", "")]) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="scratch folder (data, Parquet, models, logs)")
    p.add_argument("--per-cell", type=int, default=PER_CELL, help="images per (character, expression)")
    p.add_argument("--workers", type=int, default=2, help="processes for generation and ingest")
    p.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS (and torch threads) of every stage")
    p.add_argument("--stages", nargs="+", default=["generate", "ingest", "methods"],
                   choices=["generate", "ingest", "methods"])
    p.add_argument("--methods", nargs="+", default=list(METHODS), help="name or name:key=value,...")
    p.add_argument("--max-minutes", type=float, default=15.0, help="stop a stage that runs longer")
    p.add_argument("--max-mb", type=int, default=4096, help="stop a stage whose processes hold more")
    p.add_argument("--out", type=Path, help="also write the markdown table here")
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    p.add_argument("--from-json", type=Path, help="print the table of a saved --json run (its logs re-read)")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.work = args.work.resolve()
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        for r in saved["rows"]:
            log = args.work / "logs" / f"{_label(r['stage'])}.log"
            if log.is_file():
                r.update(_time_v(log.read_text()))
        text = table(saved["rows"], saved["meta"])
        print(text)
        if args.out:
            args.out.write_text(text)
        return 0
    if args.one:
        print(json.dumps(_one(args.one, args.work, args.per_cell, args.workers)))
        return 0

    from deid.provenance import git_commit, machine

    meta = {"images": CHARACTERS * EXPRESSIONS * args.per_cell, "per_cell": args.per_cell, "threads": args.threads,
            "workers": args.workers, "max_minutes": args.max_minutes, "max_mb": args.max_mb, "machine": machine(),
            "commit": git_commit(), "load_start": _loadavg()}
    stages = [s for s in args.stages if s != "methods"]
    if "methods" in args.stages:
        stages += [f"method={m}" for m in args.methods]
    rows = [run_stage(s, args) for s in stages]
    meta["load_end"] = _loadavg()
    text = table(rows, meta)
    print(text)
    if args.out:
        args.out.write_text(text)
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
