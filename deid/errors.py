"""Named exceptions with messages a person can act on. Library code raises; only the CLI exits."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

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
    "did_you_mean",
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


def did_you_mean(word: str, allowed: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` with the closest of ``allowed`` to ``word`` (difflib), or ``""`` when none is close."""
    close = difflib.get_close_matches(str(word), [str(a) for a in allowed], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
