"""k-Same clusters over identities (Newton, Sweeney, Malin 2005), guaranteed at identity level.

Greedy, as in the paper: take a seed image, find the nearest images of k − 1 *other* identities,
make them one cluster, remove them, repeat. Two changes make the guarantee hold on data with many
images per person (FERG: 6 characters, thousands of images each):

- every cluster holds exactly one image of each of k distinct identities (equal shares), and the
  number of such clusters is the largest possible, ``G = max g : Σ_i min(n_i, g) ≥ k·g``; the seed
  comes from the identity with the most images left and, when needed, the identities that must be
  used to keep ``G`` reachable are forced in (so the greedy never strands a majority identity);
- the surplus (``N − k·G`` images, only when identity counts are unequal or ``k`` does not
  divide them) joins the nearest cluster that does not hold its identity yet; when every cluster
  holds it, surplus images are spread one per cluster per round (water-filling), so every
  cluster keeps ≥ k distinct identities and the worst attribution probability is as low as the
  counts allow. :func:`deid.clustering.anonymity.group_report` reports it.

Nearest neighbours come from an inverted-file index (each identity's images bucketed into
≈√(n_i/4) k-means cells; a query probes the nearest few live cells of each identity), so the cost
grows near-linearly with N, not with all pairs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deid.errors import ConfigError, MethodError

__all__ = ["ksame_clusters", "max_full_clusters", "cluster_means"]

_ALL_IDENTITIES_BELOW = 64  # query every identity's index per seed up to this many identities


def max_full_clusters(counts: np.ndarray, k: int) -> int:
    """Largest ``g`` with ``Σ_i min(n_i, g) ≥ k·g``: clusters of k distinct identities that fit."""
    counts = np.asarray(counts, dtype=np.int64)
    lo, hi = 0, int(counts.sum()) // k
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if np.minimum(counts, mid).sum() >= k * mid:
            lo = mid
        else:
            hi = mid - 1
    return lo


class _CellIndex:
    """Remaining images, bucketed per identity into k-means cells (an inverted-file index).

    A query ranks cell centroids (one small product), probes each identity's ``n_probe``
    nearest cells that still hold live images, and measures exact distances to their members.
    Approximate but near-linear: every query touches ~``n_probe·√n_i`` images per identity.
    """

    def __init__(self, F: np.ndarray, inv: np.ndarray, m: int, n_probe: int, rng: np.random.Generator) -> None:
        from sklearn.cluster import KMeans

        self.F, self.inv, self.n_probe, self.n_ids = F, inv, n_probe, m
        self.sq = np.einsum("ij,ij->i", F, F)
        cell_of = np.empty(len(F), dtype=np.int64)
        centres, owner, offset = [], [], 0
        for i in range(m):
            rows = np.flatnonzero(inv == i)
            n_cells = max(1, int(round(np.sqrt(len(rows) / 4))))
            if n_cells == 1:
                lab, cen = np.zeros(len(rows), dtype=np.int64), F[rows].mean(axis=0, keepdims=True)
            else:
                km = KMeans(n_cells, n_init=1, max_iter=10, random_state=int(rng.integers(2**31))).fit(F[rows])
                lab, cen = km.labels_, km.cluster_centers_
            cell_of[rows] = lab + offset
            centres.append(cen)
            owner.append(np.full(len(cen), i))
            offset += len(cen)
        self.centre = np.concatenate(centres).astype(F.dtype)
        self.owner = np.concatenate(owner)
        self.cell_of = cell_of
        self.members = np.argsort(cell_of, kind="stable")
        self.start = np.searchsorted(cell_of[self.members], np.arange(offset + 1))
        self.size = np.diff(self.start)
        self.cell_alive = self.size.copy()
        self.alive = np.ones(len(F), dtype=bool)

    def remove(self, rows: list[int]) -> None:
        self.alive[rows] = False
        np.subtract.at(self.cell_alive, self.cell_of[rows], 1)

    def nearest(self, q: np.ndarray, identities: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each identity in ``identities`` that has images left: (identity, nearest row, distance²)."""
        wanted = np.zeros(self.n_ids, dtype=bool)
        wanted[identities] = True
        cells = np.flatnonzero(wanted[self.owner] & (self.cell_alive > 0))
        d = ((self.centre[cells] - q) ** 2).sum(axis=1)
        order = np.lexsort((d, self.owner[cells]))
        own = self.owner[cells][order]
        first = np.searchsorted(own, own, side="left")
        probe = cells[order[np.arange(len(order)) - first < self.n_probe]]  # grouped by identity
        starts, lens = self.start[probe], self.size[probe]
        pos = np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(int(lens.sum()))
        cand = self.members[pos]
        cand = cand[self.alive[cand]]
        dist = self.sq[cand] - 2.0 * (self.F[cand] @ q)
        ids = self.inv[cand]
        head = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        low = np.minimum.reduceat(dist, head)
        seg = np.repeat(np.arange(len(head)), np.diff(np.r_[head, len(ids)]))
        hit = np.flatnonzero(dist == low[seg])
        hit = hit[np.r_[True, seg[hit][1:] != seg[hit][:-1]]]
        return ids[hit], cand[hit], dist[hit]


def _check(features: Any, identity: Any, k: Any) -> tuple[np.ndarray, np.ndarray, int]:
    F = np.asarray(features)
    if F.ndim != 2 or len(F) == 0:
        raise MethodError(f"k-Same: features must be a non-empty (N, D) array, got shape {F.shape}")
    F = np.ascontiguousarray(F, dtype=np.float64 if F.dtype == np.float64 else np.float32)
    bad = ~np.isfinite(F).all(axis=1)
    if bad.any():
        raise MethodError(f"k-Same: features of {int(bad.sum())} rows contain NaN or infinite values "
                          f"(first row {int(np.flatnonzero(bad)[0])}); drop or repair those images first")
    ident = np.asarray(identity)
    if ident.shape != (len(F),):
        raise MethodError(f"k-Same: identity must have one entry per row ({len(F)}), got shape {ident.shape}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k-Same: k must be a positive integer, got {k!r}")
    _, inv = np.unique(ident, return_inverse=True)
    inv = inv.reshape(-1).astype(np.int64)
    m = int(inv.max()) + 1
    if k > m:
        raise ConfigError(f"k-Same: k = {k} but the set holds only {m} distinct identities; "
                          f"lower k to at most {m} or add images of more identities")
    return F, inv, m


def ksame_clusters(features: Any, identity: Any, k: int, *, random_state: int = 0,
                   n_probe: int = 3) -> np.ndarray:
    """Cluster index per row ``(N,)``: every cluster holds images of at least k distinct identities.

    ``features`` ``(N, D)`` is the space in which "nearest" is measured (pixels, PCA or latent
    codes); ``identity`` ``(N,)`` the private labels. Clusters are numbered ``0..G-1``.
    """
    F, inv, m = _check(features, identity, k)
    k = int(k)
    n = len(F)
    rng = np.random.default_rng(random_state)
    counts = np.bincount(inv, minlength=m).astype(np.int64)
    G = max_full_clusters(counts, k)
    clusters = np.full(n, -1, dtype=np.int64)
    if k == 1:
        return rng.permutation(n).astype(np.int64)  # every image its own cluster: nothing to hide it among

    index = _CellIndex(F, inv, m, n_probe, rng)
    order = [rng.permutation(np.flatnonzero(inv == i)) for i in range(m)]
    nxt = np.zeros(m, dtype=np.int64)
    centroid = np.stack([F[inv == i].mean(axis=0) for i in range(m)])
    c = counts.copy()
    for g in range(G):
        g_rem = G - g
        a = int(np.argmax(c))
        while not index.alive[order[a][nxt[a]]]:
            nxt[a] += 1
        s = int(order[a][nxt[a]])
        q = F[s]
        large = c >= g_rem
        slack = int(np.minimum(c, g_rem).sum()) - k * g_rem
        must = max(0, int(large.sum()) - int(large[a]) - slack)
        alive = np.flatnonzero(c > 0)
        alive = alive[alive != a]
        if len(alive) > _ALL_IDENTITIES_BELOW:  # many identities: the nearest by centroid, plus the forced ones
            near = alive[np.argsort(((centroid[alive] - q) ** 2).sum(axis=1), kind="stable")[: 4 * k + 16]]
            alive = np.union1d(near, alive[large[alive]])
        ids, rows, dist = index.nearest(q, alive)
        by_dist = np.lexsort((ids, dist))
        is_large = large[ids[by_dist]]
        forced = np.zeros(len(by_dist), dtype=bool)
        forced[np.flatnonzero(is_large)[:must]] = True
        pick = np.concatenate([by_dist[forced], by_dist[~forced][: k - 1 - int(forced.sum())]])
        members = [s] + rows[pick].tolist()
        index.remove(members)
        c[a] -= 1
        c[ids[pick]] -= 1
        clusters[members] = g
    surplus = np.flatnonzero(clusters < 0)
    if len(surplus):
        _place_surplus(F, inv, clusters, surplus, G)
    return clusters


def _place_surplus(F: np.ndarray, inv: np.ndarray, clusters: np.ndarray, surplus: np.ndarray, G: int) -> None:
    """Each surplus image joins the nearest cluster among those holding the fewest of its identity."""
    done = clusters >= 0
    sizes = np.bincount(clusters[done], minlength=G).astype(np.float64)
    centre = np.zeros((G, F.shape[1]), dtype=np.float64)
    np.add.at(centre, clusters[done], F[done])
    centre = (centre / sizes[:, None]).astype(F.dtype)
    csq = np.einsum("ij,ij->i", centre, centre)
    for i in np.unique(inv[surplus]):
        todo = surplus[inv[surplus] == i]
        held = np.bincount(clusters[done & (inv == i)], minlength=G)
        while len(todo):
            free = np.flatnonzero(held == held.min())
            q = min(len(free), 8)
            idx = np.empty((len(todo), q), dtype=np.int64)
            dist = np.empty((len(todo), q), dtype=np.float64)
            for a in range(0, len(todo), 2048):  # chunked: a (chunk × free) block at a time
                d = csq[free][None, :] - 2.0 * (F[todo[a:a + 2048]] @ centre[free].T)
                j = np.argpartition(d, q - 1, axis=1)[:, :q] if q < len(free) else np.tile(np.arange(q), (len(d), 1))
                idx[a:a + 2048], dist[a:a + 2048] = j, np.take_along_axis(d, j, axis=1)
            taken_c = np.zeros(len(free), dtype=bool)
            taken_r = np.zeros(len(todo), dtype=bool)
            for flat in np.argsort(dist, axis=None, kind="stable"):  # greedy matching, closest pairs first
                r, j = divmod(int(flat), q)
                cj = idx[r, j]
                if taken_r[r] or taken_c[cj]:
                    continue
                taken_r[r] = taken_c[cj] = True
                clusters[todo[r]] = free[cj]
                held[free[cj]] += 1
            todo = todo[~taken_r]


def cluster_means(X: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """Each row replaced by its cluster's mean: ``X`` ``(N, ...)`` → same shape, same dtype.

    Rows of one cluster get bitwise-identical values (one mean, copied), as k-anonymity needs.
    """
    from scipy import sparse

    clusters = np.asarray(clusters, dtype=np.int64)
    flat = X.reshape(len(X), -1)
    n_c = int(clusters.max()) + 1
    sizes = np.bincount(clusters, minlength=n_c)
    onehot = sparse.csr_matrix((1.0 / sizes[clusters], (clusters, np.arange(len(X)))), shape=(n_c, len(X)))
    means = np.asarray(onehot @ flat.astype(np.float64, copy=False) if flat.dtype == np.float64
                       else onehot.astype(np.float32) @ flat)
    return means[clusters].astype(X.dtype, copy=False).reshape(X.shape)
