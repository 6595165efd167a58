"""CelebA loader on small trees in the real layouts (flat and Img/Anno/Eval), and ingestion."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_contracts import IMAGES_SCHEMA, read_table
from deid.datasets.celeba import read_attributes, read_identities, read_partition, scan_celeba
from deid.errors import DatasetLayoutError
from deid.faces import FacePolicy
from deid.ingest import ingest_dataset
from deid.preprocessing import PreprocessConfig

NAMES = ["5_o_Clock_Shadow", "Arched_Eyebrows", "Male", "Smiling"]
IDS = {"000001.jpg": "2880", "000002.jpg": "2937", "000003.jpg": "2880", "000004.jpg": "8692"}
PART = {"000001.jpg": 0, "000002.jpg": 0, "000003.jpg": 1, "000004.jpg": 2}


def _attr_text(rows: dict[str, list[int]], count: bool = True) -> str:
    lines = [str(len(rows))] if count else []
    lines.append(" ".join(NAMES) + " ")
    for f, vals in rows.items():
        lines.append(f + "".join(f"{v:>3d}" for v in vals))  # the file's right-aligned padding
    return "\n".join(lines) + "\n"


ATTRS = {"000001.jpg": [-1, 1, -1, 1], "000002.jpg": [-1, -1, -1, 1],
         "000003.jpg": [1, -1, 1, -1], "000004.jpg": [-1, 1, 1, 1]}


def _tree(base: Path, make_face, *, official: bool = False, wild: bool = False, count: bool = True) -> Path:
    img_dir = (base / "Img" if official else base) / ("img_celeba" if wild else "img_align_celeba")
    anno = base / "Anno" if official else base
    ev = base / "Eval" if official else base
    for k, f in enumerate(IDS):
        make_face(img_dir / f, k, size=(250, 250) if wild else (178, 218))
    anno.mkdir(parents=True, exist_ok=True)
    ev.mkdir(parents=True, exist_ok=True)
    (anno / "identity_CelebA.txt").write_text("".join(f"{f} {i}\n" for f, i in IDS.items()))
    (anno / "list_attr_celeba.txt").write_text(_attr_text(ATTRS, count))
    (ev / "list_eval_partition.txt").write_text("".join(f"{f} {p}\n" for f, p in PART.items()))
    return base


@pytest.fixture(scope="module")
def celeba_root(tmp_path_factory, make_face) -> Path:
    return _tree(tmp_path_factory.mktemp("celeba"), make_face)


def test_scan_flat_layout(celeba_root):
    res = scan_celeba(celeba_root)
    assert not res.rejected
    by = {it.relpath: it for it in res.items}
    assert sorted(by) == [f"img_align_celeba/{f}" for f in IDS]
    assert by["img_align_celeba/000003.jpg"].identity == "2880"
    assert by["img_align_celeba/000003.jpg"].split == "val" and by["img_align_celeba/000004.jpg"].split == "test"
    assert by["img_align_celeba/000001.jpg"].attributes == {"5_o_Clock_Shadow": -1.0, "Arched_Eyebrows": 1.0,
                                                             "Male": -1.0, "Smiling": 1.0}


def test_scan_official_layout_without_count_line_and_wild(tmp_path, make_face):
    root = _tree(tmp_path, make_face, official=True, wild=True, count=False)
    res = scan_celeba(root, images="wild")
    assert len(res.items) == 4 and not res.rejected
    assert res.items[0].relpath.startswith("img_celeba/")
    with pytest.raises(DatasetLayoutError, match="img_align_celeba"):
        scan_celeba(root, images="aligned")
    no_split = scan_celeba(root, partition=False)
    assert all(it.split is None for it in no_split.items)


def test_images_without_ids_and_ids_without_images(tmp_path, make_face):
    root = _tree(tmp_path, make_face)
    make_face(root / "img_align_celeba" / "000009.jpg", 9, size=(178, 218))
    (root / "img_align_celeba" / "000002.jpg").unlink()
    res = scan_celeba(root, attributes=False, partition=False)
    reasons = {r.relpath: r.reason for r in res.rejected}
    assert "no identity" in reasons["img_align_celeba/000009.jpg"]
    assert "no image file" in reasons["img_align_celeba/000002.jpg"]
    assert len(res.items) == 3
    assert len(scan_celeba(root, attributes=False, partition=False, missing_images="ignore").rejected) == 1
    with pytest.raises(DatasetLayoutError, match="1 files listed"):
        scan_celeba(root, attributes=False, partition=False, missing_images="error")


def test_image_without_attribute_row_is_rejected(tmp_path, make_face):
    root = _tree(tmp_path, make_face)
    rows = dict(ATTRS)
    del rows["000004.jpg"]
    (root / "list_attr_celeba.txt").write_text(_attr_text(rows))
    res = scan_celeba(root)
    assert [(r.relpath, r.reason) for r in res.rejected] == [
        ("img_align_celeba/000004.jpg", "no row for this image in list_attr_celeba.txt")]


@pytest.mark.parametrize("text, match", [
    ("2\nMale Smiling\n000001.jpg  1 -1\n000002.jpg  1  0\n", r"line 4: values must be 1 or -1, got '0'"),
    ("2\nMale Smiling\n000001.jpg  1 -1\n000002.jpg  1\n", r"line 4 has 2 columns, expected 3"),
    ("3\nMale Smiling\n000001.jpg  1 -1\n000002.jpg  1 1\n", r"line 1 says 3 rows, the file has 2"),
    ("Male Smiling\n000001.jpg  1 -1\n000001.jpg  1 1\n", r"repeats"),
    ("", r"empty"),
])
def test_malformed_attribute_files(tmp_path, text, match):
    f = tmp_path / "list_attr_celeba.txt"
    f.write_text(text)
    with pytest.raises(DatasetLayoutError, match=match) as ei:
        read_attributes(f)
    assert str(f) in str(ei.value)


def test_malformed_identity_and_partition_files(tmp_path):
    f = tmp_path / "identity_CelebA.txt"
    f.write_text("000001.jpg 2880\n000002.jpg\n")
    with pytest.raises(DatasetLayoutError, match=r"line 2 has 1 columns, expected 2"):
        read_identities(f)
    f.write_text("000001.jpg 2880 extra\n")
    with pytest.raises(DatasetLayoutError, match=r"line 1 has 3 columns"):
        read_identities(f)
    p = tmp_path / "list_eval_partition.txt"
    p.write_text("000001.jpg 0\n000002.jpg 3\n")
    with pytest.raises(DatasetLayoutError, match=r"line 2"):
        read_partition(p)


def test_missing_identity_file_is_a_clear_error(tmp_path, make_face):
    make_face(tmp_path / "img_align_celeba" / "000001.jpg", 0, size=(178, 218))
    with pytest.raises(DatasetLayoutError, match="identity_CelebA.txt not found"):
        scan_celeba(tmp_path)


def test_ingest_aligned_and_wild(celeba_root, tmp_path, make_face):
    skip = PreprocessConfig(size=64, align="dlib", faces=FacePolicy(skip_detection=True))
    s = ingest_dataset("celeba", celeba_root, tmp_path / "a", preprocess=skip, workers=1)
    assert s.reconciles() and s.written == 4 and s.faces == {"skipped_detection": 4}
    assert s.by_split == {"train": 2, "val": 1, "test": 1}  # the partition file decides
    t = read_table(tmp_path / "a" / "images", IMAGES_SCHEMA)
    assert set(t.column("width").to_pylist()) == {64}
    assert t.column("attributes").to_pylist()[0] is not None
    wild = _tree(tmp_path / "w", make_face, wild=True)
    s = ingest_dataset("celeba", wild, tmp_path / "b", preprocess=PreprocessConfig(size=64, align="dlib"), workers=1)
    assert s.reconciles() and s.written == 4 and s.faces == {"detected_upsample_0": 4}


def test_attribute_as_utility_label(celeba_root, tmp_path):
    s = ingest_dataset("celeba", celeba_root, tmp_path / "u", preprocess=PreprocessConfig(size=32), workers=1,
                       utility_attribute="Smiling")
    assert s.utility_labels == ["Smiling", "not Smiling"] and s.reconciles()
    t = read_table(tmp_path / "u" / "images", IMAGES_SCHEMA)
    by = dict(zip(t.column("source_path").to_pylist(), t.column("label").to_pylist()))
    assert by["img_align_celeba/000003.jpg"] == "not Smiling" and by["img_align_celeba/000001.jpg"] == "Smiling"
    with pytest.raises(DatasetLayoutError, match="no image has attribute 'Frowning'"):
        ingest_dataset("celeba", celeba_root, tmp_path / "v", utility_attribute="Frowning", workers=1)
