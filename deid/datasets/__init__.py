"""Dataset loaders for real on-disk layouts, and the built-in FERG-like generator."""

from deid.datasets.base import (  # noqa: F401
    Loader,
    Rejected,
    ScanResult,
    SourceItem,
    available_loaders,
    get_loader,
    register_loader,
)
from deid.datasets import celeba, ferg, folder, hf, jaffe, lfw, manifest, rafd  # noqa: F401,E402  (register loaders)

__all__ = ["Loader", "Rejected", "ScanResult", "SourceItem", "available_loaders", "get_loader", "register_loader"]
