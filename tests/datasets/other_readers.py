"""Read a table directory the way people without deid do: pandas, DuckDB and Hugging Face ``datasets``."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach a hub
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def read_with_pandas(table_dir: Path):
    import pandas as pd

    df = pd.read_parquet(table_dir)
    assert len(set(df.columns)) == len(df.columns), f"a column appears twice: {list(df.columns)}"
    return df


def count_with_duckdb(table_dir: Path) -> int:
    import pytest

    duckdb = pytest.importorskip("duckdb")
    return duckdb.sql(f"SELECT count(*) FROM read_parquet('{table_dir.as_posix()}/**/*.parquet')").fetchall()[0][0]


def load_with_datasets(data_dir: Path, cache: Path, *, label: str | None = "label"):
    """``load_dataset("parquet", data_dir=...)``: every split's images decode to PIL images, and the
    utility label is a ClassLabel (when ``label`` is given). Returns the DatasetDict."""
    import pytest

    datasets = pytest.importorskip("datasets")
    from PIL import Image

    ds = datasets.load_dataset("parquet", data_dir=str(data_dir), cache_dir=str(cache))
    for split, d in ds.items():
        if "image" in d.features or label is not None:
            assert isinstance(d.features["image"], datasets.Image), (split, d.features)
            assert isinstance(d[0]["image"], Image.Image)
        if label is not None:
            assert isinstance(d.features[label], datasets.ClassLabel), (split, d.features[label])
    return ds
