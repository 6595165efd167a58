"""The folder loader's ``path_pattern``: labels, identity and group read from each image's path (CK+'s
``happy/S010_006_00000015.png``), on a tree the test draws and on CK+48 itself when it is on this machine;
a bad pattern or a misspelt option is one line when the config loads, before any image is read."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from data_contracts import IMAGES_SCHEMA, QUARANTINE_SCHEMA, read_table
from deid.config import load_config
from deid.datasets import get_loader
from deid.errors import ConfigError
from deid.ingest import ingest_dataset
from deid.preprocessing import PreprocessConfig
from flows.cli import app

ROOT = Path(__file__).resolve().parents[2]
CKPLUS48 = ROOT.parent / "shared" / "data" / "ckplus48"
EXAMPLE = ROOT / "configs" / "examples" / "ckplus48.yaml"
LABELS = ("anger", "happy", "surprise")


def _png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", np.random.default_rng(seed).integers(0, 255, (24, 24), np.uint8))
    path.write_bytes(buf.tobytes())


def _ck_tree(root: Path, subjects: int = 6, sequences: int = 2) -> Path:
    """CK+'s layout: <label>/S<subject>_<sequence>_<frame>.png, three frames a sequence, each subject
    posing every label; plus a file the pattern does not match and a README."""
    n = 0
    for s in range(subjects):
        for li, label in enumerate(LABELS):
            for q in range(sequences):
                for frame in range(3):
                    _png(root / label / f"S{s + 10:03d}_{li * sequences + q + 1:03d}_{frame + 13:08d}.png", n)
                    n += 1
    _png(root / "happy" / "snapshot.png", n)
    (root / "README.md").write_text("CK+ drawn by a test")
    return root


def _options() -> dict:
    return load_config(EXAMPLE).dataset.loader_options


def _straddling(images: Path) -> dict[str, set[str]]:
    t = read_table(images, IMAGES_SCHEMA, columns=["split", "group"])
    where = defaultdict(set)
    for split, group in zip(t.column("split").to_pylist(), t.column("group").to_pylist()):
        where[group].add(split)
    return {g: s for g, s in where.items() if len(s) > 1}


def test_path_pattern_reads_label_identity_and_sequence_from_the_path(tmp_path):
    root = _ck_tree(tmp_path / "ck")
    out = tmp_path / "out"
    s = ingest_dataset("folder", root, out, preprocess=PreprocessConfig(size=16), workers=1,
                       loader_options=_options())
    assert s.reconciles() and s.written == 6 * 3 * 2 * 3 and s.quarantined == 1
    assert s.identities == 6 and s.utility_labels == sorted(LABELS) and s.groups == 6 * 3 * 2
    assert s.skipped == {"documentation": 1}
    q = read_table(out / "quarantine", QUARANTINE_SCHEMA)
    assert q.column("source_path").to_pylist() == ["happy/snapshot.png"]
    assert q.column("reason")[0].as_py().startswith("path_pattern does not match this path")
    t = read_table(out / "images", IMAGES_SCHEMA, columns=["identity", "label", "group"])
    row = dict(zip(t.column_names, (c[0].as_py() for c in t.columns)))
    assert row["group"].startswith(row["identity"] + "_") and row["label"] in LABELS
    assert set(s.by_split) >= {"train", "test"} and s.by_split["test"] > 0
    assert _straddling(out / "images") == {}


def test_other_named_groups_become_attributes(tmp_path):
    root = _ck_tree(tmp_path / "ck", subjects=3, sequences=1)
    pattern = r"(?P<label>[^/]+)/(?P<identity>S\d+)_(?P<sequence>\d+)_(?P<frame>\d+)\.png$"
    scan = get_loader("folder").scan(root, path_pattern=pattern)
    item = next(i for i in scan.items if i.relpath == "anger/S010_001_00000014.png")
    assert (item.identity, item.label, item.group) == ("S010", "anger", None)
    assert item.attributes == {"frame": 14.0, "sequence": 1.0}


@pytest.mark.parametrize("options,line", [
    ({"path_pattern": "(?P<label>[^/]+/(S\\d+"}, "is not a regular expression"),
    ({"path_pattern": "(?P<label>[^/]+)/(S\\d+)_"}, "has no named group identity"),
    ({"path_patern": "(?P<label>[^/]+)/(?P<identity>S\\d+)_"}, "'path_patern' (did you mean 'path_pattern'?)"),
    ({"path_pattern": "(?P<label>[^/]+)/(?P<identity>S\\d+)_", "label_file": "labels.csv"}, "not both"),
])
def test_a_bad_pattern_or_a_misspelt_option_is_one_line_when_the_config_loads(tmp_path, options, line):
    cfg = yaml.safe_load(EXAMPLE.read_text())
    cfg["dataset"]["loader_options"] = options
    path = tmp_path / "ck.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert line in str(e.value) and len(str(e.value).splitlines()) == 1
    r = CliRunner().invoke(app, ["validate", str(path)])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and line in r.output


def test_the_plain_folder_example_ingests_its_layout(tmp_path):
    cfg = load_config(ROOT / "configs" / "examples" / "folder.yaml")
    root = tmp_path / cfg.dataset.source
    for p in range(3):
        for li, label in enumerate(["anger", "contempt", "joy", "neutral", "boredom"]):
            for k in range(3):
                _png(root / f"p{p}" / label / f"p{p}_s{k % 2}_{k}.png", p * 100 + li * 10 + k)
    s = ingest_dataset("folder", root, tmp_path / "out", preprocess=cfg.dataset.preprocess, workers=1,
                       loader_options=cfg.dataset.loader_options)
    assert s.reconciles() and (s.written, s.quarantined) == (3 * 4 * 3, 3 * 3)  # boredom is not a declared label
    assert s.utility_labels == ["anger", "contempt", "joy", "neutral"]


@pytest.mark.skipif(not CKPLUS48.is_dir(), reason="CK+48 is not on this machine (../shared/data/ckplus48)")
def test_ckplus48_by_path_pattern_keeps_every_sequence_in_one_split(tmp_path):
    cfg = load_config(EXAMPLE)
    assert cfg.dataset.source_path(ROOT).resolve() == CKPLUS48.resolve()
    out = tmp_path / "ckplus48"
    s = ingest_dataset(cfg.dataset.name, CKPLUS48, out, preprocess=cfg.dataset.preprocess, split=cfg.dataset.split,
                       workers=1, loader_options=cfg.dataset.loader_options)
    assert s.reconciles() and (s.written, s.quarantined) == (981, 0)
    assert s.identities == 118 and s.groups == 327 and len(s.utility_labels) == 7
    assert _straddling(out / "images") == {}  # a sequence's three near-identical frames never straddle the split
    assert s.by_split["test"] > 200
