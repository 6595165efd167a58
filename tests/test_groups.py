"""Groups (recordings, sessions) never straddle splits, and near-duplicates across splits are counted."""

from __future__ import annotations

import warnings
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from data_contracts import IMAGES_SCHEMA, read_table
from deid.datasets.base import SourceItem, apply_group_pattern
from deid.datasets.rafd import scan_rafd
from deid.errors import ConfigError
from deid.ingest import ingest_dataset
from deid.preprocessing import PreprocessConfig
from deid.splits import SplitConfig, SplitLeakWarning, assign_splits, image_hash64, near_duplicates_across_splits


def _layout(rng: np.random.Generator, ungrouped: bool = True, cross_identity: bool = True):
    """Random items: identities × labels × groups of random sizes, some ungrouped items, and
    now and then a group holding two identities."""
    keys, ids, labs, groups = [], [], [], []
    n_ids, n_labs = int(rng.integers(1, 7)), int(rng.integers(1, 4))
    for i in range(n_ids):
        for lab in range(n_labs):
            for g in range(int(rng.integers(1, 6))):
                other = cross_identity and n_ids > 1 and rng.random() < 0.05
                for f in range(int(rng.integers(1, 7))):
                    ident = f"id{(i + 1) % n_ids}" if other and f % 2 else f"id{i}"
                    keys.append(f"id{i}/l{lab}/g{g}/{f}.png")
                    ids.append(ident)
                    labs.append(f"l{lab}")
                    groups.append(None if ungrouped and rng.random() < 0.05 else f"id{i}-l{lab}-g{g}")
    return keys, ids, labs, groups


def _straddling(groups, splits) -> list[str]:
    seen = defaultdict(set)
    for g, s in zip(groups, splits):
        if g is not None:
            seen[g].add(s)
    return [g for g, ss in seen.items() if len(ss) > 1]


@pytest.mark.parametrize("identity_disjoint", [False, True])
def test_groups_never_straddle_splits_over_random_layouts(identity_disjoint):
    rng = np.random.default_rng(7)
    for trial in range(60):
        keys, ids, labs, groups = _layout(rng)
        cfg = SplitConfig(val=0.1, test=0.2, seed=trial, identity_disjoint=identity_disjoint)
        s = assign_splits(keys, ids, labs, cfg, groups=groups)
        assert set(s) <= {"train", "val", "test"}
        assert _straddling(groups, s) == [], trial
        if identity_disjoint:
            by_id = defaultdict(set)
            for i, x in zip(ids, s):
                by_id[i].add(x)
            assert all(len(v) == 1 for v in by_id.values()), trial


def test_ungrouped_layouts_still_straddle_without_groups():
    # the property above is not vacuous: the same layouts split frame by frame do straddle
    rng = np.random.default_rng(7)
    straddled = 0
    for trial in range(20):
        keys, ids, labs, groups = _layout(rng)
        s = assign_splits(keys, ids, labs, SplitConfig(val=0.1, test=0.2, seed=trial))
        straddled += len(_straddling(groups, s))
    assert straddled > 20


def test_grouped_split_is_deterministic_order_free_and_seeded():
    keys, ids, labs, groups = _layout(np.random.default_rng(1), cross_identity=False)
    cfg = SplitConfig(seed=5)
    a = assign_splits(keys, ids, labs, cfg, groups=groups)
    assert assign_splits(keys, ids, labs, cfg, groups=groups) == a
    rev = assign_splits(keys[::-1], ids[::-1], labs[::-1], cfg, groups=groups[::-1])[::-1]
    assert rev == a
    assert assign_splits(keys, ids, labs, SplitConfig(seed=6), groups=groups) != a


def test_grouped_split_stays_stratified_by_identity():
    # 10 identities × 4 labels × 3 sequences of 3 frames: every (identity, label) cell has 3 groups
    keys, ids, labs, groups = [], [], [], []
    for i in range(10):
        for lab in "abcd":
            for g in range(3):
                for f in range(3):
                    keys.append(f"p{i}/{lab}/{g}_{f}.png")
                    ids.append(f"p{i}")
                    labs.append(lab)
                    groups.append(f"p{i}/{lab}/{g}")
    s = assign_splits(keys, ids, labs, SplitConfig(val=0.1, test=0.2, seed=0), groups=groups)
    assert _straddling(groups, s) == []
    per_id = Counter((i, x) for i, x in zip(ids, s))
    for i in set(ids):
        assert per_id[(i, "train")] >= 18  # 36 items each: at most half go to val and test
        assert 3 <= per_id[(i, "test")] <= 12
    per_cell = Counter((i, lab, x) for i, lab, x in zip(ids, labs, s))
    assert all(per_cell[(i, lab, "test")] == 3 for i in set(ids) for lab in "abcd")  # one of 3 groups
    assert all(per_cell[(i, lab, "train")] >= 3 for i in set(ids) for lab in "abcd")
    total = Counter(s)
    assert 0.2 <= total["test"] / len(s) <= 0.4


def test_one_group_per_cell_is_stratified_by_identity():
    # RaFD-like: one session per (person, expression); sessions are spread within each person
    keys, ids, labs, groups = [], [], [], []
    exprs = [f"e{k}" for k in range(8)]
    for i in range(12):
        for e in exprs:
            for gaze in ("left", "frontal", "right"):
                keys.append(f"{i}_{e}_{gaze}.jpg")
                ids.append(str(i))
                labs.append(e)
                groups.append(f"{i}_{e}")
    s = assign_splits(keys, ids, labs, SplitConfig(val=0.1, test=0.2, seed=0), groups=groups)
    assert _straddling(groups, s) == []
    per_id = Counter((i, x) for i, x in zip(ids, s))
    for i in set(ids):  # 8 sessions each: 2 test, 1 val, 5 train
        assert (per_id[(i, "test")], per_id[(i, "val")], per_id[(i, "train")]) == (6, 3, 15)
    test_labels = Counter(lab for lab, x in zip(labs, s) if x == "test")
    assert len(test_labels) >= 6  # the test sessions are not all one expression


def test_no_groups_or_group_by_none_keeps_the_frame_split():
    keys, ids, labs, groups = _layout(np.random.default_rng(3))
    plain = assign_splits(keys, ids, labs, SplitConfig())
    assert assign_splits(keys, ids, labs, SplitConfig(), groups=[None] * len(keys)) == plain
    assert assign_splits(keys, ids, labs, SplitConfig(group_by="none"), groups=groups) == plain
    assert assign_splits(keys, ids, labs, SplitConfig(), groups=groups) != plain
    with pytest.raises(ValueError):
        SplitConfig(group_by="sequence")
    with pytest.raises(ValueError, match="one entry per item"):
        assign_splits(keys, ids, labs, SplitConfig(), groups=groups[:-1])


def _brute(hashes, splits, ids, d):
    pairs, flagged = 0, set()
    for i in range(len(hashes)):
        for j in range(len(hashes)):
            if splits[i] != "test" and splits[j] == "test" and ids[i] == ids[j] \
                    and bin(hashes[i] ^ hashes[j]).count("1") <= d:
                pairs += 1
                flagged.add(j)
    return pairs, len(flagged)


def test_near_duplicate_count_matches_brute_force():
    h = [0b1011, 0b1011, 0b1000, 0b0100, 0b1011, 0b1011]
    sp = ["train", "test", "test", "test", "val", "test"]
    ids = ["a", "a", "a", "a", "a", "b"]
    # train 0 ~ test 1 (0 bits) and test 2 (2 bits); val 4 the same; test 3 is 4 bits off;
    # test 5 is identical but another identity
    nd = near_duplicates_across_splits(h, sp, ids, max_distance=2)
    assert (nd.pairs, nd.test_items, nd.complete) == (4, 2, True)
    assert near_duplicates_across_splits(h, sp, ids, max_distance=0).pairs == 2
    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(2, 200))
        base = rng.integers(0, 2**63, size=8, dtype=np.uint64)
        hashes = []
        for _ in range(n):  # near copies of a few bases: many pairs at small distances
            x = int(base[rng.integers(0, 8)])
            for b in rng.integers(0, 63, size=int(rng.integers(0, 4))):
                x ^= 1 << int(b)
            hashes.append(x)
        splits = list(rng.choice(["train", "val", "test"], size=n))
        ids = list(rng.choice(["a", "b", "c"], size=n))
        for d in (0, 2, 3):
            nd = near_duplicates_across_splits(hashes, splits, ids, max_distance=d)
            assert (nd.pairs, nd.test_items) == _brute(hashes, splits, ids, d), (trial, d)


def test_near_duplicate_search_is_capped():
    n = 400  # one hash for everyone: 300 × 100 pairs to compare
    splits = ["train"] * 300 + ["test"] * 100
    full = near_duplicates_across_splits([5] * n, splits, ["a"] * n)
    assert (full.pairs, full.test_items, full.complete) == (30_000, 100, True)
    capped = near_duplicates_across_splits([5] * n, splits, ["a"] * n, max_comparisons=1000)
    assert not capped.complete and capped.pairs < 30_000


def test_image_hash64_is_stable_under_a_pixel_and_differs_between_images():
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.random((5, 5)).astype(np.float32) * 255, (40, 40), interpolation=cv2.INTER_CUBIC)
    img = np.clip(img, 0, 255).astype(np.uint8)
    moved = img.copy()
    moved[10, 10] ^= 0x20
    other = np.ascontiguousarray(img[::-1])
    h = image_hash64(img)
    assert 0 <= h < 2**63
    assert bin(h ^ image_hash64(moved)).count("1") <= 2
    assert bin(h ^ image_hash64(other)).count("1") > 8
    assert image_hash64(np.dstack([img] * 3)) == h


def test_group_pattern_named_group_whole_match_and_errors():
    items = [SourceItem(Path("x"), f"a/seq{s}_frame{f}.png", "a") for s in range(2) for f in range(2)]
    named = apply_group_pattern(items, r"(?P<group>seq\d+)_frame")
    assert [it.group for it in named] == ["seq0", "seq0", "seq1", "seq1"]
    whole = apply_group_pattern(items, r"seq\d+")
    assert [it.group for it in whole] == ["seq0", "seq0", "seq1", "seq1"]
    with pytest.raises(ConfigError, match="not a regular expression"):
        apply_group_pattern(items, "(?P<group>")
    with pytest.raises(ConfigError, match="matches none"):
        apply_group_pattern(items, "clip")


def test_rafd_groups_one_session_across_cameras_and_gazes(tmp_path):
    for cam in ("045", "090"):
        for expr in ("angry", "happy"):
            for gaze in ("left", "frontal"):
                (tmp_path / f"Rafd{cam}_07_Caucasian_male_{expr}_{gaze}.jpg").write_bytes(b"")
    res = scan_rafd(tmp_path, cameras=None)
    assert len(res.items) == 8
    assert Counter(it.group for it in res.items) == {"07_angry": 4, "07_happy": 4}


def _sequence_tree(root: Path, chars=("aia", "ray"), exprs=("joy", "anger"), seqs=4, frames=3) -> Path:
    """FERG layout; file ``<char>_<expr>_<seq><frame>.png``: each sequence is one smooth image and
    its frames differ from it in one or two pixels."""
    rng = np.random.default_rng(0)
    for c in chars:
        for e in exprs:
            for s in range(1, seqs + 1):
                base = cv2.resize(rng.random((5, 5)).astype(np.float32) * 255, (40, 40),
                                  interpolation=cv2.INTER_CUBIC)
                base = np.clip(base, 0, 255).astype(np.uint8)
                for f in range(1, frames + 1):
                    img = base.copy()
                    for _ in range(int(rng.integers(1, 3))):
                        y, x = rng.integers(0, 40, size=2)
                        img[y, x] ^= 0x30
                    path = root / "FERG_DB_256" / c / f"{c}_{e}" / f"{c}_{e}_{s}{f}.png"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(cv2.imencode(".png", img)[1].tobytes())
    return root / "FERG_DB_256"


def test_ingest_counts_near_duplicates_and_a_group_pattern_removes_them(tmp_path):
    root = _sequence_tree(tmp_path / "raw")
    pre = PreprocessConfig(size=16)
    with pytest.warns(SplitLeakWarning, match="near-duplicate"):
        leaky = ingest_dataset("ferg", root, tmp_path / "frames", preprocess=pre, workers=1)
    assert leaky.written == 48 and leaky.near_duplicates_across_splits > 0
    assert sum(v for k, v in leaky.notes.items() if "near-duplicate" in k) > 0
    with pytest.warns(SplitLeakWarning):  # a reused output warns again
        assert ingest_dataset("ferg", root, tmp_path / "frames", preprocess=pre, workers=1).reused

    opts = {"group_pattern": r"(?P<group>[^/]+_\d)\d\.png$"}
    with warnings.catch_warnings():
        warnings.simplefilter("error", SplitLeakWarning)
        grouped = ingest_dataset("ferg", root, tmp_path / "frames", preprocess=pre, workers=1, loader_options=opts)
    assert not grouped.reused and grouped.written == 48
    assert grouped.near_duplicates_across_splits == 0 and not any("near-duplicate" in k for k in grouped.notes)
    assert grouped.by_split["test"] > 0 and grouped.by_split["train"] > 0
    t = read_table(tmp_path / "frames" / "images", IMAGES_SCHEMA)
    split_of = defaultdict(set)
    for p, s in zip(t.column("source_path").to_pylist(), t.column("split").to_pylist()):
        split_of[p.rsplit("/", 1)[1][:-5]].add(s)  # aia_joy_3 from aia_joy_32.png
    assert len(split_of) == 16 and all(len(v) == 1 for v in split_of.values())
    assert set(t.schema.names) == set(IMAGES_SCHEMA.names)  # the group is not stored

    with pytest.raises(ConfigError, match="group_pattern"):
        ingest_dataset("ferg", root, tmp_path / "bad", preprocess=pre, workers=1,
                       loader_options={"group_pattern": "(?P<group>"})


def test_with_groups_a_near_duplicate_across_splits_is_a_look_alike_not_a_leak(tmp_path):
    """A near-duplicate across the splits of a grouped dataset comes from another group (a group never
    straddles splits): it is reported as a look-alike, with no leak warning and no claim that the split leaks."""
    from deid.ingest import split_leak

    root = _sequence_tree(tmp_path / "raw")
    pre = PreprocessConfig(size=16)
    with pytest.warns(SplitLeakWarning):
        leaky = split_leak(ingest_dataset("ferg", root, tmp_path / "a", preprocess=pre, workers=1))
    assert leaky.leaks and "group_pattern" in leaky.message("ferg")
    per_frame = {"group_pattern": r"(?P<group>[^/]+)\.png$"}  # every frame its own group: look-alikes remain
    with warnings.catch_warnings():
        warnings.simplefilter("error", SplitLeakWarning)
        s = ingest_dataset("ferg", root, tmp_path / "b", preprocess=pre, workers=1, loader_options=per_frame)
    found = split_leak(s)
    assert s.groups == 48 and found is not None and found.test_images > 0 and not found.leaks
    assert "look-alikes from other groups" in found.message("ferg") and "group_pattern" not in found.message("ferg")
