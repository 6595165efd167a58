"""Utility the method never saw: how well attackers still read attributes no method was given.

A de-identification method is fitted with identity and one utility label (expression). Whether
its outputs keep *other* information (head pose, lighting, face size on the built-in FERG-like
set; any per-image attribute a dataset records) says whether it preserves the image or only the
one label it was told about. For each attribute the audit's attacker pool is trained on the
outputs' training rows with the true attribute and tested on the outputs' test rows;
:func:`unseen_retention` compares that with the same attack on the originals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from deid.data import ImageSet
from deid.errors import EvaluationError

__all__ = ["unseen_attributes", "unseen_retention", "attribute_metric"]


def attribute_metric(name: str, what: str) -> str:
    """The metric name for attribute ``name``: ``what`` is ``"acc_best"`` or ``"chance"``."""
    if what not in ("acc_best", "chance"):
        raise ValueError(f"what must be 'acc_best' or 'chance', got {what!r}")
    return f"attr_{name}_{what}"


def _labels(original: ImageSet, name: str) -> np.ndarray:
    attrs = original.attributes or {}
    if name not in attrs:
        raise EvaluationError(f"unseen attributes: the original images have no attribute '{name}'; "
                              f"known: {sorted(attrs)}")
    v = np.asarray(attrs[name], dtype=np.float64)
    if not np.all(np.isfinite(v)) or not np.all(v == np.round(v)):
        raise EvaluationError(f"unseen attributes: '{name}' has values that are not whole numbers; "
                              "bin a continuous attribute into classes first")
    # class labels as the library's other labels are: an object array of strings ("0", "1", ...)
    return np.array([str(int(x)) for x in v], dtype=object)


def unseen_attributes(original: ImageSet, output: ImageSet | np.ndarray, train_mask: np.ndarray,
                      test_mask: np.ndarray, names: Sequence[str],
                      attack: Callable[..., Any]) -> dict[str, float]:
    """Best attacker accuracy and chance for each attribute in ``names``, read from ``output``.

    ``original`` carries the labels (``original.attributes[name]``, whole numbers, ``(N,)``),
    handed to ``attack`` as strings (``"0"``, ``"1"``, ...) like identity and expression labels.
    ``output`` is the de-identified set (or its ``X``, ``(N, C, H, W)``) in the same row order
    (pass ``original`` itself for the reference numbers). ``train_mask`` and ``test_mask``
    select rows (boolean ``(N,)`` or indices). ``attack(X_train, y_train, X_test, y_test, label)``
    trains the attacker pool and returns an object with ``accuracy: dict[str, float]`` and
    ``chance: float`` (like :func:`deid.evaluation.attackers.train_attackers`).

    Returns ``{"attr_<name>_acc_best": ..., "attr_<name>_chance": ...}`` for every name.
    """
    if isinstance(output, ImageSet):
        if len(output) != len(original) or not np.array_equal(output.image_id, original.image_id):
            raise EvaluationError("unseen attributes: the output rows do not follow the original rows "
                                  "(align them with ImageSet.align_to first)")
        X = output.X
    else:
        X = output if hasattr(output, "shape") else np.asarray(output)  # an array or images on disk, not read here
        if len(X) != len(original):
            raise EvaluationError(f"unseen attributes: {len(X)} output images for {len(original)} originals")
    for m, what in ((train_mask, "train_mask"), (test_mask, "test_mask")):
        m = np.asarray(m)
        if m.dtype == bool and m.shape != (len(original),):
            raise EvaluationError(f"unseen attributes: {what} has shape {m.shape}, expected ({len(original)},)")
    metrics: dict[str, float] = {}
    for name in names:
        y = _labels(original, name)
        res = attack(X[train_mask], y[train_mask], X[test_mask], y[test_mask], name)
        metrics[attribute_metric(name, "acc_best")] = float(max(res.accuracy.values()))
        metrics[attribute_metric(name, "chance")] = float(res.chance)
    return metrics


def unseen_retention(method_metrics: dict[str, float], original_metrics: dict[str, float],
                     names: Sequence[str]) -> float | None:
    """The least share of above-chance attribute accuracy the outputs keep: 1 all, 0 none.

    For each name, ``(acc - chance) / (orig_acc - chance)`` clipped to [0, 1], from the metrics
    :func:`unseen_attributes` returned for the method and for the originals; the minimum over
    names. Attributes the originals themselves do not beat chance on are left out; ``None``
    when none is left.
    """
    worst: float | None = None
    for name in names:
        acc, chance = (method_metrics[attribute_metric(name, w)] for w in ("acc_best", "chance"))
        o_acc, o_chance = (original_metrics[attribute_metric(name, w)] for w in ("acc_best", "chance"))
        if not o_acc > o_chance:
            continue
        r = float(np.clip((acc - chance) / (o_acc - o_chance), 0.0, 1.0))
        worst = r if worst is None else min(worst, r)
    return worst
