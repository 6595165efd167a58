"""Images and labels in memory: a contract-checked table read into arrays for fitting and audits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from data_contracts import ANONYMIZED_SCHEMA, IMAGES_SCHEMA, read_table
from deid.imageio import images_to_array

__all__ = ["ImageSet", "load_image_set", "image_set_from_table"]


@dataclass
class ImageSet:
    """``X`` float32 ``(N, C, H, W)`` in [0, 1] with per-row ids, splits and labels."""

    X: np.ndarray
    image_id: np.ndarray
    split: np.ndarray
    identity: np.ndarray
    expression: np.ndarray

    def __len__(self) -> int:
        return len(self.X)

    def subset(self, mask_or_index) -> "ImageSet":
        return ImageSet(self.X[mask_or_index], self.image_id[mask_or_index], self.split[mask_or_index],
                        self.identity[mask_or_index], self.expression[mask_or_index])

    def of_split(self, *splits: str) -> "ImageSet":
        return self.subset(np.isin(self.split, splits))

    def align_to(self, image_ids: np.ndarray) -> "ImageSet":
        """Rows reordered to follow ``image_ids``; a missing id raises ``KeyError`` naming it."""
        pos = {k: i for i, k in enumerate(self.image_id)}
        missing = [k for k in image_ids if k not in pos]
        if missing:
            raise KeyError(f"{len(missing)} ids not found, e.g. {missing[:3]}")
        return self.subset(np.array([pos[k] for k in image_ids], dtype=np.int64))


def image_set_from_table(table: pa.Table) -> ImageSet:
    return ImageSet(
        X=images_to_array(table.column("image")),
        image_id=np.asarray(table.column("image_id").to_pylist(), dtype=object),
        split=np.asarray(table.column("split").to_pylist(), dtype=object),
        identity=np.asarray(table.column("identity").to_pylist(), dtype=object),
        expression=np.asarray(table.column("expression").to_pylist(), dtype=object),
    )


def load_image_set(path: str | Path, *, splits: tuple[str, ...] | None = None, anonymized: bool = False) -> ImageSet:
    """Read an ``images`` (or ``anonymized``) table directory into memory, schema-checked."""
    schema = ANONYMIZED_SCHEMA if anonymized else IMAGES_SCHEMA
    cols = ["image_id", "split", "identity", "expression", "image"]
    return image_set_from_table(read_table(path, schema, columns=cols, splits=splits))
