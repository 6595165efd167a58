"""The one registry behind the methods, the attackers and the dataset loaders (``deid/registry.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from deid.errors import ConfigError, DeidError
from deid.registry import Registry, RegistryError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """A registry of widgets whose built-ins live in modules written to ``tmp_path``."""
    reg: Registry[type] = Registry("widget", {"gear": "widgets_gear", "cog": "widgets_silent",
                                              "spring": "widgets_gear"}, table="WIDGETS", aliases={"old-gear": "gear"})
    (tmp_path / "widgets_gear.py").write_text(textwrap.dedent("""
        from tests_widget_registry import reg

        @reg.decorator("gear")
        class Gear:
            pass

        @reg.decorator("spring")
        class Spring:
            pass
        """))
    (tmp_path / "widgets_silent.py").write_text("X = 1\n")  # listed as registering 'cog', but does not
    monkeypatch.syspath_prepend(str(tmp_path))
    holder = type(sys)("tests_widget_registry")
    holder.reg = reg
    monkeypatch.setitem(sys.modules, "tests_widget_registry", holder)
    for m in ("widgets_gear", "widgets_silent"):
        monkeypatch.delitem(sys.modules, m, raising=False)
    return reg


def test_a_built_in_is_imported_when_first_asked_for(plugins):
    assert plugins.names() == ["cog", "gear", "spring"] and "widgets_gear" not in sys.modules
    gear = plugins.get("gear")
    assert gear.__name__ == "Gear" and gear.name == "gear" and "widgets_gear" in sys.modules
    assert plugins.get("spring").name == "spring"


def test_a_duplicate_name_is_the_one_registry_error(plugins):
    gear = plugins.get("gear")
    with pytest.raises(RegistryError, match=r"a widget named 'gear' is already registered \(widgets_gear.Gear\)"):
        plugins.decorator("gear")(type("Other", (), {}))
    assert plugins.get("gear") is gear  # the first one stays
    with pytest.raises(RegistryError, match=r"'cog' is already registered \(widgets_silent, as WIDGETS says\)"):
        plugins.decorator("cog")(type("Other", (), {}))  # a built-in name, from another module
    with pytest.raises(RegistryError, match=r"'old-gear' is already registered \(an alias of 'gear'\)"):
        plugins.decorator("old-gear")(type("Other", (), {}))
    with pytest.raises(RegistryError, match="lower case words joined by hyphens"):
        plugins.decorator("new_gear")
    assert issubclass(RegistryError, DeidError) and issubclass(RegistryError, ValueError)


def test_a_built_in_module_that_does_not_register_its_name_is_a_lookup_error(plugins):
    with pytest.raises(LookupError, match="widgets_silent does not register the widget 'cog' that WIDGETS lists"):
        plugins.get("cog")


def test_an_unknown_name_is_a_config_error_with_the_closest_and_every_name(plugins):
    with pytest.raises(ConfigError, match=r"unknown widget 'gears' \(did you mean 'gear'\?\); "
                                          r"registered widgets: \['cog', 'gear', 'spring'\]"):
        plugins.get("gears")


def test_a_former_name_resolves_with_one_note(plugins, caplog):
    assert plugins.get("old-gear") is plugins.get("gear") and plugins.get("old-gear") is plugins.get("gear")
    assert [r.getMessage() for r in caplog.records] == ["widget name 'old-gear' is deprecated; use 'gear'"]
    assert "old-gear" not in plugins.names()


def test_names_keep_the_table_order_unless_sorted():
    reg: Registry[object] = Registry("thing", {"b": "m", "a": "m"}, table="T", sort=False)
    reg.add("c", object(), None)
    assert reg.names() == ["b", "a", "c"]


def test_the_three_registries_are_the_one_registry():
    from deid.datasets import Loader, base, register_loader
    from deid.evaluation import attacker_registry
    from deid.methods import DeidMethod, register_method, registry

    assert all(isinstance(r, Registry) for r in (registry._METHODS, attacker_registry._ATTACKERS, base._LOADERS))
    with pytest.raises(RegistryError, match="a method named 'blur' is already registered"):
        register_method("blur")(type("Other", (DeidMethod,), {}))
    with pytest.raises(RegistryError, match="an attacker named 'cnn' is already registered"):
        attacker_registry.register_attacker("cnn")(type("Other", (), {}))
    with pytest.raises(RegistryError, match="a dataset named 'ferg' is already registered"):
        register_loader(Loader("ferg", lambda root: None))


def test_listing_names_imports_no_plug_in_and_the_registry_nothing_heavy():
    code = textwrap.dedent("""
        import json, sys
        import deid.errors
        before = set(sys.modules)
        import deid.registry
        added = sorted({k.split('.')[0] for k in set(sys.modules) - before} - set(sys.stdlib_module_names))
        from deid.evaluation.attacker_registry import BUILTIN_ATTACKERS, available_attackers
        from deid.methods.registry import METHOD_MODULES, available_methods
        names = available_methods() + available_attackers()
        modules = {*BUILTIN_ATTACKERS.values(), *('deid.methods.' + m for m in METHOD_MODULES)}
        heavy = sorted({k.split('.')[0] for k in sys.modules} & {'torch', 'sklearn', 'scipy', 'PIL'})
        print(json.dumps({"added": added, "heavy": heavy, "imported": sorted(modules & set(sys.modules)),
                          "n": len(names)}))
        """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    # deid.registry adds nothing to what its one import (deid.errors) loads but the standard library
    assert out == {"added": ["deid"], "heavy": [], "imported": [], "n": out["n"]} and out["n"] > 20, out
