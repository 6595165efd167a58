"""Rows of a labelled table to :class:`SourceItem` s: what the manifest, folder and Hugging Face
loaders share.

A dataset brought by its owner names its own columns and its own labels. :class:`Columns` says
which column holds what; :func:`labelled_item` turns one row into an item or a :class:`Rejected`
entry with the reason (empty identity, empty label, a label outside the declared vocabulary, an
unknown split, an attribute that is not a number). The utility label's vocabulary is the
dataset's own: whatever the rows hold, or the ``labels`` the config declares (then any other
value is quarantined, and the declared order is the ClassLabel order).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deid.datasets.base import Rejected, SourceItem, label_text
from deid.errors import ConfigError

__all__ = ["Columns", "SPLIT_ALIASES", "label_value", "labelled_item", "check_labels", "check_columns", "as_columns",
           "extra_vocabularies"]

# Split names other tools write, mapped to the contract's train / val / test.
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "dev": "val", "test": "test", "testing": "test"}


@dataclass(frozen=True)
class Columns:
    """Which column of a labelled table holds what.

    ``label`` is the utility label (the pipeline's ``label`` column); ``extra_labels`` are
    further label columns kept as attributes (numbers as they are, other values as their index in
    the column's sorted vocabulary), so the audit can check how much of them an output keeps.
    ``attributes`` are numeric columns; ``split`` (optional) holds train / val / test (or
    validation, dev, ...); ``group`` (optional) a recording or session kept in one split.
    """

    identity: str = "identity"
    label: str = "label"
    extra_labels: tuple[str, ...] = ()
    attributes: tuple[str, ...] = ()
    split: str | None = None
    group: str | None = None
    extra_vocab: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def used(self) -> list[str]:
        return [c for c in (self.identity, self.label, *self.extra_labels, *self.attributes, self.split, self.group)
                if c is not None]


def check_columns(where: str, have: Sequence[str], cols: Columns, also: Sequence[str] = ()) -> None:
    """A :class:`ConfigError` naming the first configured column the table does not have."""
    for c in [*also, *cols.used()]:
        if c not in have:
            raise ConfigError(f"{where}: no column '{c}' (set by the loader options); columns: {list(have)[:30]}")


def check_labels(labels: Sequence[str] | None) -> list[str] | None:
    """The declared label vocabulary (``labels`` option), normalised, or a :class:`ConfigError`."""
    if labels is None:
        return None
    if isinstance(labels, str) or not isinstance(labels, Sequence) or not labels:
        raise ConfigError(f"loader option labels: a non-empty list of label names, got {labels!r}")
    out = [label_text(str(x)).strip() for x in labels]
    if "" in out or len(set(out)) != len(out):
        raise ConfigError(f"loader option labels: names must be non-empty and distinct, got {list(labels)}")
    return out


def label_value(v: Any) -> str | None:
    """A cell as a label name: text stripped, ``True``/``False`` as ``true``/``false``, whole numbers
    without ``.0``; ``None`` for an empty or missing cell."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return None
        if v.is_integer():
            v = int(v)
    text = label_text(str(v)).strip()
    return text or None


def _number(v: Any) -> float | None:
    if v is None or (isinstance(v, str) and not v.strip()):
        return None
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    x = float(v)  # ValueError for text that is not a number
    if not math.isfinite(x):
        raise ValueError(f"{v!r} is not finite")
    return x


def labelled_item(row: Mapping[str, Any], cols: Columns, *, path: Path, relpath: str,
                  labels: Sequence[str] | None, data: bytes | None = None) -> SourceItem | Rejected:
    """One table row as an item, or a rejection whose reason names the column at fault."""
    ident = label_value(row.get(cols.identity))
    if ident is None:
        return Rejected(relpath, f"empty identity (column '{cols.identity}')")
    label = label_value(row.get(cols.label))
    if label is None:
        return Rejected(relpath, f"empty label (column '{cols.label}')")
    if labels is not None and label not in labels:
        return Rejected(relpath, f"unknown label '{label}' (column '{cols.label}'); declared labels: {list(labels)[:20]}")
    split = None
    if cols.split is not None:
        raw = label_value(row.get(cols.split))
        split = SPLIT_ALIASES.get(raw.lower()) if raw is not None else None
        if split is None:
            return Rejected(relpath, f"unknown split '{raw or ''}' (column '{cols.split}'); "
                                     f"use one of {sorted(SPLIT_ALIASES)}")
    attrs: dict[str, float] = {}
    for c in cols.extra_labels:
        v = label_value(row.get(c))
        if v is None:
            continue
        try:
            attrs[c] = float(v)
        except ValueError:
            vocab = cols.extra_vocab.get(c, ())
            if v not in vocab:
                return Rejected(relpath, f"label column '{c}': '{v}' is not a number nor in its vocabulary")
            attrs[c] = float(list(vocab).index(v))
    for c in cols.attributes:
        try:
            x = _number(row.get(c))
        except (TypeError, ValueError):
            return Rejected(relpath, f"attribute '{c}' is not a number: {str(row.get(c))[:40]!r}")
        if x is not None:
            attrs[c] = x
    group = label_value(row.get(cols.group)) if cols.group is not None else None
    return SourceItem(path=path, relpath=relpath, identity=ident, label=label, attributes=attrs or None,
                      split=split, group=group, data=data)


def extra_vocabularies(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> dict[str, list[str]]:
    """Each extra label column's non-numeric values, sorted: their index is the attribute value."""
    out: dict[str, list[str]] = {}
    for c in columns:
        values = set()
        for r in rows:
            v = label_value(r.get(c))
            if v is None:
                continue
            try:
                float(v)
            except ValueError:
                values.add(v)
        out[c] = sorted(values)
    return out


def as_columns(where: str, *, identity_column: str, label_column: str | Sequence[str],
               attribute_columns: Sequence[str] | str | None, split_column: str | None,
               group_column: str | None) -> Columns:
    """The loader options as :class:`Columns`; ``label_column`` may list several (the first is the
    utility label, the rest become attributes)."""
    labels = [label_column] if isinstance(label_column, str) else list(label_column or [])
    if not labels or not all(isinstance(c, str) and c for c in labels):
        raise ConfigError(f"{where}: label_column must name one column or a list of columns, got {label_column!r}")
    attrs = [attribute_columns] if isinstance(attribute_columns, str) else list(attribute_columns or [])
    cols = Columns(identity=identity_column, label=labels[0], extra_labels=tuple(labels[1:]),
                   attributes=tuple(attrs), split=split_column, group=group_column)
    used = cols.used()
    if len(set(used)) != len(used):
        raise ConfigError(f"{where}: a column is given two roles: {used}")
    return cols
