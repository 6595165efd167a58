"""Clustering at scale: Dask k-means, batched features, k-Same clusters, cluster-centre targets."""

from deid.clustering.centres import CentreTargets, centre_targets, shift_towards  # noqa: F401
from deid.clustering.kmeans import DaskKMeans, FeatureTable, dask_client, write_feature_table  # noqa: F401
from deid.clustering.ksame import cluster_means, ksame_clusters, max_full_clusters  # noqa: F401

__all__ = ["CentreTargets", "centre_targets", "shift_towards", "DaskKMeans", "FeatureTable", "dask_client",
           "write_feature_table", "cluster_means", "ksame_clusters", "max_full_clusters"]
