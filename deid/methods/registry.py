"""Methods by name: ``register_method`` refuses duplicates; ``get_method`` builds one from config.

Names are lower case with hyphens (``ksame-net``). Every built-in method's name is known from
:data:`METHOD_MODULES` without importing its module; the module is imported the first time one of its
methods is asked for, and imports torch only inside its functions, so listing the methods and
validating a config stay fast. Former names (:data:`ALIASES`) still resolve, with a note in the log.
"""

from __future__ import annotations

import importlib
import logging
import re
from typing import Any

from deid.errors import ConfigError, did_you_mean

__all__ = ["register_method", "get_method", "method_class", "available_methods", "canonical_name", "METHOD_MODULES",
           "ALIASES", "NAME_STYLE"]

_METHODS: dict[str, type] = {}

#: The built-in method modules (``deid.methods.<module>``) and the names each registers.
#: A new method module: one line here.
METHOD_MODULES: dict[str, tuple[str, ...]] = {
    "baselines": ("none", "blur", "pixelate", "blackout"),
    "ksame": ("ksame-pixel", "ksame-eigen", "ksame-select"),
    "latent_shift": ("latent-shift",),
    "ksame_net": ("ksame-net",),
    "fadenet": ("fadenet",),
    "mi_adversarial": ("mi-adversarial",),
    "substitution": ("substitution",),
    "proxy_mix": ("proxy-mix",),
    "proxy_morph": ("proxy-morph",),
}

#: Former names, still accepted in configs, by :func:`get_method` and from stored runs and saved models.
ALIASES: dict[str, str] = {"latent_shift": "latent-shift", "ksame_net": "ksame-net"}

#: the one style of a method's name
NAME_STYLE = r"[a-z0-9]+(-[a-z0-9]+)*"

_log = logging.getLogger(__name__)
_noted: set[str] = set()


def _declared_module(name: str) -> str | None:
    for module, names in METHOD_MODULES.items():
        if name in names:
            return f"deid.methods.{module}"
    return None


def register_method(name: str):
    """Class decorator: register a :class:`~deid.methods.base.DeidMethod` under ``name``."""
    if not re.fullmatch(NAME_STYLE, name):
        raise ValueError(f"method name '{name}' must be lower case words joined by hyphens, e.g. 'ksame-net'")

    def deco(cls: type) -> type:
        declared = _declared_module(name)
        if name in _METHODS or name in ALIASES or (declared is not None and cls.__module__ != declared):
            owner = _METHODS[name].__qualname__ if name in _METHODS else declared or f"an alias of '{ALIASES[name]}'"
            raise ValueError(f"a method named '{name}' is already registered ({owner})")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return deco


def canonical_name(name: str) -> str:
    """``name``, or the current name of a former one (noted once in the log)."""
    new = ALIASES.get(name)
    if new is None:
        return name
    if name not in _noted:
        _noted.add(name)
        _log.warning("method name '%s' is deprecated; use '%s'", name, new)
    return new


def available_methods() -> list[str]:
    """Every method's current name, sorted; imports no method module."""
    return sorted({n for names in METHOD_MODULES.values() for n in names} | set(_METHODS))


def method_class(name: str) -> type:
    """The class registered under ``name`` (or under the current name of a former one), its module imported."""
    name = canonical_name(name)
    if name not in _METHODS and (module := _declared_module(name)) is not None:
        importlib.import_module(module)
        if name not in _METHODS:
            raise LookupError(f"{module} does not register the method '{name}' that METHOD_MODULES lists")
    try:
        return _METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method '{name}'{did_you_mean(name, available_methods())}; "
                          f"registered methods: {available_methods()}") from None


def get_method(name: str, **params: Any):
    """Build method ``name`` with ``params``; an unknown parameter names the allowed ones."""
    cls = method_class(name)
    allowed = cls.param_names()
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(f"method '{cls.name}' has no parameter(s) {unknown}"
                          f"{did_you_mean(unknown[0], allowed)}; allowed: {allowed}")
    return cls(**params)
