"""Attackers by name: ``register_attacker`` refuses duplicates; ``get_attacker`` builds one from config."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from deid.errors import ConfigError

if TYPE_CHECKING:
    from deid.evaluation.attackers import AttackerConfig

__all__ = ["Attacker", "register_attacker", "available_attackers", "attacker_class", "get_attacker"]

_ATTACKERS: dict[str, type] = {}


@runtime_checkable
class Attacker(Protocol):
    """An informed attacker: learns labels from de-identified images ``(N, C, H, W)``.

    ``fit(X, y)`` returns ``self``; ``predict(X)`` returns ``(N,)`` labels; ``features(X)`` returns the
    ``(N, D)`` embedding the attacker classifies in; ``from_config(cfg)`` builds one from an
    :class:`~deid.evaluation.attackers.AttackerConfig`.
    """

    name: str

    @classmethod
    def from_config(cls, cfg: "AttackerConfig") -> "Attacker": ...

    def fit(self, X: np.ndarray, y) -> "Attacker": ...

    def predict(self, X: np.ndarray) -> np.ndarray: ...

    def features(self, X: np.ndarray) -> np.ndarray: ...


def register_attacker(name: str):
    """Class decorator: register an :class:`Attacker` under ``name``."""

    def deco(cls: type) -> type:
        if name in _ATTACKERS:
            raise ValueError(f"an attacker named '{name}' is already registered ({_ATTACKERS[name].__qualname__})")
        cls.name = name
        _ATTACKERS[name] = cls
        return cls

    return deco


def _ensure_loaded() -> None:
    import deid.evaluation.attackers  # noqa: F401  (importing the module registers every built-in attacker)


def available_attackers() -> list[str]:
    """Every registered attacker's name, in registration order."""
    _ensure_loaded()
    return list(_ATTACKERS)


def attacker_class(name: str) -> type:
    _ensure_loaded()
    try:
        return _ATTACKERS[name]
    except KeyError:
        raise ConfigError(f"unknown attacker '{name}'; registered attackers: {list(_ATTACKERS)}") from None


def get_attacker(name: str, cfg: "AttackerConfig | None" = None) -> Attacker:
    """Build attacker ``name`` (unfitted) from ``cfg`` (the defaults when ``None``)."""
    from deid.evaluation.attackers import AttackerConfig

    return attacker_class(name).from_config(cfg if cfg is not None else AttackerConfig())
