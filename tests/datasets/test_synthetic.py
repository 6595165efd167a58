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
    assert {it.expression for it in scan.items} == set(FERG_EXPRESSIONS)
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
    expr = CNNClassifier(epochs=15).fit(train.X, train.expression).score(test.X, test.expression)
    assert ident >= 0.95, ident
    assert expr >= 0.85, expr
