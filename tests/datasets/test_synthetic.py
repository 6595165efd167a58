"""The built-in FERG-like dataset: layout, determinism, and that it is a fair test."""

from __future__ import annotations

import hashlib

import pytest

from deid.datasets.ferg import FERG_EXPRESSIONS, scan_ferg
from deid.datasets.synthetic import SyntheticFergConfig, generate_ferg_like


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.png")):
        h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def test_layout_and_determinism(tmp_path):
    cfg = SyntheticFergConfig(n_characters=7, images_per_cell=2, size=64, seed=5)
    a = generate_ferg_like(tmp_path / "a", cfg, workers=1)
    b = generate_ferg_like(tmp_path / "b", cfg, workers=2)
    assert _digest(a) == _digest(b)
    scan = scan_ferg(a)
    assert len(scan.items) == 7 * 7 * 2 and not scan.rejected
    assert {it.identity for it in scan.items} >= {"aia", "bonnie", "jules", "malcolm", "mery", "ray", "char06"}
    assert {it.label for it in scan.items} == set(FERG_EXPRESSIONS)
    assert (a / "aia" / "aia_joy" / "aia_joy_1.png").exists()
    c = generate_ferg_like(tmp_path / "c", SyntheticFergConfig(n_characters=7, images_per_cell=2, size=64, seed=6), workers=1)
    assert _digest(c) != _digest(a)


def test_rerun_keeps_the_tree_and_other_config_is_refused(tmp_path):
    cfg = SyntheticFergConfig(n_characters=2, images_per_cell=2, size=64)
    root = generate_ferg_like(tmp_path, cfg, workers=1)
    mtime = (root / "aia" / "aia_joy" / "aia_joy_1.png").stat().st_mtime_ns
    generate_ferg_like(tmp_path, cfg, workers=1)
    assert (root / "aia" / "aia_joy" / "aia_joy_1.png").stat().st_mtime_ns == mtime
    with pytest.raises(FileExistsError, match="another config"):
        generate_ferg_like(tmp_path, SyntheticFergConfig(n_characters=3, images_per_cell=2, size=64), workers=1)


@pytest.mark.slow
def test_it_is_a_fair_test(tmp_path):
    """A small CNN trained on the originals recognises identity (≥ 95%) and expression (≥ 85%)
    on the held-out test split, so a drop after de-identification is real."""
    from deid.data import load_image_set
    from deid.ingest import ingest_dataset
    from deid.models import CNNClassifier
    from deid.preprocessing import PreprocessConfig

    root = generate_ferg_like(tmp_path / "raw", SyntheticFergConfig(images_per_cell=24))
    ingest_dataset("ferg", root, tmp_path / "ferg", preprocess=PreprocessConfig(size=50))
    s = load_image_set(tmp_path / "ferg" / "images")
    train, test = s.of_split("train", "val"), s.of_split("test")
    ident = CNNClassifier(epochs=15).fit(train.X, train.identity).score(test.X, test.identity)
    expr = CNNClassifier(epochs=15).fit(train.X, train.label).score(test.X, test.label)
    assert ident >= 0.95, ident
    assert expr >= 0.85, expr


def test_nuisance_bins_are_recorded_balanced_and_read_by_the_loader(tmp_path):
    import numpy as np

    from deid.datasets.ferg import ATTRIBUTES_FILE, read_ferg_attributes
    from deid.datasets.synthetic import NUISANCE_BINS

    cfg = SyntheticFergConfig(n_characters=3, images_per_cell=10, size=32)
    root = generate_ferg_like(tmp_path, cfg, workers=1)
    table = read_ferg_attributes(root / ATTRIBUTES_FILE)
    assert set(table) == {p.relative_to(root).as_posix() for p in root.rglob("*.png")}
    for name in NUISANCE_BINS:
        counts = np.bincount([int(a[name]) for a in table.values()], minlength=3)
        assert len(counts) == 3 and counts.min() >= 0.2 * len(table), (name, counts)
    scan = scan_ferg(root)
    assert all(it.attributes == table[it.relpath] for it in scan.items)
    assert scan.skipped["attribute file"] == 1 and not scan.skipped.get("not in a character folder")
    assert all(it.attributes is None for it in scan_ferg(root, attributes=False).items)


def test_a_tree_without_the_attribute_file_gets_it_back_and_keeps_its_images(tmp_path):
    from deid.datasets.ferg import ATTRIBUTES_FILE

    cfg = SyntheticFergConfig(n_characters=2, images_per_cell=2, size=32)
    root = generate_ferg_like(tmp_path, cfg, workers=1)
    sidecar = (root / ATTRIBUTES_FILE).read_text()
    before = _digest(root)
    mtime = (root / "aia" / "aia_joy" / "aia_joy_1.png").stat().st_mtime_ns
    (root / ATTRIBUTES_FILE).unlink()  # a tree made before the file existed
    assert all(it.attributes is None for it in scan_ferg(root).items)
    generate_ferg_like(tmp_path, cfg, workers=1)
    assert (root / ATTRIBUTES_FILE).read_text() == sidecar
    assert _digest(root) == before and (root / "aia" / "aia_joy" / "aia_joy_1.png").stat().st_mtime_ns == mtime
    # the bins of images drawn in another process, or only replayed, are the same
    generate_ferg_like(tmp_path / "again", cfg, workers=2)
    assert (tmp_path / "again" / "FERG_DB_256" / ATTRIBUTES_FILE).read_text() == sidecar


@pytest.mark.parametrize("text, match", [
    ("name,pose_bin\nx.png,1\n", "header"),
    ("file,pose_bin,pose_bin\nx.png,1,2\n", "repeated"),
    ("file,pose_bin\nx.png,1,2\n", "line 2 has 3 columns"),
    ("file,pose_bin\nx.png,high\n", "line 2 has a value that is not a number"),
    ("file,pose_bin\nx.png,nan\n", "non-finite"),
    ("file,pose_bin\nx.png,1\nx.png,2\n", "line 3 repeats file x.png"),
])
def test_a_malformed_attribute_file_is_refused_with_its_line(tmp_path, text, match):
    from deid.datasets.ferg import read_ferg_attributes
    from deid.errors import DatasetLayoutError

    (tmp_path / "attributes.csv").write_text(text)
    with pytest.raises(DatasetLayoutError, match=match):
        read_ferg_attributes(tmp_path / "attributes.csv")


def test_colour_faces_at_128_px_ingest_in_colour_and_a_method_transforms_them(tmp_path):
    import numpy as np

    from data_contracts import ANONYMIZED_SCHEMA, IMAGES_SCHEMA, read_table
    from deid.data import load_image_set
    from deid.ingest import ingest_dataset
    from deid.methods import get_method
    from deid.pipeline import anonymize_table
    from deid.preprocessing import PreprocessConfig

    gray = generate_ferg_like(tmp_path / "gray", SyntheticFergConfig(n_characters=2, images_per_cell=2, size=128),
                              workers=1)
    root = generate_ferg_like(tmp_path / "raw", SyntheticFergConfig(n_characters=3, images_per_cell=3, size=128,
                                                                    colour=True), workers=1)
    s = ingest_dataset("ferg", root, tmp_path / "out", preprocess=PreprocessConfig(size=128, grayscale=False),
                       workers=1)
    assert s.written == 3 * 7 * 3 and s.quarantined == 0
    t = read_table(tmp_path / "out" / "images", IMAGES_SCHEMA, columns=["channels", "height"])
    assert set(t.column("channels").to_pylist()) == {3} and set(t.column("height").to_pylist()) == {128}
    data = load_image_set(tmp_path / "out" / "images")
    assert data.X.shape[1:] == (3, 128, 128)
    spread = np.abs(data.X[:, 0] - data.X[:, 2]).mean()  # red and blue differ: not grey in three channels
    assert spread > 0.05, spread
    # the grayscale tree is untouched by the flag: drawn in one channel
    import cv2

    assert cv2.imread(str(next(gray.rglob("*.png"))), cv2.IMREAD_UNCHANGED).ndim == 2
    method = get_method("pixelate").fit(data.X)
    anonymize_table(method, tmp_path / "out" / "images", tmp_path / "anon")
    out = load_image_set(tmp_path / "anon", anonymized=True)
    assert out.X.shape == data.X.shape
    assert not np.allclose(out.align_to(data.image_id).X, data.X)
    assert read_table(tmp_path / "anon", ANONYMIZED_SCHEMA, columns=["channels"]).column("channels")[0].as_py() == 3


def test_the_demo_sized_set_has_no_near_duplicates_across_splits(tmp_path):
    """The demo's own data must not trip the split-leak check: every image of a character is more than
    the check's distance from the others, at the size the demo ingests it."""
    import warnings

    from deid.ingest import ingest_dataset
    from deid.preprocessing import PreprocessConfig
    from deid.splits import SplitLeakWarning

    from deid.splits import SplitConfig

    root = generate_ferg_like(tmp_path / "raw", SyntheticFergConfig(n_characters=6, images_per_cell=24), workers=1)
    for size, split in ((50, SplitConfig(val=0.1, test=0.3, seed=0)), (64, SplitConfig())):  # the demo's, a default
        with warnings.catch_warnings():
            warnings.simplefilter("error", SplitLeakWarning)
            s = ingest_dataset("ferg", root, tmp_path / f"ferg{size}", preprocess=PreprocessConfig(size=size),
                               split=split, workers=1)
        assert s.written == 6 * 7 * 24 and s.near_duplicates_across_splits == 0
