"""Dask k-means against scikit-learn on the same data; Parquet streaming; bad input; centre targets."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs

from deid.clustering import DaskKMeans, centre_targets, dask_client, shift_towards, write_feature_table
from deid.errors import ConfigError, MethodError


@pytest.fixture(scope="module")
def blobs():
    X, _ = make_blobs(6000, n_features=12, centers=8, cluster_std=1.5, center_box=(-20, 20), random_state=3)
    return X.astype(np.float32)


@pytest.fixture(scope="module")
def client():
    with dask_client(n_workers=1, threads_per_worker=2, processes=False) as c:
        yield c


def test_same_init_same_result_as_sklearn(blobs):
    init = blobs[np.random.default_rng(0).choice(len(blobs), 8, replace=False)].astype(np.float64)
    ours = DaskKMeans(8, init=init, partition_rows=1000).fit(blobs, "sync")
    ref = KMeans(8, init=init, n_init=1, algorithm="lloyd").fit(blobs)
    assert ours.n_iter_ == ref.n_iter_
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-4)
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, atol=1e-3)
    assert (ours.labels_ == ref.labels_).mean() > 0.999


def test_kmeanspp_inertia_within_one_percent_of_sklearn(blobs, client):
    ours = DaskKMeans(8, random_state=1, partition_rows=1500).fit(blobs, client)
    ref = KMeans(8, random_state=1).fit(blobs)
    assert abs(ours.inertia_ - ref.inertia_) / ref.inertia_ < 0.01
    noise = np.random.default_rng(0).standard_normal((5000, 16)).astype(np.float32)  # no structure at all
    a = DaskKMeans(20, random_state=0, partition_rows=1500).fit(noise, client).inertia_
    assert abs(a - KMeans(20, random_state=0).fit(noise).inertia_) / a < 0.01
    # the reported inertia is the true one for the returned centres
    d = ((blobs[:, None, :] - ours.cluster_centers_[None]) ** 2).sum(-1)
    assert ours.inertia_ == pytest.approx(float(d.min(1).sum()), rel=1e-4)
    np.testing.assert_array_equal(ours.labels_, d.argmin(1))


def test_deterministic_under_seed_and_same_on_dask_and_parquet(blobs, client, tmp_path):
    a = DaskKMeans(8, random_state=5, partition_rows=1000).fit(blobs, client)
    b = DaskKMeans(8, random_state=5, partition_rows=1000).fit(blobs, client)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    s = DaskKMeans(8, random_state=5, partition_rows=1000).fit(blobs, "sync")
    np.testing.assert_array_equal(a.cluster_centers_, s.cluster_centers_)
    table = write_feature_table(tmp_path / "f.parquet", blobs, row_group_rows=1000)
    p = DaskKMeans(8, random_state=5).fit(table, client)
    np.testing.assert_array_equal(p.cluster_centers_, a.cluster_centers_)
    assert p.inertia_ == a.inertia_ and p.n_iter_ == a.n_iter_


def test_bad_input_says_what_to_change(blobs):
    with pytest.raises(ConfigError, match="lower n_clusters to at most 5"):
        DaskKMeans(6).fit(blobs[:5], "sync")
    bad = blobs[:100].copy()
    bad[7, 3] = np.nan
    with pytest.raises(MethodError, match="NaN"):
        DaskKMeans(3).fit(bad, "sync")
    with pytest.raises(ConfigError, match="init centres must have shape"):
        DaskKMeans(3, init=np.zeros((2, 12))).fit(blobs, "sync")
    with pytest.raises(MethodError, match="NaN"):
        centre_targets(bad, 3)


def test_centre_targets_are_the_centres_of_each_rows_cluster(blobs):
    t = centre_targets(blobs, 8, random_state=0)
    assert t.centres.shape == (8, 12) and t.targets.shape == blobs.shape
    np.testing.assert_array_equal(t.targets, t.centres[t.labels])
    nearest = ((blobs[:, None, :] - t.centres[None]) ** 2).sum(-1).argmin(1)
    np.testing.assert_array_equal(t.labels, nearest)
    z = shift_towards(blobs, t.targets, 0.25)
    np.testing.assert_allclose(z, 0.75 * blobs + 0.25 * t.targets, rtol=1e-6)
    with pytest.raises(ConfigError, match="alpha"):
        shift_towards(blobs, t.targets, 1.5)
