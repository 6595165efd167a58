"""Your own dataset in: the manifest, folder and Hugging Face loaders ingest tiny trees, quarantine
every unusable row with its reason, and keep the dataset's own labels."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from other_readers import count_with_duckdb, load_with_datasets, read_with_pandas

from data_contracts import IMAGES_SCHEMA, QUARANTINE_SCHEMA, read_table, table_labels
from deid.datasets import get_loader
from deid.errors import ConfigError
from deid.ingest import ingest_dataset
from deid.preprocessing import PreprocessConfig

PRE = PreprocessConfig(size=16)
LABELS = ("anger", "contempt", "joy")


def _png(path: Path, seed: int, shape=(24, 24)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", np.random.default_rng(seed).integers(0, 255, shape, np.uint8))
    path.write_bytes(buf.tobytes())
    return path


def _quarantine(out: Path) -> dict[str, str]:
    q = read_table(out / "quarantine", QUARANTINE_SCHEMA)
    return dict(zip(q.column("source_path").to_pylist(), q.column("reason").to_pylist()))


def _people(n_ids=3, per_label=2):
    """(identity, label, k) for a small balanced set with a label no built-in dataset has."""
    return [(f"p{i}", lab, k) for i in range(n_ids) for lab in LABELS for k in range(per_label)]


def _manifest_tree(root: Path) -> pd.DataFrame:
    rows = []
    for n, (ident, lab, k) in enumerate(_people()):
        rel = f"img/{ident}_{lab}_{k}.png"
        _png(root / rel, n)
        rows.append({"file": rel, "person": ident, "emotion": lab, "smiling": "yes" if lab == "joy" else "no",
                     "yaw": str(k * 10.0), "part": ""})
    bad = [
        {"file": "img/missing.png", "person": "p0", "emotion": "joy"},
        {"file": str(_png(root / "img/nolabel.png", 100).relative_to(root)), "person": "p1", "emotion": ""},
        {"file": str(_png(root / "img/badsplit.png", 101).relative_to(root)), "person": "p1", "emotion": "joy",
         "part": "holdout"},
        {"file": str(_png(root / "img/noid.png", 102).relative_to(root)), "person": " ", "emotion": "joy"},
        {"file": "../outside.png", "person": "p1", "emotion": "joy"},
        {"file": str(_png(root / "img/yaw.png", 103).relative_to(root)), "person": "p2", "emotion": "joy",
         "yaw": "left"},
        {"file": "img/p0_joy_0.png", "person": "p0", "emotion": "joy"},  # listed twice
    ]
    for b in bad:
        rows.append({"smiling": "no", "yaw": "0", "part": "", **b})
    df = pd.DataFrame(rows)
    df.loc[df["part"] == "", "part"] = ""
    return df


def _check_reconciles(s) -> None:
    assert s.reconciles() and s.input == s.written + s.quarantined and s.seen == s.input + sum(s.skipped.values())


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_manifest_ingests_its_rows_and_quarantines_the_unusable_ones(tmp_path, fmt):
    root = tmp_path / "data"
    df = _manifest_tree(root)
    df["part"] = df["part"].where(df["part"] != "", "train")  # every row names its split ...
    df.loc[df["file"] == "img/badsplit.png", "part"] = "holdout"  # ... one an unknown one
    f = root / f"faces.{fmt}"  # paths are relative to the manifest's own folder
    df.to_csv(f, index=False) if fmt == "csv" else df.to_parquet(f, index=False)
    opts = {"path_column": "file", "identity_column": "person", "label_column": ["emotion", "smiling"],
            "attribute_columns": ["yaw"], "split_column": "part"}
    s = ingest_dataset("manifest", f, tmp_path / "out", preprocess=PRE, workers=1, loader_options=opts)
    _check_reconciles(s)
    assert s.written == len(_people()) and s.quarantined == 7
    assert s.utility_labels == sorted(LABELS)  # contempt is a label like any other
    q = _quarantine(tmp_path / "out")
    assert q["img/missing.png"].startswith("missing file")
    assert q["img/nolabel.png"].startswith("empty label")
    assert q["img/badsplit.png"].startswith("unknown split 'holdout'")
    assert q["img/noid.png"].startswith("empty identity")
    assert q["../outside.png"].startswith("outside root")
    assert q["img/yaw.png"].startswith("attribute 'yaw' is not a number")
    assert "listed twice" in q["img/p0_joy_0.png"]
    t = read_table(tmp_path / "out" / "images", IMAGES_SCHEMA)
    assert set(t.column("split").to_pylist()) == {"train"}  # the manifest's split column is kept
    attrs = {r["name"]: r["value"] for r in t.column("attributes")[0].as_py()}
    assert set(attrs) == {"smiling", "yaw"} and attrs["smiling"] in (0.0, 1.0)  # no / yes as their index
    quarantine = load_with_datasets(tmp_path / "out" / "quarantine", tmp_path / "hf-cache", label=None)
    assert len(quarantine["train"]) == count_with_duckdb(tmp_path / "out" / "quarantine") == 7
    assert len(read_with_pandas(tmp_path / "out" / "images")) == s.written


def test_declared_labels_set_the_vocabulary_and_its_order(tmp_path):
    root = tmp_path / "data"
    df = _manifest_tree(root).iloc[: len(_people())]
    df.to_csv(root / "manifest.csv", index=False)
    opts = {"path_column": "file", "identity_column": "person", "label_column": "emotion",
            "labels": ["joy", "anger"]}  # contempt is not declared: its rows are quarantined
    s = ingest_dataset("manifest", root, tmp_path / "out", preprocess=PRE, workers=1, loader_options=opts)
    _check_reconciles(s)
    assert s.utility_labels == ["anger", "joy"] and s.quarantined == len(_people()) // 3
    assert all(r.startswith("unknown label 'contempt'") for r in _quarantine(tmp_path / "out").values())
    assert table_labels(tmp_path / "out" / "images") == ["joy", "anger"]  # the declared order is the ClassLabel's


def test_manifest_configuration_mistakes_are_one_line(tmp_path):
    root = tmp_path / "data"
    _manifest_tree(root).to_csv(root / "manifest.csv", index=False)
    with pytest.raises(ConfigError, match="no column 'identity'"):
        get_loader("manifest").scan(root, path_column="file")
    with pytest.raises(ConfigError, match="labels"):
        get_loader("manifest").scan(root, path_column="file", identity_column="person", label_column="emotion",
                                    labels=["joy", "joy"])
    with pytest.raises(Exception, match="manifest.csv or manifest.parquet"):
        get_loader("manifest").scan(tmp_path)


def test_folder_with_label_folders(tmp_path):
    root = tmp_path / "faces"
    for n, (ident, lab, k) in enumerate(_people()):
        _png(root / ident / lab / f"{k}.png", n)
    _png(root / "p0" / "loose.png", 200)  # no label folder
    _png(root / "p1" / "joy" / "deeper" / "x.png", 201)  # nested too deep
    (root / "p2" / "joy" / "notes.md").write_text("about these photos")  # documentation: skipped
    (root / "p2" / "joy" / "raw.dat").write_bytes(b"\x00")  # not an image
    (root / "README.md").write_text("my faces")
    _png(root / "stray.png", 202)  # not in an identity folder
    s = ingest_dataset("folder", root, tmp_path / "out", preprocess=PRE, workers=1)
    _check_reconciles(s)
    assert (s.written, s.quarantined, s.identities) == (len(_people()), 4, 3)
    assert s.skipped == {"documentation": 2}
    q = _quarantine(tmp_path / "out")
    assert "no label folder" in q["p0/loose.png"] and "nested" in q["p1/joy/deeper/x.png"]
    assert "suffix" in q["p2/joy/raw.dat"] and "identity folder" in q["stray.png"]


def test_folder_with_a_label_file_and_a_binary_label(tmp_path):
    root = tmp_path / "faces"
    rows = []
    for n, (ident, lab, k) in enumerate(_people()):
        rel = f"{ident}/{lab}_{k}.png"
        _png(root / rel, n)
        rows.append({"path": rel, "smiling": lab == "joy"})
    _png(root / "p0" / "unlisted.png", 300)
    rows.append({"path": "p1/gone.png", "smiling": True})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    s = ingest_dataset("folder", root, tmp_path / "out", preprocess=PRE, workers=1,
                       loader_options={"label_file": "labels.csv", "label_column": "smiling"})
    _check_reconciles(s)
    assert s.utility_labels == ["False", "True"] or s.utility_labels == ["false", "true"]
    assert s.skipped == {"label file": 1}
    q = _quarantine(tmp_path / "out")
    assert "no row for this image" in q["p0/unlisted.png"] and "no image file" in q["p1/gone.png"]
    with pytest.raises(ConfigError, match="label_file"):
        get_loader("folder").scan(root, split_column="part")


def _hf_rows():
    datasets = pytest.importorskip("datasets")
    feats = datasets.Features({"image": datasets.Image(), "person": datasets.Value("string"),
                               "emotion": datasets.ClassLabel(names=list(LABELS))})
    rows = {"image": [], "person": [], "emotion": []}
    for n, (ident, lab, k) in enumerate(_people()):
        ok, buf = cv2.imencode(".png", np.random.default_rng(n).integers(0, 255, (24, 24), np.uint8))
        rows["image"].append({"bytes": buf.tobytes(), "path": None})
        rows["person"].append(ident)
        rows["emotion"].append(LABELS.index(lab))
    rows["image"].append({"bytes": b"not an image", "path": None})  # undecodable
    rows["person"].append("p0")
    rows["emotion"].append(0)
    rows["image"].append(rows["image"][0])
    rows["person"].append("")  # no identity
    rows["emotion"].append(1)
    return datasets, datasets.Dataset.from_dict(rows, features=feats)


OPTS = {"identity_column": "person", "label_column": "emotion"}


def test_hf_save_to_disk(tmp_path):
    datasets, ds = _hf_rows()
    parts = ds.train_test_split(test_size=0.25, seed=0)
    datasets.DatasetDict({"train": parts["train"], "test": parts["test"]}).save_to_disk(str(tmp_path / "saved"))
    s = ingest_dataset("hf", tmp_path / "saved", tmp_path / "out", preprocess=PRE, workers=1, loader_options=OPTS)
    _check_reconciles(s)
    assert (s.written, s.quarantined) == (len(_people()), 2)
    assert table_labels(tmp_path / "out" / "images") == list(LABELS)  # the ClassLabel's own names and order
    assert s.by_split["test"] == len(parts["test"]) - sum(1 for r in parts["test"] if r["person"] == ""
                                                         or r["image"] is None)
    reasons = set(_quarantine(tmp_path / "out").values())
    assert any("not a decodable image" in r for r in reasons) and any(r.startswith("empty identity") for r in reasons)


def test_hf_parquet_folder_and_imagefolder(tmp_path):
    datasets, ds = _hf_rows()
    (tmp_path / "pq" / "data").mkdir(parents=True)
    ds.to_parquet(str(tmp_path / "pq" / "data" / "train-00000-of-00001.parquet"))
    s = ingest_dataset("hf", tmp_path / "pq", tmp_path / "out", preprocess=PRE, workers=1, loader_options=OPTS)
    _check_reconciles(s)
    assert (s.written, s.quarantined) == (len(_people()), 2) and s.by_split["test"] == 0  # all of it is 'train'
    # imagefolder: <split>/<label>/<image> with a metadata.csv giving identities
    root = tmp_path / "imgf"
    meta = []
    for n, (ident, lab, k) in enumerate(_people()):
        split = "test" if k == 1 and ident == "p0" else "train"
        _png(root / split / lab / f"{ident}_{k}.png", n)
        meta.append({"file_name": f"{split}/{lab}/{ident}_{k}.png", "person": ident})
    meta.append({"file_name": "train/joy/ghost.png", "person": "p9"})
    _png(root / "train" / "joy" / "unlisted.png", 400)
    pd.DataFrame(meta).to_csv(root / "metadata.csv", index=False)
    s = ingest_dataset("hf", root, tmp_path / "out2", preprocess=PRE, workers=1,
                       loader_options={"identity_column": "person", "label_column": "label"})
    _check_reconciles(s)
    assert (s.written, s.quarantined) == (len(_people()), 2) and s.by_split["test"] == len(LABELS)
    assert s.utility_labels == sorted(LABELS)


def test_ferg_layout_takes_any_expression_when_asked(tmp_path):
    root = tmp_path / "FERG_DB_256"
    for n, (c, e, i) in enumerate((c, e, i) for c in ("aia", "ray") for e in ("joy", "contempt") for i in (1, 2)):
        _png(root / c / f"{c}_{e}" / f"{c}_{e}_{i}.png", n)  # distinct seeds: hash() of a str varies by process
    strict = get_loader("ferg").scan(root)
    assert len(strict.items) == 4 and all("unknown expression 'contempt'" in r.reason for r in strict.rejected)
    s = ingest_dataset("ferg", root, tmp_path / "out", preprocess=PRE, workers=1,
                       loader_options={"expressions": None})
    assert s.written == 8 and s.utility_labels == ["contempt", "joy"]


def test_an_ingested_table_reads_in_pandas_duckdb_and_datasets(tmp_path):
    root = tmp_path / "faces"
    for n, (ident, lab, k) in enumerate(_people(n_ids=4, per_label=3)):
        _png(root / ident / lab / f"{k}.png", n)
    s = ingest_dataset("folder", root, tmp_path / "out", preprocess=PRE, workers=1)
    images = tmp_path / "out" / "images"
    df = read_with_pandas(images)
    assert len(df) == s.written and sorted(df["split"].unique()) == sorted(k for k, v in s.by_split.items() if v)
    assert count_with_duckdb(images) == s.written
    ds = load_with_datasets(images, tmp_path / "hf-cache")
    assert sum(len(d) for d in ds.values()) == s.written
    assert ds["train"].features["label"].names == sorted(LABELS)
    assert {"validation" if k == "val" else k for k, v in s.by_split.items() if v} == set(ds)
    assert json.loads(json.dumps(ds["train"][0]["attributes"])) is None


@pytest.mark.reliability(section='4. Ingest: every entry counted, nothing kills the batch', case="hf imagefolder: one image listed twice ('./a/x.png', a symlinked folder)",
                         before='the later row silently relabelled the image (42 rows, 40 items, 0 rejected)',
                         after="quarantined as 'listed twice' on its resolved path, as the manifest loader does")
def test_hf_imagefolder_image_listed_twice_is_quarantined(tmp_path):
    root = tmp_path / "imgf"
    meta = []
    for n, (ident, lab, k) in enumerate(_people()):
        _png(root / "train" / lab / f"{ident}_{k}.png", n)
        meta.append({"file_name": f"train/{lab}/{ident}_{k}.png", "person": ident})
    (root / "alias").symlink_to(root / "train")
    first = meta[0]["file_name"]
    meta.append({"file_name": "./" + first, "person": "p2"})  # the same file, spelt another way
    meta.append({"file_name": first.replace("train/", "alias/"), "person": "p1"})  # through a symlinked folder
    pd.DataFrame(meta).to_csv(root / "metadata.csv", index=False)
    s = ingest_dataset("hf", root, tmp_path / "out", preprocess=PRE, workers=1,
                       loader_options={"identity_column": "person", "label_column": "label"})
    _check_reconciles(s)
    assert s.written == len(_people()) - 1
    assert any("listed twice" in r for r in _quarantine(tmp_path / "out").values())


@pytest.mark.reliability(section='2. Paths from config are validated', case="hf save_to_disk: state.json lists '../elsewhere/private.arrow'",
                         before='the file outside the dataset folder was ingested (60 rows)',
                         after='one error naming the file; nothing read outside the root')
def test_hf_save_to_disk_never_reads_outside_its_root(tmp_path):
    import json

    from deid.errors import DatasetLayoutError

    datasets, ds = _hf_rows()
    ds.save_to_disk(str(tmp_path / "elsewhere"))
    (tmp_path / "saved").mkdir()
    ds.save_to_disk(str(tmp_path / "saved" / "inner"))
    root = tmp_path / "saved" / "inner"
    state = json.loads((root / "state.json").read_text())
    arrow = state["_data_files"][0]["filename"]
    state["_data_files"] = [{"filename": f"../../elsewhere/{arrow}"}]
    (root / "state.json").write_text(json.dumps(state))
    with pytest.raises(DatasetLayoutError, match="not a file inside"):
        ingest_dataset("hf", root, tmp_path / "out", preprocess=PRE, workers=1, loader_options=OPTS)
    assert not (tmp_path / "out" / "images").exists()


@pytest.mark.reliability(section='4. Ingest: every entry counted, nothing kills the batch', case="CSV cells 'NaN', 'None', 'null', 'N/A', '#N/A' as labels",
                         before='each became a label class of its own', after='read as missing: the row is quarantined for its missing label')
def test_missing_value_spellings_in_a_csv_are_missing(tmp_path):
    from deid.datasets.manifest import read_manifest

    p = tmp_path / "m.csv"
    pd.DataFrame({"file": [f"{i}.png" for i in range(6)], "label": ["NaN", "None", "null", "N/A", "#N/A", "happy"]}
                 ).to_csv(p, index=False)
    _, rows = read_manifest(p)
    assert [r["label"] for r in rows] == [None] * 5 + ["happy"]
