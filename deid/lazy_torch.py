"""torch on demand: method modules import it inside their functions, so that listing the methods and
validating a config (``deid methods``, ``deid validate``) never load it.

``tests/test_config.py`` checks that importing every method module leaves torch unloaded.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

__all__ = ["no_grad"]


def no_grad(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``@torch.no_grad()`` without importing torch until ``fn`` is called."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapper
