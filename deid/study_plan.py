"""The privacy–utility study's plan: which settings run on which data, and each (dataset, seed) as
the :class:`~deid.config.RunConfig` the anonymization pipeline runs.

The settings are the ones the papers report and a small sweep around them (``plan("full")``);
``plan("quick")`` trims epochs and the sweep; ``plan("full-size")`` runs the papers' settings on
the built-in set at FERG's size (``deid study --full-size``). A setting's *key* (``blur[sigma=2.0]``) names it in
the tables; its *label* (``blur-sigma-2.0``) is the folder and method name the pipeline uses.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deid.config import RunConfig, check_name
from deid.run import ResolvedRun

__all__ = ["StudyPlan", "plan", "setting_label", "key", "method_label", "run_config", "applicable", "describe",
           "audit_summary", "full_estimate", "STUDY_DATASETS", "EXPERIMENT"]

#: the datasets the study knows how to draw or read
STUDY_DATASETS = ("ferg", "jaffe")
#: the MLflow experiment the study logs to
EXPERIMENT = "deid-study"
_IGNORE_IN_LABEL = {"device", "random_state"}


@dataclass
class StudyPlan:
    """What to run. ``methods``: (registered name, params) pairs; ``ferg``: generator size."""

    mode: str
    seeds: list[int]
    methods: list[tuple[str, dict[str, Any]]]
    jaffe_methods: list[tuple[str, dict[str, Any]]] | None = None
    ferg_characters: int = 6
    ferg_per_cell: int = 30
    ferg_size: int = 50
    jaffe_size: int = 64
    audit: dict[str, Any] = field(default_factory=lambda: {"cnn_epochs": 15, "cnn_width": 32, "linkage_repeats": 5})

    def methods_for(self, dataset: str) -> list[tuple[str, dict[str, Any]]]:
        return self.jaffe_methods if dataset == "jaffe" and self.jaffe_methods is not None else self.methods


def setting_label(params: dict[str, Any]) -> str:
    """The parameters a table shows for a setting (the run's seed and device are not settings)."""
    return ", ".join(f"{k}={v}" for k, v in params.items() if k not in _IGNORE_IN_LABEL)


def key(method: str, params: dict[str, Any]) -> str:
    """A setting's name in the tables: ``method[params]``."""
    s = setting_label(params)
    return f"{method}[{s}]" if s else method


def method_label(setting_key: str) -> str:
    """The folder-safe name of a setting (a :data:`deid.config.NAME_PATTERN` name), unique per key."""
    slug = re.sub(r"\.{2,}", ".", re.sub(r"[^a-z0-9_.-]+", "-", setting_key.lower())).strip("-.")
    if len(slug) > 64:
        slug = f"{slug[:57].rstrip('-.')}-{hashlib.sha256(setting_key.encode()).hexdigest()[:6]}"
    return check_name(slug)


def run_config(p: StudyPlan, dataset: str, seed: int, *, work_dir: Path, jaffe_dir: Path,
               tracking_uri: str | None = None, experiment: str = EXPERIMENT) -> RunConfig:
    """One (dataset, seed) of the study as a run config, built from the plan's typed settings: ``seed`` is
    the run seed, from which the split, the audit and every method's ``random_state`` take theirs
    (:mod:`deid.run`); the built-in set is drawn with seed 0 whatever the run seed (the study's seeds vary
    the split, the fits and the audit, over one drawn set); no baselines besides the plan's own settings.
    The full-size plan's runs have names (and so folders under ``work/runs``) of their own. A setting the
    method refuses is a :class:`~deid.errors.ConfigError` naming the plan and the setting."""
    from deid.config import DatasetConfig, TrackingConfig, build_config, method_specs
    from deid.datasets.synthetic import SyntheticFergConfig
    from deid.evaluation.audit_config import AuditConfig
    from deid.preprocessing import PreprocessConfig
    from deid.splits import SplitConfig

    if dataset not in STUDY_DATASETS:
        raise ValueError(f"study datasets are {list(STUDY_DATASETS)}, got '{dataset}'")
    where = f"study plan '{p.mode}', {dataset} seed {seed}"
    methods = method_specs([(n, dict(q), method_label(key(n, q))) for n, q in p.methods_for(dataset)], where)

    def parts() -> dict[str, Any]:
        if dataset == "ferg":
            ds = DatasetConfig(name="ferg", source="builtin", synthetic=SyntheticFergConfig(
                n_characters=p.ferg_characters, images_per_cell=p.ferg_per_cell, seed=0),
                preprocess=PreprocessConfig(size=p.ferg_size), split=SplitConfig(val=0.1, test=0.2))
        else:
            ds = DatasetConfig(name="jaffe", source=str(jaffe_dir), preprocess=PreprocessConfig(size=p.jaffe_size),
                               split=SplitConfig(val=0.0, test=0.3), real_faces=True)
        return dict(name=f"study-{dataset}{'-full-size' if p.mode == 'full-size' else ''}-seed{seed}", dataset=ds,
                    methods=methods, include_baselines=False, audit=AuditConfig(**p.audit), work_dir=str(work_dir),
                    seed=seed, device="cpu", tracking=TrackingConfig(uri=tracking_uri, experiment=experiment))

    return build_config(parts, where=where)


def applicable(run: ResolvedRun, identities: int) -> tuple[ResolvedRun, list[str]]:
    """``run`` without the settings that cannot apply to data with ``identities`` identities (their
    validated k above them), and a line naming each one left out."""
    over = [m for m in run.methods if m.k is not None and m.k > identities]
    skipped = [f"`{key(m.name, m.given_params())}`: k = {m.k} > {identities} identities" for m in over]
    return run.without({m.key for m in over}), skipped


def describe(p: StudyPlan, dataset: str, written: int, identities: int) -> str:
    """How a dataset of the study was drawn or read, for RESULTS.md."""
    if dataset == "ferg":
        return (f"built-in FERG-like generator, {p.ferg_characters} characters × 7 expressions × {p.ferg_per_cell} "
                f"images = {written} images, grayscale {p.ferg_size}×{p.ferg_size}, split train/val/test 0.7/0.1/0.2 "
                f"(split seed = run seed); methods fitted on the training split")
    return (f"JAFFE from ../shared/data/jaffe, {written} images, {identities} identities, grayscale "
            f"{p.jaffe_size}×{p.jaffe_size}, split train/test 0.7/0.3 (split seed = run seed)")


def audit_summary(p: StudyPlan) -> str:
    from deid.evaluation.attacker_registry import DEFAULT_ATTACKERS

    return ", ".join(f"{k}={v}" for k, v in {"attackers": list(DEFAULT_ATTACKERS), **p.audit}.items())


def plan(mode: str) -> StudyPlan:
    """The settings the papers report, and a small sweep around them; ``quick`` trims epochs and sweep."""
    from deid.methods import available_methods

    if mode == "full-size":
        return _full_size()
    quick = mode == "quick"
    known = set(available_methods())
    m = [(n, p) for n, p in _settings(quick) if n in known]
    if quick:
        # the informed attackers are linear (PCA + logistic regression) only: the identity and utility CNNs
        # trained on the originals (original-trained classifier, linkage features) still get 15 epochs
        return StudyPlan("quick", [0], m, ferg_per_cell=24, ferg_size=40,
                         audit={"attackers": ["linear"], "cnn_epochs": 15, "cnn_width": 16, "linkage_repeats": 3})
    # every row gets the demo's pool (configs/ferg.yaml): PCA + logistic regression, 1-NN on pixels and on HOG,
    # HOG + linear SVM. The CNN attacker was never the worst on any method of the built-in set or JAFFE
    # (docs/attackers-table.md) and cost a minute a row; it stays the reference (linkage features, the
    # original-trained utility classifier). The images are the quick mode's size (40 px, 24 per cell).
    # 15 epochs, not 10: with 10 the utility CNN learned the built-in set's expressions to only 0.48 ± 0.14
    # on the originals (study 20261122-032153-f5aa11), against 0.95 with 15 in the quick run
    return StudyPlan("full", [0, 1, 2], m, ferg_per_cell=24, ferg_size=40,
                     audit={"attackers": ["linear", "knn-pixels", "knn-hog", "hog-svm"], "cnn_epochs": 15,
                            "cnn_width": 16, "linkage_repeats": 5})


def _settings(quick: bool) -> list[tuple[str, dict]]:
    """The (method, parameters) settings: the papers', the sweep around them (its cheaper half when
    ``quick``) and k-Same-Net's when it is registered; ``quick`` trims their epochs."""
    from deid.methods import available_methods

    ls_ep = dict(ae_epochs=5, finetune_epochs=2) if quick else dict(ae_epochs=20, finetune_epochs=10)
    adv_ep = {"epochs": 2} if quick else {}
    m: list[tuple[str, dict]] = [
        ("blur", {"sigma": 2.0}), ("blur", {"sigma": 4.0}),
        ("pixelate", {"block": 5}),
        ("blackout", {}),
        ("ksame-pixel", {"k": 2}), ("ksame-pixel", {"k": 5}),
        ("ksame-eigen", {"k": 5}),
        ("ksame-select", {"k": 5}),
        # Nousi et al. Table 5 (FC AE, k-means centres, K=50) and Table 6 (conv, mean neighbour, α=0.8, n=9)
        ("latent-shift", {"architecture": "fc", "target": "kmeans", "n_clusters": 50, "alpha": 0.8, **ls_ep}),
        ("latent-shift", {"architecture": "conv", "target": "mean_neighbour", "alpha": 0.8, "n_neighbors": 9, **ls_ep}),
        # FaDeNet: λ as the method notes recommend
        ("fadenet", {"lam": 0.1, **({"epochs": 2, "critic_epochs": 3} if quick else {})}),
        # Feutry et al. Table 1: intertwined (one target identity) + substitution
        ("mi-adversarial", {"lam": 1.0, "target_identity": "@0", "substitute": True, **adv_ep}),
        ("substitution", {"target_identity": "@0"}),
        # the default run's releasable method: k-Same-Net's generator with a random proxy mixture per image
        ("proxy-mix", {"k": 3}),
    ]
    # the sweep around the papers' settings; quick runs its cheaper half
    m += [("pixelate", {"block": 10}), ("ksame-eigen", {"k": 2}), ("ksame-select", {"k": 2}),
          ("latent-shift", {"architecture": "conv", "target": "grid_neighbour", "n_neighbors": 5, "alpha": 0.8, **ls_ep}),
          ("fadenet", {"lam": 0.5, **({"epochs": 2, "critic_epochs": 3} if quick else {})}),
          ("mi-adversarial", {"lam": 1.0, **adv_ep})]
    if not quick:
        m += [("blur", {"sigma": 1.0}), ("pixelate", {"block": 3}), ("ksame-pixel", {"k": 10}),
              ("ksame-eigen", {"k": 10}), ("ksame-select", {"k": 10}),
              ("latent-shift", {"architecture": "fc", "target": "kmeans", "n_clusters": 10, "alpha": 0.8, **ls_ep}),
              ("latent-shift", {"architecture": "conv", "target": "mean_neighbour", "alpha": 0.4, "n_neighbors": 9, **ls_ep}),
              ("fadenet", {"lam": 0.05}),
              # Feutry et al.: the λ sweep of Fig. 2 and Table 1's targeted identities 0, 2, 3, 4, 5
              ("mi-adversarial", {"lam": 0.0}), ("mi-adversarial", {"lam": 2.0}), ("mi-adversarial", {"lam": 4.0}),
              *(("mi-adversarial", {"lam": 1.0, "target_identity": f"@{i}", "substitute": True}) for i in (2, 3, 4, 5))]
    if "ksame-net" in available_methods():
        m.append(("ksame-net", {"k": 2, **({"epochs": 6, "classifier_epochs": 3} if quick else {})}))
        if not quick:
            m.append(("ksame-net", {"k": 5}))
    return m


def _full_size() -> StudyPlan:
    """The seed methods at their papers' scale: the built-in set at FERG's size (55,776 images, 50 px), one
    seed, the papers' settings only (Feutry et al.'s Table 1 targets and λ sweep, Nousi et al.'s Tables 5
    and 6, FaDeNet's λ) next to the baselines and the releasable method. The audit streams from disk; its
    attackers are the three that scale (the CNN is the reference only, one epoch: ~630 steps at this size).
    """
    from deid.methods import available_methods

    m: list[tuple[str, dict]] = [
        ("blur", {"sigma": 2.0}), ("pixelate", {"block": 5}), ("blackout", {}),
        ("ksame-select", {"k": 5}),
        ("latent-shift", {"architecture": "fc", "target": "kmeans", "n_clusters": 50, "alpha": 0.8,
                          "ae_epochs": 20, "finetune_epochs": 10}),
        ("latent-shift", {"architecture": "conv", "target": "mean_neighbour", "alpha": 0.8, "n_neighbors": 9,
                          "ae_epochs": 20, "finetune_epochs": 10}),
        ("fadenet", {"lam": 0.1}),
        *(("mi-adversarial", {"lam": 1.0, "target_identity": f"@{i}", "substitute": True}) for i in (0, 2, 3, 4, 5)),
        *(("mi-adversarial", {"lam": lam}) for lam in (0.0, 1.0, 2.0, 4.0)),
        ("proxy-mix", {"k": 3}),
    ]
    known = set(available_methods())
    return StudyPlan("full-size", [0], [(n, q) for n, q in m if n in known], ferg_per_cell=1328, ferg_size=50,
                     audit={"attackers": ["linear", "knn-hog", "hog-svm"], "cnn_epochs": 1, "cnn_width": 16,
                            "linkage_repeats": 3})


def full_estimate(quick_seconds: float, quick_seeds: int, quick_settings: int) -> str:
    """The full study's expected time, scaled from a measured quick run (used when the store holds no full study).

    Calibration measured on the 2-core machine of docs/RESULTS.md: a quick run of 13.6 min (1 worker, 20
    settings, 1 seed) and a full run of 75.7 min (2 workers, 36 settings, 3 seeds), i.e. the full study takes
    about 1.0 × the quick time × the settings ratio on 2 workers, 2.0 × on one.
    """
    full = plan("full")
    scale = len(full.seeds) * len(full.methods) / (quick_seeds * quick_settings)
    one = quick_seconds * scale * 2.0
    return (f"about {one / 3600:.1f} h with one worker, {one / 7200:.1f} h with `--workers 2` (an estimate, not a "
            f"measurement: the quick run's wall time × {scale:.1f} for 3 seeds × {len(full.methods)} settings instead of "
            f"{quick_seeds} × {quick_settings}, × 2.0 on one worker for the full epochs and attacker pool, "
            f"the ratio measured between a quick and a full run on a 2-core machine when every full row also trained "
            f"CNN attackers: an upper bound now)")
