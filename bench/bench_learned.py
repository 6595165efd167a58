"""Benchmark and audit of the learned methods: autoencoder latent shift and k-Same-Net.

Speed (``--speed``): de-identification throughput at 64×64, batch 256, Parquet to Parquet
(row groups streamed through a DataLoader, PNG decode → model → PNG encode → validated write),
with the time split into decode / model / encode, next to the bare forward pass on random
tensors in the same run (the ceiling); peak resident memory of the streamed transform for each
table size in ``--sizes``, each size in a fresh process. k-Same-Net is set-level (it clusters
the whole set), so its figure is in-memory: recognition + clustering + generation.

Quality (``--quality``): methods fitted on train+val only, applied to every split, audited by
:func:`deid.evaluation.audit.audit` (informed attackers trained on the anonymized train split,
tested on the anonymized test split, for identity and expression; linkage; k-anonymity;
SSIM/PSNR; dlib faceness/DEID/DIV on real faces), next to the originals and the blur baseline;
prints the table and writes a privacy–utility scatter across α, K and n.

Run:  OMP_NUM_THREADS=2 .venv/bin/python bench/bench_learned.py --speed --out /tmp/learned
      OMP_NUM_THREADS=1 .venv/bin/python bench/bench_learned.py --quality --dataset ferg --out /tmp/learned
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

JAFFE = Path(__file__).resolve().parents[2] / "shared" / "data" / "jaffe"
SIZE, BATCH = 64, 256
SPEED_METHODS = {
    "fc 4096-1024-768-512": dict(architecture="fc", image_size=64, hidden="1024-768-512"),
    "conv 64→(256,2,2)": dict(architecture="conv", image_size=64, width=32, code_channels=256),
    "fc + deblur + smooth": dict(architecture="fc", image_size=64, deblur=True, smooth=True, width=32),
}


# -- data -------------------------------------------------------------------------------------
def prepare(dataset: str, cache: Path, size: int | None = None) -> Path:
    from deid.ingest import ingest_dataset
    from deid.preprocessing import PreprocessConfig

    if dataset == "ferg":
        from deid.datasets.synthetic import SyntheticFergConfig, generate_ferg_like

        out = cache / f"ferg{size or 50}"
        if not (out / "images").is_dir():
            tree = generate_ferg_like(cache / "raw-ferg", SyntheticFergConfig(images_per_cell=30), workers=1)  # 1,260 images, as its doc says
            ingest_dataset("ferg", tree, out, preprocess=PreprocessConfig(size=size or 50), workers=1)
    else:
        out = cache / "jaffe64"
        ingest_dataset("jaffe", JAFFE, out, preprocess=PreprocessConfig(size=64), workers=1)
    return out / "images"


def big_table(src: Path, n: int, dst: Path) -> Path:
    """An ``images`` table of ``n`` rows made by repeating ``src``'s rows with fresh ids."""
    import pyarrow as pa

    from data_contracts import IMAGES_SCHEMA, TableWriter, read_table

    if dst.is_dir():
        return dst
    base = read_table(src, IMAGES_SCHEMA)
    with TableWriter(dst, IMAGES_SCHEMA, row_group_size=BATCH) as w:
        done = 0
        while done < n:
            t = base.slice(0, min(base.num_rows, n - done))
            ids = pa.array([f"{done + i:016x}" for i in range(t.num_rows)])
            w.write(t.set_column(t.schema.get_field_index("image_id"), "image_id", ids))
            done += t.num_rows
    return dst


# -- speed ------------------------------------------------------------------------------------
def fitted(cfg: dict, X: np.ndarray):
    """A method with the speed config, trained for 0 epochs (throughput does not depend on weights)."""
    from deid.methods import get_method

    m = get_method("latent-shift", target="none", ae_epochs=0, post_epochs=0, device="auto", **cfg)
    return m.fit(X)


@torch.no_grad()
def bare_forward(m, channels: int, reps: int = 12) -> float:
    dev = m.modules_to("auto")
    x = torch.rand(BATCH, channels, SIZE, SIZE, device=dev)
    m.forward(x)
    t = time.perf_counter()
    for _ in range(reps):
        m.forward(x)
    return BATCH * reps / (time.perf_counter() - t)


def stream_transform(m, src: Path, dst: Path, num_workers: int = 0) -> dict:
    """Parquet → Parquet with the method; returns images/s and the decode/model/encode split."""
    import pyarrow as pa

    from data_contracts import ANONYMIZED_SCHEMA, TableWriter
    from deid.imageio import array_to_pngs
    from deid.models.autoencoder import iter_image_batches

    cols = ["image_id", "dataset", "split", "identity", "label", "image", "height", "width", "channels"]
    t_dec = t_mod = t_enc = 0.0
    n = 0
    t0 = time.perf_counter()
    loader = iter(iter_image_batches(src, batch_size=BATCH, columns=cols, num_workers=num_workers))
    with TableWriter(dst, ANONYMIZED_SCHEMA, row_group_size=BATCH) as w:
        while True:
            a = time.perf_counter()
            try:
                X, rows = next(loader)
            except StopIteration:
                break
            b = time.perf_counter()
            Y = m.transform(X.numpy())
            c = time.perf_counter()
            pngs = array_to_pngs(Y)
            out = rows.append_column("method", pa.array([m.name] * rows.num_rows))
            out = out.append_column("image", pa.StructArray.from_arrays(
                [pa.array(pngs, pa.binary()), pa.array([None] * rows.num_rows, pa.string())], ["bytes", "path"]))
            w.write(out.select(ANONYMIZED_SCHEMA.names))
            d = time.perf_counter()
            t_dec, t_mod, t_enc, n = t_dec + b - a, t_mod + c - b, t_enc + d - c, n + len(X)
    total = time.perf_counter() - t0
    return {"images": n, "images_per_s": n / total, "decode_s": t_dec, "model_s": t_mod, "encode_s": t_enc,
            "total_s": total}


def speed(out: Path, sizes: list[int], workers: int) -> None:
    from deid.data import load_image_set

    src64 = prepare("ferg", out / "data", size=SIZE)
    s = load_image_set(src64)
    rows = []
    for name, cfg in SPEED_METHODS.items():
        m = fitted(cfg, s.X[:256])
        ceiling = bare_forward(m, s.X.shape[1])
        big = big_table(src64, 10_000, out / "data" / "big-10000")
        r = stream_transform(m, big, out / "tmp-speed" / name.replace(" ", "_"), num_workers=workers)
        r.update(method=name, bare_forward_per_s=ceiling, ratio=r["images_per_s"] / ceiling)
        rows.append(r)
        print(f"{name:24s} bare {ceiling:8.0f}/s  parquet→parquet {r['images_per_s']:7.0f}/s  "
              f"ratio {r['ratio']:.2f}  split decode {r['decode_s']:.2f}s model {r['model_s']:.2f}s "
              f"encode {r['encode_s']:.2f}s of {r['total_s']:.2f}s ({r['images']} images)", flush=True)
    rows.append(ksame_net_speed(s))
    mem = []
    for n in sizes:
        big_table(src64, n, out / "data" / f"big-{n}")
        res = subprocess.run([sys.executable, __file__, "--memory-child", str(out / "data" / f"big-{n}"),
                              "--out", str(out), "--workers", str(workers)], capture_output=True, text=True, check=True)
        r = json.loads(res.stdout.strip().splitlines()[-1])
        mem.append(r)
        print(f"memory  {n:>7d} images: peak RSS {r['peak_rss_mb']:.0f} MB, {r['images_per_s']:.0f} images/s", flush=True)
    (out / "speed.json").write_text(json.dumps({"speed": rows, "memory": mem}, indent=1))


def ksame_net_speed(s) -> dict:
    from deid.methods import get_method

    X = np.concatenate([s.X] * 4)
    ident = np.concatenate([s.identity] * 4)
    m = get_method("ksame-net", image_size=64, epochs=0, classifier_epochs=1).fit(s.X, s.identity, s.label)
    t = time.perf_counter()
    m.transform(X, ident)
    r = {"method": "ksame_net (set-level, in memory)", "images": len(X),
         "images_per_s": len(X) / (time.perf_counter() - t)}
    with torch.no_grad():
        g = m.generator_.eval()
        xy = torch.rand(BATCH, len(m.proxies_) + len(m.expressions_))
        t = time.perf_counter()
        for _ in range(5):
            g.packed(xy)
        r["bare_forward_per_s"] = 5 * BATCH / (time.perf_counter() - t)
    print(f"{r['method']:24s} generator bare {r['bare_forward_per_s']:7.0f}/s  whole transform "
          f"{r['images_per_s']:7.0f}/s on {len(X)} images", flush=True)
    return r


def memory_child(path: Path, out: Path, workers: int) -> None:
    from deid.data import load_image_set

    s = load_image_set(prepare("ferg", out / "data", size=SIZE))
    m = fitted(SPEED_METHODS["fc 4096-1024-768-512"], s.X[:256])
    r = stream_transform(m, path, out / "tmp-mem" / path.name, num_workers=workers)
    r["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if workers:
        r["peak_rss_mb_children"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps(r))


# -- quality ----------------------------------------------------------------------------------
def variants(n_train: int) -> list[tuple[str, str, dict]]:
    """(label, group, params) for latent shift; group names the base autoencoder they share."""
    v = [("ae fc, no shift", "fc", dict(target="none"))]
    for K in (10, 50, 180):
        if K < n_train // 2:
            v.append((f"ae fc kmeans K={K} α=0.8", "fc", dict(target="kmeans", n_clusters=K, alpha=0.8)))
    for n, a in ((5, 0.8), (9, 0.4), (9, 0.8)):
        v.append((f"ae fc mean-nb n={n} α={a}", "fc", dict(target="mean_neighbour", n_neighbors=n, alpha=a)))
    v.append(("ae fc supervised α=0.8 β=0.5", "fc", dict(target="supervised", alpha=0.8, beta=0.5, n_neighbors=20)))
    v.append(("ae conv, no shift", "conv", dict(target="none")))
    for n in (1, 10):
        v.append((f"ae conv grid n={n} α=0.8", "conv", dict(target="grid_neighbour", n_neighbors=n, alpha=0.8)))
    return v


def quality(dataset: str, out: Path, cnn_epochs: int, deblur: bool, ae_epochs: int | None) -> None:
    from deid.data import ImageSet, load_image_set
    from deid.evaluation.audit import AuditConfig, audit
    from deid.methods import get_method

    s = load_image_set(prepare(dataset, out / "data"))
    trm = np.isin(s.split, ["train", "val"])
    tr = s.subset(trm)
    outputs: dict[str, np.ndarray] = {}
    info: dict[str, dict] = {}

    def q(Y: np.ndarray) -> np.ndarray:  # what a PNG round trip keeps
        return np.rint(np.clip(Y, 0, 1) * 255).astype(np.float32) / 255

    outputs["blur σ=3"] = q(get_method("blur", sigma=3.0).fit(tr.X).transform(s.X))
    bases = {}
    for label, group, params in variants(int(trm.sum())):
        t = time.perf_counter()
        if group not in bases:
            arch = dict(architecture=group, deblur=deblur, smooth=deblur)
            if ae_epochs:
                arch.update(ae_epochs=ae_epochs, finetune_epochs=max(10, ae_epochs // 2))
            bases[group] = get_method("latent-shift", **arch, target="none").fit(tr.X)
            info[f"ae {group} base"] = {"fit_s": time.perf_counter() - t,
                                        "reconstruction": bases[group].history_["reconstruction"][-1]}
            t = time.perf_counter()
        m = copy.deepcopy(bases[group])
        for k, v in params.items():
            setattr(m, k, v)
        if params["target"] != "none":
            m.fine_tune(tr.X, tr.identity, tr.label)
        outputs[label] = q(m.transform(s.X))
        info[label] = {"finetune_s": time.perf_counter() - t, "target_distance": m.target_distance_}
        print(f"{label:32s} fitted in {time.perf_counter() - t:5.1f}s  {m.target_distance_}", flush=True)
    t = time.perf_counter()
    fitted_net = get_method("ksame-net", k=2).fit(tr.X, tr.identity, tr.label)  # k is used at transform
    fit_s = time.perf_counter() - t
    print(f"k-Same-Net fitted in {fit_s:.1f}s, generator loss {fitted_net.history_['generator'][::5]}", flush=True)
    for k in (2, 3):
        t = time.perf_counter()
        m = copy.deepcopy(fitted_net)
        m.k = k
        Y = np.empty_like(s.X)
        reports = {}
        for part in (["train", "val"], ["test"]):  # each released part is k-anonymous on its own
            rows = np.isin(s.split, part)
            Y[rows] = m.transform(s.X[rows], s.identity[rows])
            reports["+".join(part)] = m.last_report_
        outputs[f"k-Same-Net k={k}"] = q(Y)
        info[f"k-Same-Net k={k}"] = {"fit_s": fit_s, "transform_s": time.perf_counter() - t, "groups": reports,
                                     "generator_loss": m.history_["generator"]}
        print(f"k-Same-Net k={k}: transform {time.perf_counter() - t:.1f}s  {reports}", flush=True)

    np.savez_compressed(out / f"outputs-{dataset}.npz", **{k.replace(" ", "_"): v for k, v in outputs.items()})
    anon = {name: ImageSet(Y, s.image_id, s.split, s.identity, s.label) for name, Y in outputs.items()}
    cfg = AuditConfig(cnn_epochs=cnn_epochs, linkage_repeats=3)
    res = audit(s, anon, cfg, dataset=dataset, real_faces=dataset == "jaffe",
                descriptor_cache=out / "dlib-cache", progress=lambda msg: print("  audit:", msg, flush=True))
    table = res.table()
    keys = ["identity_acc_worst", "identity_chance", "utility_acc_best", "utility_orig_clf_acc", "linkage_rank1",
            "k_anonymity", "ssim", "faceness", "deid", "div"]
    print(f"\n{dataset}: audit (identity: lower is better; utility: higher is better)")
    print(f"{'method':34s}" + "".join(f"{k[:14]:>15s}" for k in keys))
    for r in table:
        print(f"{r['method']:34s}" + "".join(f"{r.get(k, float('nan')):15.3f}" for k in keys))
    (out / f"quality-{dataset}.json").write_text(json.dumps({"table": table, "info": info}, indent=1, default=str))
    scatter(table, out / f"privacy-utility-{dataset}.png", dataset)


def scatter(table: list[dict], path: Path, dataset: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 6))
    for r in table:
        name = r["method"]
        colour = ("k" if name in ("original", "blur σ=3") else "tab:red" if "k-Same" in name
                  else "tab:blue" if " fc" in name else "tab:green")
        ax.scatter(r["identity_acc_worst"], r["utility_acc_best"], c=colour)
        ax.annotate(name, (r["identity_acc_worst"], r["utility_acc_best"]), fontsize=6)
    ax.axvline(table[0]["identity_chance"], ls=":", c="grey")
    ax.set_xlabel("identity accuracy, worst-case informed attacker (lower = more private)")
    ax.set_ylabel("expression accuracy, best informed classifier (higher = more useful)")
    ax.set_title(f"{dataset}: privacy–utility across α, K, n")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    print(f"scatter: {path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--speed", action="store_true")
    p.add_argument("--quality", action="store_true")
    p.add_argument("--dataset", choices=["ferg", "jaffe"], default="ferg")
    p.add_argument("--out", type=Path, default=Path("/tmp/deid-learned"))
    p.add_argument("--sizes", default="10000,200000", help="table sizes for the peak-memory check")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers decoding PNGs")
    p.add_argument("--cnn-epochs", type=int, default=8)
    p.add_argument("--deblur", action="store_true", help="add the deblurrer and smoother to every AE variant")
    p.add_argument("--ae-epochs", type=int, help="autoencoder epochs (default: the method's); small sets need more")
    p.add_argument("--memory-child", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.memory_child:
        return memory_child(a.memory_child, a.out, a.workers)
    if a.speed:
        speed(a.out, [int(v) for v in a.sizes.split(",") if v], a.workers)
    if a.quality:
        quality(a.dataset, a.out, a.cnn_epochs, a.deblur, a.ae_epochs)


if __name__ == "__main__":
    main()
