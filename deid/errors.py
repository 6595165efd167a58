"""Named exceptions with messages a person can act on. Library code raises; only the CLI exits."""

from __future__ import annotations

from data_contracts import ContractError

__all__ = [
    "DeidError",
    "ContractError",
    "DatasetLayoutError",
    "ImageDecodeError",
    "NotFittedError",
    "MethodError",
    "EvaluationError",
    "ConfigError",
]


class DeidError(Exception):
    """Base class of deid's own errors."""


class DatasetLayoutError(DeidError, ValueError):
    """A dataset directory is missing, empty, or not in the layout its loader reads."""


class ImageDecodeError(DeidError, ValueError):
    """A file could not be decoded as an image (zero bytes, truncated, not an image)."""


class NotFittedError(DeidError, RuntimeError):
    """``transform`` or ``save`` was called before ``fit``."""


class MethodError(DeidError, ValueError):
    """A de-identification method got bad input or produced bad output."""


class EvaluationError(DeidError, ValueError):
    """The audit cannot compute an honest metric from what it was given."""


class ConfigError(DeidError, ValueError):
    """A configuration value is invalid; the message names the field and the allowed values."""
