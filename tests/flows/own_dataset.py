"""A dataset with a name no flow was written for: the built-in generator's faces behind a manifest CSV
(``dataset.name: manifest``), made by the test in its own folder."""

from __future__ import annotations

import csv
from pathlib import Path

import yaml


def manifest_tree(folder: Path, *, n_characters: int, images_per_cell: int, size: int = 64, seed: int = 0) -> Path:
    """Draw the faces under ``folder`` and write ``folder/manifest.csv`` (file, person, emotion); returns it."""
    from deid.datasets.synthetic import SyntheticFergConfig, generate_ferg_like

    root = generate_ferg_like(folder / "faces", SyntheticFergConfig(n_characters=n_characters,
                                                                     images_per_cell=images_per_cell, size=size,
                                                                     entanglement=0.0, noise=0.0, seed=seed), workers=1)
    rows = []
    for png in sorted(root.rglob("*.png")):
        person, emotion = png.parent.name.split("_", 1)
        rows.append({"file": png.relative_to(folder).as_posix(), "person": person, "emotion": emotion})
    manifest = folder / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["file", "person", "emotion"])
        w.writeheader()
        w.writerows(rows)
    return manifest


def manifest_config(path: Path, name: str, manifest: Path, work: Path, **fields) -> Path:
    """A run config of the manifest dataset at ``path`` (absolute paths, so any current directory works)."""
    cfg = {"name": name,
           "dataset": {"name": "manifest", "source": str(manifest), "preprocess": {"size": 40},
                       "loader_options": {"path_column": "file", "identity_column": "person",
                                          "label_column": "emotion"}},
           "work_dir": str(work), **fields}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
