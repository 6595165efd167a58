"""Deterministic train/val/test splits, stratified by (identity, utility label) or identity-disjoint."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["SplitConfig", "assign_splits"]


class SplitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    val: float = Field(0.1, ge=0.0, lt=1.0)
    test: float = Field(0.2, ge=0.0, lt=1.0)
    seed: int = 0
    identity_disjoint: bool = False

    @model_validator(mode="after")
    def _fractions(self) -> "SplitConfig":
        if self.val + self.test >= 1.0:
            raise ValueError(f"val + test must be below 1 (got {self.val} + {self.test})")
        return self


def _seed_for(seed: int, key: object) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}|{key!r}".encode()).digest()[:8], "little")


def _allocate(n: int, cfg: SplitConfig) -> tuple[int, int]:
    n_test = int(round(n * cfg.test))
    n_val = int(round(n * cfg.val))
    if n >= 2 and cfg.test > 0 and n_test == 0:
        n_test = 1
    if n - n_test - n_val < 1:  # keep at least one training example per group
        n_val = max(0, n - n_test - 1)
    return n_val, n_test


def assign_splits(keys: Sequence[str], identities: Sequence[str], labels: Sequence[str | None],
                  cfg: SplitConfig) -> list[str]:
    """One split name per item, independent of input order.

    ``keys`` are stable per-item strings (relative paths). Items are grouped by (identity, label)
    (or by identity when ``identity_disjoint``), ordered by key, shuffled by a seed derived from
    ``cfg.seed`` and the group, and cut by the configured fractions. A group's assignment does not
    change when other groups are added.
    """
    n = len(keys)
    if not (len(identities) == len(labels) == n):
        raise ValueError("keys, identities and labels must have one entry per item")
    out = ["train"] * n
    if cfg.identity_disjoint:
        ids = sorted(set(identities))
        order = np.random.default_rng(_seed_for(cfg.seed, "identities")).permutation(len(ids))
        ids = [ids[i] for i in order]
        n_val, n_test = _allocate(len(ids), cfg)
        which = {}
        for i, ident in enumerate(ids):
            which[ident] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
        return [which[i] for i in identities]
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, (ident, lab) in enumerate(zip(identities, labels)):
        groups[(ident, lab)].append(i)
    for gkey, idx in groups.items():
        idx = sorted(idx, key=lambda i: keys[i])
        perm = np.random.default_rng(_seed_for(cfg.seed, gkey)).permutation(len(idx))
        n_val, n_test = _allocate(len(idx), cfg)
        for rank, p in enumerate(perm):
            i = idx[p]
            out[i] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return out
