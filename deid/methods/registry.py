"""Methods by name: ``register_method`` refuses duplicates; ``get_method`` builds one from config."""

from __future__ import annotations

from typing import Any

from deid.errors import ConfigError

__all__ = ["register_method", "get_method", "method_class", "available_methods"]

_METHODS: dict[str, type] = {}


def register_method(name: str):
    """Class decorator: register a :class:`~deid.methods.base.DeidMethod` under ``name``."""

    def deco(cls: type) -> type:
        if name in _METHODS:
            raise ValueError(f"a method named '{name}' is already registered ({_METHODS[name].__qualname__})")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return deco


def _ensure_loaded() -> None:
    import deid.methods  # noqa: F401  (importing the package registers every built-in method)


def available_methods() -> list[str]:
    _ensure_loaded()
    return sorted(_METHODS)


def method_class(name: str) -> type:
    _ensure_loaded()
    try:
        return _METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method '{name}'; registered methods: {sorted(_METHODS)}") from None


def get_method(name: str, **params: Any):
    """Build method ``name`` with ``params``; an unknown parameter names the allowed ones."""
    cls = method_class(name)
    allowed = cls.param_names()
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(f"method '{name}' has no parameter(s) {unknown}; allowed: {allowed}")
    return cls(**params)
