"""Ingestion: reconciliation, determinism, reuse, and every kind of bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from data_contracts import IMAGES_SCHEMA, QUARANTINE_SCHEMA, read_table, table_files
from deid.errors import ConfigError, DatasetLayoutError
from deid.ingest import ingest_dataset
from deid.preprocessing import PreprocessConfig


def _png(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    path.write_bytes(buf.tobytes())


def _tree(root: Path, chars=("aia", "ray"), exprs=("joy", "anger"), n=3) -> Path:
    rng = np.random.default_rng(0)
    for c in chars:
        for e in exprs:
            for i in range(1, n + 1):
                _png(root / "FERG_DB_256" / c / f"{c}_{e}" / f"{c}_{e}_{i}.png", rng.integers(0, 255, (40, 40), np.uint8))
    return root / "FERG_DB_256"


def _quarantine(out: Path) -> dict[str, str]:
    q = read_table(out / "quarantine", QUARANTINE_SCHEMA)
    return dict(zip(q.column("source_path").to_pylist(), q.column("reason").to_pylist()))


def test_ingest_reconciles_and_is_byte_identical_on_rerun(tmp_path):
    root = _tree(tmp_path / "raw")
    a = ingest_dataset("ferg", root, tmp_path / "a", preprocess=PreprocessConfig(size=16), workers=1)
    assert (a.input, a.written, a.quarantined) == (12, 12, 0) and a.reconciles()
    assert a.identities == 2 and sum(a.by_split.values()) == 12
    b = ingest_dataset("ferg", root, tmp_path / "b", preprocess=PreprocessConfig(size=16), workers=1)
    fa, fb = table_files(tmp_path / "a" / "images"), table_files(tmp_path / "b" / "images")
    assert [f.read_bytes() for f in fa] == [f.read_bytes() for f in fb]
    t = read_table(tmp_path / "a" / "images", IMAGES_SCHEMA)
    assert set(t.column("height").to_pylist()) == {16}


def test_rerun_reuses_output_and_change_rebuilds(tmp_path):
    root = _tree(tmp_path / "raw")
    out = tmp_path / "out"
    first = ingest_dataset("ferg", root, out, preprocess=PreprocessConfig(size=16), workers=1)
    mtime = (out / "summary.json").stat().st_mtime_ns
    again = ingest_dataset("ferg", root, out, preprocess=PreprocessConfig(size=16), workers=1)
    assert again.reused and again.digest == first.digest
    assert (out / "summary.json").stat().st_mtime_ns == mtime
    resized = ingest_dataset("ferg", root, out, preprocess=PreprocessConfig(size=20), workers=1)
    assert not resized.reused and resized.digest != first.digest


def test_parallel_workers_give_the_same_bytes(tmp_path):
    root = _tree(tmp_path / "raw", n=12)
    a = ingest_dataset("ferg", root, tmp_path / "a", preprocess=PreprocessConfig(size=16), workers=1, chunk=4)
    b = ingest_dataset("ferg", root, tmp_path / "b", preprocess=PreprocessConfig(size=16), workers=2, chunk=4)
    assert a.digest == b.digest


def test_bad_files_are_quarantined_with_reasons(tmp_path):
    root = _tree(tmp_path / "raw")
    d = root / "aia" / "aia_joy"
    (d / "aia_joy_10.png").write_bytes(b"")  # zero bytes
    good = (d / "aia_joy_1.png").read_bytes()
    (d / "aia_joy_11.png").write_bytes(good[: len(good) // 2])  # truncated
    (d / "aia_joy_12.png").write_bytes(b"this is not an image")
    (d / "aia_joy_13.png").write_bytes(good)  # duplicate of aia_joy_1
    (d / "notes.txt").write_text("x")
    (d / "aia-joy-14.png").write_bytes(good)  # wrong pattern
    _png(root / "aia" / "aia_boredom" / "aia_boredom_1.png", np.zeros((8, 8), np.uint8))  # unknown expression
    _png(root / "aia" / "aia_anger" / "ray_anger_9.png", np.zeros((8, 8), np.uint8))  # wrong folder
    rgba = np.dstack([np.full((20, 20, 3), 90, np.uint8), np.full((20, 20), 128, np.uint8)])
    _png(d / "aia_joy_20.png", rgba)
    _png(d / "aia_joy_21.png", (np.arange(400).reshape(20, 20) * 150).astype(np.uint16))  # 16-bit
    out = tmp_path / "out"
    s = ingest_dataset("ferg", root, out, preprocess=PreprocessConfig(size=16), workers=1)
    q = _quarantine(out)
    assert s.input == s.written + s.quarantined
    assert s.written == 12 + 2  # RGBA and 16-bit images are converted, not dropped
    assert "empty" in q["aia/aia_joy/aia_joy_10.png"]
    assert "not a decodable image" in q["aia/aia_joy/aia_joy_11.png"]
    assert "not a decodable image" in q["aia/aia_joy/aia_joy_12.png"]
    assert q["aia/aia_joy/aia_joy_13.png"] == "duplicate of aia/aia_joy/aia_joy_1.png"
    assert "suffix" in q["aia/aia_joy/notes.txt"]
    assert "does not match" in q["aia/aia_joy/aia-joy-14.png"]
    assert "unknown expression 'boredom'" in q["aia/aia_boredom/aia_boredom_1.png"]
    assert "not in its folder" in q["aia/aia_anger/ray_anger_9.png"]


def test_palette_image_is_converted(tmp_path):
    from PIL import Image

    root = _tree(tmp_path / "raw", n=1)
    p = Image.fromarray(np.random.default_rng(1).integers(0, 255, (20, 20, 3), np.uint8)).convert("P")
    p.save(root / "aia" / "aia_joy" / "aia_joy_5.png")
    s = ingest_dataset("ferg", root, tmp_path / "out", preprocess=PreprocessConfig(size=16), workers=1)
    assert s.quarantined == 0 and s.written == 5


def test_missing_and_empty_directories_raise_clear_errors(tmp_path):
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        ingest_dataset("ferg", tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match="no character folders"):
        ingest_dataset("ferg", tmp_path / "empty", tmp_path / "out")
    with pytest.raises(ConfigError, match="unknown dataset 'fergus'"):  # an unknown name, in any registry
        ingest_dataset("fergus", tmp_path, tmp_path / "out")


def test_all_bad_input_raises_and_writes_nothing(tmp_path):
    d = tmp_path / "raw" / "aia" / "aia_joy"
    d.mkdir(parents=True)
    (d / "aia_joy_1.png").write_bytes(b"")
    with pytest.raises(DatasetLayoutError, match="none of the 1 files"):
        ingest_dataset("ferg", tmp_path / "raw", tmp_path / "out", workers=1)
    assert not (tmp_path / "out").exists()


def test_jaffe_layout(tmp_path):
    src = tmp_path / "jaffe"
    src.mkdir()
    rng = np.random.default_rng(0)
    for ident in ("KA", "KL"):
        for code in ("AN", "HA", "NE"):
            for k in (1, 2, 3):
                ok, buf = cv2.imencode(".tiff", rng.integers(0, 255, (64, 64), np.uint8))
                (src / f"{ident}.{code}{k}.{k + 10}.tiff").write_bytes(buf.tobytes())
    (src / "KA.XX1.99.tiff").write_bytes(buf.tobytes())
    (src / "README").write_text("docs")
    s = ingest_dataset("jaffe", src, tmp_path / "out", preprocess=PreprocessConfig(size=32), workers=1)
    assert (s.written, s.quarantined) == (18, 1)
    assert s.utility_labels == ["anger", "joy", "neutral"]


@pytest.mark.jaffe
def test_real_jaffe_ingests_completely(jaffe_dir, tmp_path):
    s = ingest_dataset("jaffe", jaffe_dir, tmp_path / "out", preprocess=PreprocessConfig(size=64))
    assert (s.input, s.written, s.quarantined, s.identities) == (213, 213, 0, 10)


def _near_copies_tree(root: Path, n: int = 3 * 2 * 130) -> Path:
    """Near copies (a few pixels changed) of a few base images per folder: many pairs at small hash distances,
    and more rows per split than one write batch."""
    rng = np.random.default_rng(3)
    bases = {(c, e): rng.integers(0, 255, (4, 24, 24), np.uint8) for c in ("aia", "ray", "jules") for e in ("joy", "anger")}
    for i in range(n):
        c, e = list(bases)[i % len(bases)]
        img = bases[c, e][rng.integers(0, 4)].copy()
        img[rng.integers(0, 24, 3), rng.integers(0, 24, 3)] ^= np.uint8(rng.integers(1, 255))
        _png(root / "FERG_DB_256" / c / f"{c}_{e}" / f"{c}_{e}_{i}.png", img)
    return root / "FERG_DB_256"


def test_near_duplicates_of_an_ingest_match_a_search_over_all_pairs(tmp_path):
    """The indexed search over the written rows finds the pairs that comparing every pair finds, with one
    worker or two (whose batches and row groups give the same files)."""
    from deid.imageio import decode_png
    from deid.splits import image_hash64

    root = _near_copies_tree(tmp_path / "raw")
    cfg = PreprocessConfig(size=16)
    with pytest.warns(UserWarning, match="near-duplicate"):
        one = ingest_dataset("ferg", root, tmp_path / "one", preprocess=cfg, workers=1, chunk=16)
    with pytest.warns(UserWarning, match="near-duplicate"):
        two = ingest_dataset("ferg", root, tmp_path / "two", preprocess=cfg, workers=2, chunk=16)
    assert one.digest == two.digest and one.near_duplicates_across_splits == two.near_duplicates_across_splits
    t = read_table(tmp_path / "one" / "images", IMAGES_SCHEMA)
    hashes = [image_hash64(decode_png(r["bytes"])) for r in t.column("image").to_pylist()]
    splits, ids = t.column("split").to_pylist(), t.column("identity").to_pylist()
    pairs, flagged = 0, set()
    for i in range(len(hashes)):
        for j in range(len(hashes)):
            if splits[i] != "test" and splits[j] == "test" and ids[i] == ids[j] \
                    and bin(hashes[i] ^ hashes[j]).count("1") <= 2:
                pairs += 1
                flagged.add(j)
    assert one.by_split["train"] > 512 and pairs > 0  # more than one write batch
    assert one.near_duplicates_across_splits == pairs
    assert sum(v for k, v in one.notes.items() if "near-duplicate" in k) == len(flagged)


def test_the_reason_for_an_unreadable_file_is_the_same_on_every_run():
    from deid.errors import ImageDecodeError
    from deid.imageio import read_header

    reasons = set()
    for _ in range(2):
        with pytest.raises(ImageDecodeError) as exc:
            read_header(b"not an image at all", where="a.png")
        reasons.add(str(exc.value))
    (reason,) = reasons  # no object address in it: a rerun writes the same quarantine row
    assert "unreadable header" in reason and " at 0x" not in reason
