"""Plug-ins by name: one :class:`Registry` for the methods, the attackers and the dataset loaders.

A registry knows its built-in names and the module that registers each without importing it, so listing
the names and checking a config stay fast. It registers a plug-in once: a second one under a taken name
(or under a built-in name, from any module but the one its table names) is a :class:`RegistryError`. It
imports a built-in's module the first time the name is asked for and checks the module did register it,
and answers an unknown name with a :class:`~deid.errors.ConfigError` naming the closest one and all of
them. This module imports nothing heavy (no numpy, no torch).
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

from deid.errors import ConfigError, DeidError, did_you_mean

__all__ = ["Registry", "RegistryError", "NAME_STYLE"]

T = TypeVar("T")

#: the one style of every registered name: lower case words joined by hyphens (``ksame-net``)
NAME_STYLE = r"[a-z0-9]+(-[a-z0-9]+)*"

_log = logging.getLogger(__name__)


class RegistryError(DeidError, ValueError):
    """A plug-in cannot be registered: its name is taken, or not in the registries' one style."""


class Registry(Generic[T]):
    """The plug-ins of one kind by name.

    ``noun`` names the kind in messages (``"method"``, ``"attacker"``, ``"dataset"``); ``builtins`` maps each
    built-in name to the module that registers it (``table`` is that table's name, for the message when
    the module does not); ``aliases`` maps former names to current ones; ``style`` is the pattern every
    name must match (``None``: any); ``sort``: list the names sorted rather than the table's order first.
    """

    def __init__(self, noun: str, builtins: Mapping[str, str], *, table: str, plural: str | None = None,
                 aliases: Mapping[str, str] | None = None, style: str | None = NAME_STYLE,
                 sort: bool = True) -> None:
        self.noun = noun
        self.plural = plural or f"{noun}s"
        self.builtins = builtins
        self.table = table
        self.aliases: Mapping[str, str] = aliases if aliases is not None else {}
        self.style = style
        self.sort = sort
        self.noted: set[str] = set()  # former names already noted in the log
        self._entries: dict[str, T] = {}
        self._owners: dict[str, str] = {}

    def check_name(self, name: str) -> None:
        """A :class:`RegistryError` unless ``name`` is in the registry's style."""
        if self.style is not None and not re.fullmatch(self.style, name):
            how = ("lower case words joined by hyphens, e.g. 'ksame-net'" if self.style == NAME_STYLE
                   else f"a match of {self.style!r}")
            raise RegistryError(f"{self.noun} name '{name}' must be {how}")

    def add(self, name: str, value: T, module: str | None) -> T:
        """Register ``value`` under ``name``, from ``module``; a taken name is a :class:`RegistryError`."""
        self.check_name(name)
        declared = self.builtins.get(name)
        if name in self._entries or name in self.aliases or (declared is not None and module not in (None, declared)):
            if name in self._entries:
                owner = self._owners[name]
            elif name in self.aliases:
                owner = f"an alias of '{self.aliases[name]}'"
            else:
                owner = f"{declared}, as {self.table} says"
            raise RegistryError(f"a{'n' if self.noun[0] in 'aeiou' else ''} {self.noun} named '{name}' "
                                f"is already registered ({owner})")
        self._entries[name] = value
        qualname = getattr(value, "__qualname__", None)
        self._owners[name] = ".".join(p for p in (module, qualname) if p) or repr(value)
        return value

    def decorator(self, name: str) -> Callable[[type], type]:
        """Class decorator: register the class under ``name`` and set its ``name``."""
        self.check_name(name)

        def register(cls: type) -> type:
            self.add(name, cls, cls.__module__)
            cls.name = name
            return cls

        return register

    def canonical(self, name: str) -> str:
        """``name``, or the current name of a former one (noted once in the log)."""
        new = self.aliases.get(name)
        if new is None:
            return name
        if name not in self.noted:
            self.noted.add(name)
            _log.warning("%s name '%s' is deprecated; use '%s'", self.noun, name, new)
        return new

    def names(self) -> list[str]:
        """Every current name, built-in or registered since; imports no module."""
        names = list(dict.fromkeys([*self.builtins, *self._entries]))
        return sorted(names) if self.sort else names

    def get(self, name: str) -> T:
        """What is registered under ``name`` (or a former name's current one), its module imported."""
        name = self.canonical(name)
        if name not in self._entries and (module := self.builtins.get(name)) is not None:
            importlib.import_module(module)
            if name not in self._entries:
                raise LookupError(f"{module} does not register the {self.noun} '{name}' that {self.table} lists")
        try:
            return self._entries[name]
        except KeyError:
            names = self.names()
            raise ConfigError(f"unknown {self.noun} '{name}'{did_you_mean(name, names)}; "
                              f"registered {self.plural}: {names}") from None
