"""Images and labels in memory: a contract-checked table read into arrays for fitting and audits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_contracts import ANONYMIZED_SCHEMA, IMAGES_SCHEMA, read_table
from deid.imageio import images_to_array

__all__ = ["ImageSet", "load_image_set", "image_set_from_table"]


@dataclass
class ImageSet:
    """``X`` float32 ``(N, C, H, W)`` in [0, 1] with per-row ids, splits and labels.

    ``attributes`` maps an attribute name to its float ``(N,)`` values (e.g. the built-in FERG-like
    set's ``pose_bin``); ``None`` when the table has no attributes column (de-identified tables).
    """

    X: np.ndarray
    image_id: np.ndarray
    split: np.ndarray
    identity: np.ndarray
    expression: np.ndarray
    attributes: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.X)

    def subset(self, mask_or_index) -> "ImageSet":
        attrs = None if self.attributes is None else {k: v[mask_or_index] for k, v in self.attributes.items()}
        return ImageSet(self.X[mask_or_index], self.image_id[mask_or_index], self.split[mask_or_index],
                        self.identity[mask_or_index], self.expression[mask_or_index], attrs)

    def of_split(self, *splits: str) -> "ImageSet":
        return self.subset(np.isin(self.split, splits))

    def align_to(self, image_ids: np.ndarray) -> "ImageSet":
        """Rows reordered to follow ``image_ids``; a missing id raises ``KeyError`` naming it."""
        pos = {k: i for i, k in enumerate(self.image_id)}
        missing = [k for k in image_ids if k not in pos]
        if missing:
            raise KeyError(f"{len(missing)} ids not found, e.g. {missing[:3]}")
        return self.subset(np.array([pos[k] for k in image_ids], dtype=np.int64))


def _attributes(column: pa.ChunkedArray) -> dict[str, np.ndarray]:
    """The ``attributes`` column (a list of ``{name, value}`` records per row) as ``{name: float (N,)}``,
    keeping the names every row has once."""
    n = len(column)
    if n == 0 or column.null_count:
        return {}
    arr = column.combine_chunks()
    offsets = np.asarray(arr.offsets)
    row = np.repeat(np.arange(n), np.diff(offsets))  # the row of each flattened entry
    records = arr.flatten()  # flattened, in row order
    keys, items = records.field("name"), records.field("value")
    out: dict[str, np.ndarray] = {}
    for k in sorted(pc.unique(keys).to_pylist()):
        hit = np.asarray(pc.equal(keys, k).fill_null(False), dtype=bool)
        if np.array_equal(row[hit], np.arange(n)):
            out[k] = np.asarray(items.filter(pa.array(hit)).to_numpy(zero_copy_only=False), dtype=np.float64)
    return out


def image_set_from_table(table: pa.Table) -> ImageSet:
    return ImageSet(
        X=images_to_array(table.column("image")),
        image_id=np.asarray(table.column("image_id").to_pylist(), dtype=object),
        split=np.asarray(table.column("split").to_pylist(), dtype=object),
        identity=np.asarray(table.column("identity").to_pylist(), dtype=object),
        expression=np.asarray(table.column("expression").to_pylist(), dtype=object),
        attributes=_attributes(table.column("attributes")) if "attributes" in table.column_names else None,
    )


def load_image_set(path: str | Path, *, splits: tuple[str, ...] | None = None, anonymized: bool = False) -> ImageSet:
    """Read an ``images`` (or ``anonymized``) table directory into memory, schema-checked.

    An ``images`` table's attributes come along (names present in every row); an ``anonymized``
    table has none (``attributes=None``).
    """
    schema = ANONYMIZED_SCHEMA if anonymized else IMAGES_SCHEMA
    cols = ["image_id", "split", "identity", "expression", "image"] + ([] if anonymized else ["attributes"])
    return image_set_from_table(read_table(path, schema, columns=cols, splits=splits))
