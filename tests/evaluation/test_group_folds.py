"""The audit's pooled folds keep a group (frames of one recording) on one side, as the split does."""

from __future__ import annotations

import numpy as np
import pytest

from deid.evaluation.attackers import AttackerConfig
from deid.evaluation.audit import _pooled_attack, audit_folds


def _copies(n_groups: int = 60, copies: int = 3, classes: int = 4, seed: int = 0):
    """Each group one random image saved ``copies`` times with ±2 grey levels of noise, and a *random*
    label per group: nothing in an image says its label, only its copies do."""
    rng = np.random.default_rng(seed)
    base = rng.random((n_groups, 1, 12, 12), dtype=np.float32)
    X = np.repeat(base, copies, axis=0) + rng.uniform(-2 / 255, 2 / 255, (n_groups * copies, 1, 12, 12)).astype(np.float32)
    y = np.repeat(np.arange(n_groups) % classes, copies).astype(str)
    rng.shuffle(y.reshape(n_groups, copies)[:, 0])  # labels independent of the images
    y = np.repeat(y.reshape(n_groups, copies)[:, 0], copies)
    groups = np.repeat(np.array([f"seq{i}" for i in range(n_groups)], dtype=object), copies)
    return np.clip(X, 0, 1), y, groups


def test_no_group_straddles_a_fold():
    X, y, groups = _copies()
    groups = groups.copy()
    groups[:6] = None  # images in no group are their own group
    for tr, te in audit_folds(y, 3, seed=0, groups=groups):
        named = {g for g in groups[tr] if g is not None}
        assert named.isdisjoint({g for g in groups[te] if g is not None})
    assert sum(len(te) for _, te in audit_folds(y, 3, 0, groups)) == len(y)


@pytest.mark.reliability(section='3. Gates a run cannot loosen', case='audit.folds with split groups (frames of one sequence)',
                         before='StratifiedKFold ignored the groups: random labels read at 92 % through near-copies, the audit called itself sound',
                         after='StratifiedGroupKFold: a group stays in one fold; the same labels read at chance')
def test_group_folds_stop_near_copies_from_teaching_noise():
    X, y, groups = _copies()
    cfg = AttackerConfig(attackers=("knn-pixels",))
    leaky = _pooled_attack(X, y, "utility", 3, cfg, "test", 0)  # the folds as they were
    kept = _pooled_attack(X, y, "utility", 3, cfg, "test", 0, groups)
    assert leaky.accuracy["knn-pixels"] > 0.9  # the near copy in the training fold answers
    assert kept.accuracy["knn-pixels"] < 0.45  # 4 classes: chance 0.25
