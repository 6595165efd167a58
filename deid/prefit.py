"""What the ingested table alone can refuse, checked right after ingest and before any method is fitted.

A run that cannot end well should fail in the first seconds, not after a long fit: a split the fit or the
audit needs with no rows, a method's ``k`` larger than the identities it will find where it needs them
(:attr:`~deid.methods.base.DeidMethod.k_within`: the training split, every split, each utility label of
either), and gates on unseen-attribute figures the dataset cannot produce (it records no such attribute).
Each problem is one line naming the fix that works: for ``k``, the largest value every place allows.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from data_contracts import IMAGES_SCHEMA, SPLITS, read_table
from deid.errors import ConfigError

if TYPE_CHECKING:
    from deid.config import RunConfig
    from deid.run import ResolvedMethod, ResolvedRun

__all__ = ["check_ingested", "prefit_problems", "recorded_attributes", "FIT_SPLIT", "PREFIT_COLUMNS"]

#: the split every method is fitted on (:data:`deid.pipeline.FIT_SPLITS`)
FIT_SPLIT = "train"
#: the images table's columns the checks read (no pixels)
PREFIT_COLUMNS = ["split", "identity", "label", "attributes"]


def recorded_attributes(table: pa.Table) -> list[str]:
    """The attribute names every row of ``table`` records (what the audit's unseen-attribute protocol reads)."""
    if "attributes" not in table.column_names or len(table) == 0 or table.column("attributes").null_count:
        return []
    col = table.column("attributes").combine_chunks()
    names = pc.list_flatten(col).field("name")
    rows = pc.list_parent_indices(col)
    counts = pa.table({"name": names, "row": rows}).group_by("name").aggregate([("row", "count_distinct")])
    return sorted(n for n, c in zip(counts.column("name").to_pylist(), counts.column("row_count_distinct").to_pylist())
                  if c == len(table))


def _identities(table: pa.Table) -> dict[tuple[str, str | None], set[str]]:
    """(split, label) → identities, and (split, None) → identities of the whole split."""
    out: dict[tuple[str, str | None], set[str]] = defaultdict(set)
    for s, i, e in zip(*(table.column(c).to_pylist() for c in ("split", "identity", "label"))):
        out[(s, None)].add(i)
        out[(s, e)].add(i)
    return out


def _places(ids: dict[tuple[str, str | None], set[str]], within: str, splits: set[str]) -> dict[str, int]:
    """Where a method of ``k_within`` must find k identities (a phrase for each place), and how many it holds."""
    where: dict[str, int] = {}
    per_label = within.endswith("label")
    for (s, label), people in ids.items():
        if s not in splits or (within.startswith("train") and s != FIT_SPLIT) or (label is not None) != per_label:
            continue
        where[f"label '{label}' of split '{s}'" if per_label else f"split '{s}'"] = len(people)
    return where


def _k_problem(spec: ResolvedMethod, ids: dict, splits: set[str], val_share: float) -> str | None:
    """k (validated once, :func:`deid.run.resolve_run`) against the identities where the method needs them."""
    from deid.methods import method_class

    cls = method_class(spec.name)
    if cls.k_within is None or spec.k is None:
        return None
    k = spec.k
    places = _places(ids, cls.k_within, splits)
    if not places or min(places.values()) >= k:
        return None
    worst = min(places, key=lambda w: (places[w], w))
    best = places[worst]
    field = f"methods.{spec.index}.params.k" if spec.index is not None else "k"
    short = [w for w, n in places.items() if n < k]
    head = (f"method '{spec.key}': k = {k} but {worst} holds images of {best} "
            f"{'identity' if best == 1 else 'identities'}" + (f" (and {len(short) - 1} more places short of k)" if len(short) > 1 else ""))
    if best >= 2:
        fix = f"set {field} to {best} or less: the largest k every {_scope(cls.k_within)} allows"
    else:
        fix = f"no k works ({worst} needs two identities at least): give it more people or drop it"
    rest = [n for w, n in places.items() if "'val'" not in w]  # without a val split its rows join train
    if val_share > 0 and any("'val'" in w for w in short) and rest and min(rest) > max(best, 1):
        fix += f"; or set dataset.split.val to 0 (k up to {min(rest)} then)"
    return f"{head}: {fix}"


def _scope(within: str) -> str:
    return {"train": "training split", "split": "split", "train label": "label of the training split",
            "split label": "label of every split"}[within]


def _split_problems(cfg: RunConfig, counts: dict[str, int]) -> list[str]:
    problems = []
    split = cfg.dataset.split
    needed = {FIT_SPLIT: "every method is fitted on it", cfg.audit.test_split: "the audit tests on it"}
    for s, why in needed.items():
        if counts.get(s, 0):
            continue
        share = getattr(split, s, None)
        if s == "train":
            fix = f"lower dataset.split.test ({split.test}) and dataset.split.val ({split.val})"
        elif share == 0:
            fix = f"set dataset.split.{s} above 0 (e.g. 0.2)"
        else:
            fix = (f"dataset.split.{s} = {share} found no identity with two images or groups to hold one out (one "
                   "always stays in train), or the dataset's own split names none: give identities two or more "
                   "images (check group_pattern or group_column) or give rows this split (split_column)")
        problems.append(f"split '{s}' has no rows after ingest ({why}): {fix}")
    if not any(counts.get(s, 0) for s in cfg.audit.train_splits):
        problems.append(f"audit.train_splits {cfg.audit.train_splits} have no rows after ingest: add 'train' to them")
    return problems


def _gate_problems(cfg: RunConfig, recorded: list[str]) -> list[str]:
    from deid.evaluation.metric_registry import metric

    problems = []
    asked = cfg.audit.unseen_attributes
    if asked != "auto" and (missing := sorted(set(asked) - set(recorded))):
        problems.append(f"audit.unseen_attributes: {missing} are not recorded for every image (recorded: {recorded}): "
                        "remove them or set 'auto'")
    unseen = recorded if asked == "auto" else sorted(set(asked) & set(recorded))
    for i, g in enumerate(cfg.gates.extra):
        m = metric(g.metric)
        if m is None:
            continue
        if m.key == "unseen_retention" and not unseen:
            problems.append(f"gates.extra.{i}: {g.metric} cannot be measured: this dataset records no attribute for "
                            "every image, so the unseen-attribute protocol is off: remove that gate")
        elif m.per_attribute and not any(g.metric.startswith(f"attr_{a}_") for a in unseen):
            problems.append(f"gates.extra.{i}: {g.metric} cannot be measured: it names no attribute the audit reads "
                            f"(every image records {recorded or 'none'}): remove that gate or name one of them")
    return problems


def prefit_problems(run: ResolvedRun, table: pa.Table) -> list[str]:
    """Every problem ``table`` (an images table's :data:`PREFIT_COLUMNS`) poses to ``run``, one line each."""
    cfg = run.config
    vc = pc.value_counts(table.column("split"))
    counts = dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()))
    problems = _split_problems(cfg, counts)
    ids = _identities(table)
    transformed = {s for s in SPLITS if counts.get(s, 0)}
    for spec in run.methods:
        if (p := _k_problem(spec, ids, transformed, cfg.dataset.split.val)) is not None:
            problems.append(p)
    return problems + _gate_problems(cfg, recorded_attributes(table))


def check_ingested(run: ResolvedRun, images_dir: str | Path) -> None:
    """Run :func:`prefit_problems` on the ingested images table at ``images_dir`` (its label columns only);
    raises :class:`ConfigError`, one line per problem, before any method is fitted."""
    problems = prefit_problems(run, read_table(images_dir, IMAGES_SCHEMA, columns=PREFIT_COLUMNS))
    if problems:
        raise ConfigError("\n".join(f"{run.name}: {p}" for p in problems))
