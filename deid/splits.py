"""Deterministic train/val/test splits, stratified by (identity, utility label) or identity-disjoint.

Items may carry a *group* (a recording, a session, a source file): frames of one group are near
copies of each other, so a group never straddles splits. :func:`near_duplicates_across_splits`
checks the result: it counts train/val–test pairs of one identity whose perceptual hashes are
within a few bits, the copies a group column would have kept on one side.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["SplitConfig", "assign_splits", "image_hash64", "near_duplicates_across_splits", "NearDuplicates",
           "SplitLeakWarning", "NEAR_DUPLICATE_BITS"]

# Two images whose 63-bit perceptual hashes differ in at most this many bits are near-duplicates.
# A hash has 31 bits set (63 coefficients against their median) unless coefficients tie, so
# distances are even: 2 means one set bit moved.
NEAR_DUPLICATE_BITS = 2


class SplitLeakWarning(UserWarning):
    """Near-duplicates of one identity sit on both sides of the train/test split."""


class SplitConfig(BaseModel):
    """Split fractions and seed. ``group_by="auto"`` keeps every group a loader (or the
    ``group_pattern`` loader option) gives in one split; ``"none"`` ignores groups."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    val: float = Field(0.1, ge=0.0, lt=1.0)
    test: float = Field(0.2, ge=0.0, lt=1.0)
    seed: int = 0
    identity_disjoint: bool = False
    group_by: Literal["auto", "none"] = "auto"

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


def _cut(sizes: Sequence[int], cfg: SplitConfig) -> list[str]:
    """A split per unit (in the given order) for units of ``sizes`` items: test and val are
    filled up to their share of the items, each unit whole; as :func:`_allocate`, at least one
    unit is test when there are two or more, and at least one stays train."""
    total = sum(sizes)
    want_test, want_val = total * cfg.test, total * cfg.val
    got_test = got_val = 0
    out = []
    for s in sizes:
        if got_test + s / 2 <= want_test:
            out.append("test")
            got_test += s
        elif got_val + s / 2 <= want_val:
            out.append("val")
            got_val += s
        else:
            out.append("train")
    if len(out) >= 2 and cfg.test > 0 and "test" not in out:
        out[0] = "test"
    if "train" not in out:
        vals = [i for i, s in enumerate(out) if s == "val"]
        out[vals[-1] if vals else len(out) - 1] = "train"
    return out


def _majority(values: list) -> object:
    counts = Counter(values)
    return min(counts, key=lambda v: (-counts[v], str(v)))


def _identity_components(identities: Sequence[str], units: dict[tuple, list[int]]) -> dict[str, str]:
    """Identity → the smallest identity it shares a group with, directly or through others."""
    parent = {i: i for i in identities}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for idx in units.values():
        roots = {find(identities[i]) for i in idx}
        if len(roots) > 1:
            low = min(roots)
            for r in roots:
                parent[r] = low
    return {i: find(i) for i in parent}


def _grouped(keys: Sequence[str], identities: Sequence[str], labels: Sequence[str | None],
             groups: Sequence[str | None], cfg: SplitConfig) -> list[str]:
    units: dict[tuple, list[int]] = defaultdict(list)  # a group, or an ungrouped item on its own
    for i, (k, g) in enumerate(zip(keys, groups)):
        units[("g", g) if g is not None else ("k", k)].append(i)
    out = ["train"] * len(keys)
    if cfg.identity_disjoint:  # identities that share a group go to one split together
        comp = _identity_components(identities, units)
        roots = sorted(set(comp.values()))
        order = np.random.default_rng(_seed_for(cfg.seed, "identities")).permutation(len(roots))
        roots = [roots[i] for i in order]
        n_val, n_test = _allocate(len(roots), cfg)
        which = {r: "test" if i < n_test else "val" if i < n_test + n_val else "train" for i, r in enumerate(roots)}
        return [which[comp[i]] for i in identities]
    # Stratum of a unit: its (identity, label) cell when that cell has two units or more,
    # otherwise the pool of its identity's remaining units.
    cell = {u: (_majority([identities[i] for i in idx]), _majority([labels[i] for i in idx]))
            for u, idx in units.items()}
    per_cell = Counter(cell.values())
    strata: dict[tuple, list[tuple]] = defaultdict(list)
    for u, (ident, lab) in cell.items():
        strata[(ident, lab, "cell") if per_cell[(ident, lab)] >= 2 else (ident, None, "pool")].append(u)
    for skey, us in strata.items():
        us = sorted(us)
        perm = np.random.default_rng(_seed_for(cfg.seed, ("groups", *skey))).permutation(len(us))
        ordered = [us[p] for p in perm]
        for u, s in zip(ordered, _cut([len(units[u]) for u in ordered], cfg)):
            for i in units[u]:
                out[i] = s
    return out


def assign_splits(keys: Sequence[str], identities: Sequence[str], labels: Sequence[str | None],
                  cfg: SplitConfig, groups: Sequence[str | None] | None = None) -> list[str]:
    """One split name per item, independent of input order.

    ``keys`` are stable per-item strings (relative paths). Items are grouped by (identity, label)
    (or by identity when ``identity_disjoint``), ordered by key, shuffled by a seed derived from
    ``cfg.seed`` and the group, and cut by the configured fractions. A group's assignment does not
    change when other groups are added.

    With ``groups`` (one name or ``None`` per item) and ``cfg.group_by == "auto"``, the items of a
    group go to one split: groups (and ungrouped items, each on its own) are stratified by their
    (identity, label) where that cell holds two groups or more, else by identity alone, and each
    stratum's shuffled groups fill test and val up to their share of its items. Identity-disjoint
    splits keep identities that share a group together. Without any group the result is the same
    as without ``groups``.
    """
    n = len(keys)
    if not (len(identities) == len(labels) == n):
        raise ValueError("keys, identities and labels must have one entry per item")
    if groups is not None and len(groups) != n:
        raise ValueError("groups must have one entry per item")
    if groups is not None and cfg.group_by == "auto" and any(g is not None for g in groups):
        return _grouped(keys, identities, labels, groups, cfg)
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
    strata: dict[tuple, list[int]] = defaultdict(list)
    for i, (ident, lab) in enumerate(zip(identities, labels)):
        strata[(ident, lab)].append(i)
    for gkey, idx in strata.items():
        idx = sorted(idx, key=lambda i: keys[i])
        perm = np.random.default_rng(_seed_for(cfg.seed, gkey)).permutation(len(idx))
        n_val, n_test = _allocate(len(idx), cfg)
        for rank, p in enumerate(perm):
            i = idx[p]
            out[i] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return out


def image_hash64(img: np.ndarray) -> int:
    """The perceptual hash (:func:`deid.release_policy.perceptual_hash`) of a ``uint8`` ``(H, W)``
    or ``(H, W, C)`` image, packed into an int below ``2**63``."""
    from deid.release_policy import perceptual_hash

    x = np.asarray(img, dtype=np.float32) / 255.0
    if x.ndim == 3:
        x = x.mean(axis=2)
    return int.from_bytes(np.packbits(perceptual_hash(x), bitorder="little").tobytes(), "little")


@dataclass(frozen=True)
class NearDuplicates:
    """Train/val–test pairs of one identity within ``max_distance`` bits, and the test items in
    them. ``complete`` is false when the work cap stopped the search (the counts are then lower
    bounds)."""

    pairs: int
    test_items: int
    complete: bool = True


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    b = x[..., None].view(np.uint8)
    return np.unpackbits(b, axis=-1).sum(axis=-1)


def near_duplicates_across_splits(hashes: Sequence[int], splits: Sequence[str], identities: Sequence[str], *,
                                  max_distance: int = NEAR_DUPLICATE_BITS,
                                  max_comparisons: int = 20_000_000) -> NearDuplicates:
    """Count pairs (a train or val item, a test item) of one identity whose 64-bit hashes differ
    in at most ``max_distance`` bits.

    Two hashes that close agree exactly on at least one of ``max_distance + 1`` disjoint bit
    blocks, so only items sharing (identity, block value) are compared: about linear in the
    number of items unless many images are near copies. At most ``max_comparisons`` hash pairs
    are compared; past that ``complete`` is false.
    """
    n = len(hashes)
    if not (len(splits) == len(identities) == n):
        raise ValueError("hashes, splits and identities must have one entry per item")
    if not 0 <= max_distance <= 16:
        raise ValueError(f"max_distance must be between 0 and 16 bits (got {max_distance})")
    if n == 0:
        return NearDuplicates(0, 0)
    h = np.asarray([int(x) & (2**64 - 1) for x in hashes], dtype=np.uint64)
    is_test = np.asarray([s == "test" for s in splits])
    _, ident = np.unique(np.asarray(identities, dtype=object).astype(str), return_inverse=True)
    n_blocks = max_distance + 1
    width = -(-64 // n_blocks)
    mask = np.uint64((1 << width) - 1) if width < 64 else np.uint64(2**64 - 1)
    blocks = [(h >> np.uint64(b * width)) & mask for b in range(n_blocks)]
    flagged = np.zeros(n, dtype=bool)
    pairs, budget, complete = 0, max_comparisons, True
    for b, block in enumerate(blocks):
        order = np.lexsort((block, ident))
        key_i, key_b = ident[order], block[order]
        new = np.ones(n, dtype=bool)
        new[1:] = (key_i[1:] != key_i[:-1]) | (key_b[1:] != key_b[:-1])
        starts = np.flatnonzero(new)
        ends = np.append(starts[1:], n)
        n_test = np.add.reduceat(is_test[order].astype(np.int64), starts)
        sizes = ends - starts
        for s, e in zip(starts[(n_test > 0) & (n_test < sizes)], ends[(n_test > 0) & (n_test < sizes)]):
            run = order[s:e]
            a, t = run[~is_test[run]], run[is_test[run]]
            if len(a) * len(t) > budget:
                complete = False
                continue
            budget -= len(a) * len(t)
            close = _popcount(h[a][:, None] ^ h[t][None, :]) <= max_distance
            for c in range(b):  # a pair that also agrees on an earlier block was counted there
                close &= blocks[c][a][:, None] != blocks[c][t][None, :]
            pairs += int(close.sum())
            flagged[t[close.any(axis=0)]] = True
    return NearDuplicates(pairs, int(flagged.sum()), complete)
