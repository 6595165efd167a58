"""Figures of the audit: sample grids, confusion matrices, CMC curves, the privacy–utility scatter.

Each function writes one PNG and returns its path. Matplotlib runs headless (Agg).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["text.parse_math"] = False  # labels are data: '$x$' in an identity is text, not TeX
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["sample_grid", "confusion_plot", "cmc_plot", "privacy_utility_plot"]


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _show(ax, img: np.ndarray) -> None:
    if img.shape[0] == 1:
        ax.imshow(img[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(img.transpose(1, 2, 0), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def sample_grid(rows: dict[str, np.ndarray], path: str | Path, *, labels: list[str] | None = None) -> Path:
    """One row per name (``original`` first), the same images in each column. Arrays ``(N, C, H, W)``."""
    names = list(rows)
    n = min(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(names), n, figsize=(1.1 * n + 1.2, 1.15 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        for c in range(n):
            _show(axes[r, c], rows[name][c])
            if c == 0:
                axes[r, c].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
            if r == 0 and labels:
                axes[r, c].set_title(labels[c], fontsize=7)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return _save(fig, path)


def confusion_plot(matrices: dict[str, np.ndarray], classes: dict[str, list[str]], path: str | Path,
                   title: str) -> Path:
    """Confusion matrices side by side (keys like ``identity_cnn``), with the counts written in the
    cells when there are at most 15 classes (scikit-learn's ``ConfusionMatrixDisplay``)."""
    from sklearn.metrics import ConfusionMatrixDisplay

    keys = list(matrices)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 4.0), squeeze=False)
    for ax, k in zip(axes[0], keys):
        m = np.asarray(matrices[k])
        cls = classes.get(k.split("_")[0], [str(i) for i in range(len(m))])
        ConfusionMatrixDisplay(m, display_labels=cls).plot(ax=ax, include_values=len(cls) <= 15, cmap="Blues",
                                                            colorbar=False, values_format="d", xticks_rotation=90)
        for text in ax.texts:
            text.set_fontsize(6)
        ax.tick_params(labelsize=6)
        ax.set_title(k.replace("_", " "), fontsize=8)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_ylabel("true", fontsize=7)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def cmc_plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, *, title: str) -> Path:
    """CMC curves (mean ± std) per method."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for name, (mean, std) in curves.items():
        r = np.arange(1, len(mean) + 1)
        ax.plot(r, mean, marker="o", ms=3, label=name)
        ax.fill_between(r, np.clip(mean - std, 0, 1), np.clip(mean + std, 0, 1), alpha=0.15)
    if curves:
        k = len(next(iter(curves.values()))[0])
        ax.plot(np.arange(1, k + 1), np.arange(1, k + 1) / k, "k:", lw=1, label="chance")
    ax.set_xlabel("rank")
    ax.set_ylabel("identification rate")
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)


def privacy_utility_plot(points: dict[str, tuple[float, float]], path: str | Path, *, id_chance: float,
                         util_chance: float | None, title: str = "privacy–utility",
                         gate: tuple[float, float] | None = None) -> Path:
    """x: worst informed attacker's identity accuracy (lower is more private); y: utility accuracy (the
    audit's: trained on the outputs, tested on real faces).
    ``gate``: (largest identity, smallest utility) a method must reach; that corner is shaded."""
    fig, ax = plt.subplots(figsize=(5.2, 4))
    if gate is not None:
        ax.fill_between([0, gate[0]], gate[1], 1.02, color="#2e7d32", alpha=0.12, lw=0, zorder=0)
        ax.text(0.01, 1.0, "gates pass here (on interval bounds)", fontsize=7, color="#2e7d32", va="top")
    for name, (x, y) in points.items():
        style = dict(marker="*", s=140, c="crimson") if name == "original" else dict(marker="o", s=40)
        ax.scatter([x], [y], zorder=3, **style)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.axvline(id_chance, color="gray", ls=":", lw=1)
    ax.text(id_chance, 0.02, " identity chance", fontsize=7, color="gray")
    if util_chance is not None:
        ax.axhline(util_chance, color="gray", ls="--", lw=1)
        ax.text(0.01, util_chance, "utility chance", fontsize=7, color="gray", va="bottom")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("worst informed attacker: identity accuracy (lower = more private)")
    ax.set_ylabel("utility accuracy (higher = more useful)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    return _save(fig, path)
