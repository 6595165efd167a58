"""Methods by name: ``register_method`` refuses duplicates; ``get_method`` builds one from config.

Names are lower case with hyphens (``ksame-net``). Every built-in method's name is known from
:data:`METHOD_MODULES` without importing its module; the module is imported the first time one of its
methods is asked for, and imports torch only inside its functions, so listing the methods and
validating a config stay fast. Former names (:data:`ALIASES`) still resolve, with a note in the log.
The registering, the lazy import and the errors are the one :class:`~deid.registry.Registry`'s.
"""

from __future__ import annotations

from typing import Any

from deid.errors import ConfigError, did_you_mean
from deid.registry import NAME_STYLE, Registry

__all__ = ["register_method", "get_method", "method_class", "available_methods", "canonical_name", "METHOD_MODULES",
           "ALIASES", "NAME_STYLE"]

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

_METHODS: Registry[type] = Registry(
    "method", {name: f"deid.methods.{module}" for module, names in METHOD_MODULES.items() for name in names},
    table="METHOD_MODULES", aliases=ALIASES)
_noted = _METHODS.noted  # the former names already noted in the log


def register_method(name: str):
    """Class decorator: register a :class:`~deid.methods.base.DeidMethod` under ``name``."""
    return _METHODS.decorator(name)


def canonical_name(name: str) -> str:
    """``name``, or the current name of a former one (noted once in the log)."""
    return _METHODS.canonical(name)


def available_methods() -> list[str]:
    """Every method's current name, sorted; imports no method module."""
    return _METHODS.names()


def method_class(name: str) -> type:
    """The class registered under ``name`` (or under the current name of a former one), its module imported."""
    return _METHODS.get(name)


def get_method(name: str, **params: Any):
    """Build method ``name`` with ``params``; an unknown parameter names the allowed ones."""
    cls = method_class(name)
    allowed = cls.param_names()
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(f"method '{cls.name}' has no parameter(s) {unknown}"
                          f"{did_you_mean(unknown[0], allowed)}; allowed: {allowed}")
    return cls(**params)
