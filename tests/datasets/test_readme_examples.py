"""The README's "Your own dataset" config, its grouped example and ingest command, and "Reading a release"
commands, run on tiny trees."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

import other_readers  # noqa: F401  (no hub access)
from deid.config import load_config, validate_config
from deid.ingest import ingest_dataset
from deid.methods import get_method
from deid.pipeline import anonymize_table
from deid.release import publish_release

ROOT = Path(__file__).resolve().parents[2]


def _section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert m, f"README has no section '{title}'"
    return m.group(1)


def _block(section: str, lang: str) -> str:
    m = re.search(rf"```{lang}\n(.*?)```", section, re.DOTALL)
    assert m, f"no {lang} block"
    return m.group(1)


def _tree(base: Path) -> Path:
    """data/my-faces: 4 people × 4 labels × 3 images, a manifest with two bad rows."""
    d = base / "data" / "my-faces"
    rows = []
    rng = np.random.default_rng(0)
    for p in range(4):
        for li, lab in enumerate(("anger", "contempt", "joy", "neutral")):
            for k in range(3):
                img = rng.integers(0, 195, (40, 40, 3)).astype(np.int16)
                img[li * 8:(li + 1) * 8, :, p % 3] += 60
                rel = f"img/{p}_{lab}_{k}.png"
                (d / "img").mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(d / rel), np.clip(img, 0, 255).astype(np.uint8))
                rows.append({"file": rel, "person": f"person{p}", "emotion": lab, "smiling": lab == "joy",
                             "part": "test" if k == 2 else "train"})
    rows.append({"file": "img/lost.png", "person": "person0", "emotion": "joy", "smiling": True, "part": "train"})
    rows.append({"file": "img/0_joy_0.png", "person": "person0", "emotion": "boredom", "smiling": False,
                 "part": "train"})
    pd.DataFrame(rows).to_csv(d / "manifest.csv", index=False)
    return d / "manifest.csv"


def test_your_own_dataset_config_ingests(tmp_path, monkeypatch):
    block = _block(_section("Your own dataset"), "yaml")
    assert len(block.strip().splitlines()) <= 10
    cfg = validate_config(yaml.safe_load(block), where="README")
    example = load_config(ROOT / "configs" / "examples" / "my-faces.yaml")
    assert example.dataset.loader_options == cfg.dataset.loader_options  # the shipped example says the same
    assert (example.dataset.name, example.dataset.source) == (cfg.dataset.name, cfg.dataset.source)
    monkeypatch.chdir(tmp_path)
    _tree(tmp_path)
    s = ingest_dataset(cfg.dataset.name, cfg.dataset.source_path(tmp_path), tmp_path / "work" / "ingest",
                       preprocess=example.dataset.preprocess, workers=1, loader_options=cfg.dataset.loader_options)
    assert s.reconciles() and (s.written, s.quarantined) == (48, 2)
    assert s.utility_labels == ["anger", "contempt", "joy", "neutral"] and s.by_split["test"] == 16


def test_reading_a_release_runs_as_written(tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    pytest.importorskip("duckdb")
    cfg = validate_config(yaml.safe_load(_block(_section("Your own dataset"), "yaml")), where="README")
    monkeypatch.chdir(tmp_path)
    _tree(tmp_path)
    images = tmp_path / "work" / "ingest" / "images"
    ingest_dataset(cfg.dataset.name, cfg.dataset.source_path(tmp_path), images.parent,
                   preprocess=load_config(ROOT / "configs" / "examples" / "my-faces.yaml").dataset.preprocess,
                   workers=1, loader_options=cfg.dataset.loader_options)
    anonymize_table(get_method("pixelate").fit(np.zeros((1, 3, 64, 64), np.float32)), images, tmp_path / "anon")
    rel = publish_release(tmp_path / "anon", tmp_path / "work" / "release", cfg.dataset.name, method="pixelate",
                          manifest={}, private=set(), private_dir=tmp_path / "work" / "private",
                          originals_dir=images, license="cc-by-4.0")
    code = _block(_section("Reading a release"), "python")
    assert re.search(r'^release = "work/release/manifest/v-[0-9a-f]+"', code, re.MULTILINE)
    code = re.sub(r'^release = ".*?"', f'release = "{rel.path.relative_to(tmp_path).as_posix()}"', code,
                  flags=re.MULTILINE)
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)  # noqa: S102 - the README's own commands
    from PIL import Image

    assert ns["names"] == ["anger", "contempt", "joy", "neutral"]
    assert isinstance(ns["image"], Image.Image) and ns["image"].size == (64, 64) and ns["image"].mode == "RGB"
    assert len(ns["df"]) == rel.rows == sum(n for _, n in ns["counts"]) == 48
    assert set(ns["ds"]) == {"train", "test"} and len(ns["ds"]["test"]) == 16
    assert set(ns["df"]["label"]) <= set(range(4))


def _manifest(d: Path, name: str, rows: list[dict]) -> None:
    rng = np.random.default_rng(len(rows))
    for r in rows:
        (d / r["file"]).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / r["file"]), rng.integers(0, 255, (24, 24), np.uint8))
    pd.DataFrame(rows).to_csv(d / name, index=False)


def test_the_grouped_example_keeps_each_session_in_one_split(tmp_path):
    section = _section("Your own dataset")
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", section, re.DOTALL) if "group_pattern" in b)
    cfg = validate_config({"name": "grouped", **yaml.safe_load(block)}, where="README")
    d = cfg.dataset.source_path(tmp_path).parent
    _manifest(d, "manifest.csv", [{"file": f"img/p{p}_s{q}_{n}.png", "person": f"p{p}", "emotion": lab}
                                  for p in range(4) for q in range(4) for n, lab in enumerate(["anger", "joy"] * 2)])
    s = ingest_dataset(cfg.dataset.name, cfg.dataset.source_path(tmp_path), tmp_path / "out", workers=1,
                       preprocess=cfg.dataset.preprocess, split=cfg.dataset.split,
                       loader_options=cfg.dataset.loader_options)
    assert s.reconciles() and s.written == 64 and s.groups == 16
    t = pd.read_parquet(tmp_path / "out" / "images", columns=["split", "group"])
    assert t.groupby("group")["split"].nunique().max() == 1 and t["split"].nunique() > 1


def test_the_ingest_command_with_a_loader_option_runs_as_written(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import flows.cli as cli

    m = re.search(r"`deid ingest (manifest labels\.csv --option path_column=file)`", _section("Your own dataset"))
    assert m, "the README shows `deid ingest` with a loader option"
    _manifest(tmp_path, "labels.csv", [{"file": f"{p}_{lab}_{k}.png", "identity": f"p{p}", "label": lab}
                                       for p in range(3) for lab in ("anger", "joy") for k in range(3)])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "_WORK", tmp_path / "work")
    r = CliRunner().invoke(cli.app, ["ingest", *m.group(1).split()])
    assert r.exit_code == 0, r.output
    assert '"written": 18' in r.output and (tmp_path / "work" / "datasets" / "manifest" / "images").is_dir()
