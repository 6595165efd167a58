"""Clustering at scale: Dask k-means, batched features, k-Same clusters, cluster-centre targets."""

from deid.clustering.ksame import cluster_means, ksame_clusters, max_full_clusters  # noqa: F401

__all__ = ["cluster_means", "ksame_clusters", "max_full_clusters"]
