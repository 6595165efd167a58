"""Linkage (FaDeNet's identification protocol, Meden, Peer, Štruc): original images as gallery,
de-identified images as probes, ranked by feature distance; Rank-1/Rank-5 and the CMC curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deid.errors import EvaluationError

__all__ = ["LinkageResult", "cmc_curve", "linkage"]

_CHUNK_VALUES = 4_000_000  # probe × gallery distances held at once (32 MB)


@dataclass
class LinkageResult:
    rank1: float
    rank1_std: float
    rank5: float
    rank5_std: float
    cmc: np.ndarray  # mean identification rate at rank 1..n_identities
    cmc_std: np.ndarray
    chance_rank1: float


def _normalise(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def cmc_curve(gallery: np.ndarray, gallery_ids, probes: np.ndarray, probe_ids) -> np.ndarray:
    """Share of probes whose true identity is among the ``r`` nearest gallery identities, r = 1..K.

    An identity's distance to a probe is its nearest gallery image's cosine distance. Probes are
    compared with the gallery a chunk at a time, so memory grows with probes × identities, not
    probes × gallery images.
    """
    gallery_ids, probe_ids = np.asarray(gallery_ids), np.asarray(probe_ids)
    ids = np.unique(gallery_ids)
    g = _normalise(gallery)
    members = [np.flatnonzero(gallery_ids == i) for i in ids]
    per_id = np.empty((len(probes), len(ids)), dtype=np.float64)  # (P, K): probes × identities
    step = max(1, _CHUNK_VALUES // max(1, len(g)))  # a chunk of probes against the whole gallery at a time
    for s in range(0, len(probes), step):
        d = 1.0 - _normalise(probes[s:s + step]) @ g.T
        per_id[s:s + step] = np.stack([d[:, m].min(1) for m in members], axis=1)
    true_col = np.searchsorted(ids, probe_ids)
    valid = (true_col < len(ids)) & (ids[np.minimum(true_col, len(ids) - 1)] == probe_ids)
    if not valid.all():
        raise EvaluationError("linkage: some probe identities have no gallery image")
    true_d = per_id[np.arange(len(probe_ids)), true_col]
    rank = (per_id < true_d[:, None]).sum(1)  # 0-based; ties count in the probe's favour
    return np.array([(rank < r).mean() for r in range(1, len(ids) + 1)])


def linkage(orig_features: np.ndarray, anon_features: np.ndarray, identity, *, repeats: int = 5,
            seed: int = 0) -> LinkageResult:
    """Rows are the same images (original and de-identified). Each repeat splits the images at
    random into a gallery half (originals) and a probe half (their de-identified versions of the
    other images), so no probe is matched against its own source."""
    identity = np.asarray(identity)
    if len(orig_features) != len(anon_features) or len(identity) != len(orig_features):
        raise EvaluationError("linkage: original and de-identified features must be row-aligned with identities")
    rng = np.random.default_rng(seed)
    curves = []
    for _ in range(repeats):
        gal = np.zeros(len(identity), bool)
        for i in np.unique(identity):  # half of each identity's images in the gallery
            idx = np.flatnonzero(identity == i)
            rng.shuffle(idx)
            gal[idx[: max(1, len(idx) // 2)]] = True
        probe = ~gal
        probe &= np.isin(identity, identity[gal])
        if not probe.any():
            raise EvaluationError("linkage: too few images per identity to form gallery and probes")
        curves.append(cmc_curve(orig_features[gal], identity[gal], anon_features[probe], identity[probe]))
    c = np.stack(curves)
    mean, std = c.mean(0), c.std(0)
    r5 = min(4, c.shape[1] - 1)
    return LinkageResult(rank1=float(mean[0]), rank1_std=float(std[0]), rank5=float(mean[r5]),
                         rank5_std=float(std[r5]), cmc=mean, cmc_std=std,
                         chance_rank1=1.0 / len(np.unique(identity)))
