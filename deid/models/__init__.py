"""Neural networks shared by methods and the audit."""

from deid.models.classifier import CNNClassifier, SmallCNN, seed_everything  # noqa: F401

__all__ = ["CNNClassifier", "SmallCNN", "seed_everything"]
