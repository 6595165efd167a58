"""The import rules of docs/architecture.md, checked on the sources with ``ast`` (nothing is imported).

Every ``import`` and ``from ... import`` counts wherever it stands — at the top, inside a function, under
``if TYPE_CHECKING`` — and so does ``importlib.import_module("name")`` / ``__import__("name")`` with a
literal name. Relative imports are resolved against the file's package.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: layer (top-level folder) -> top-level modules it must never import, and why.
RULES: dict[str, dict[str, str]] = {
    "deid": {"prefect": "the library knows no orchestrator", "mlflow": "the library knows no tracker",
             "tasks": "the library sits below the tasks", "flows": "the library sits below the flows",
             "bench": "benchmarks measure the library, not the reverse"},
    "tasks": {"flows": "tasks are composed by flows, never the reverse", "bench": "benchmarks are no dependency"},
    "bench": {"flows": "benchmarks measure the library and the tasks, not the command line"},
    # inside the library: a method never imports the audit that judges it, nor does the clustering below it;
    # the data contracts sit below the whole library
    "deid/methods": {"deid.evaluation": "a method must not import the audit that judges it",
                     "deid.reporting": "a method does not report"},
    "deid/clustering": {"deid.evaluation": "the clustering sits below the audit", "deid.methods": "methods use it"},
    "data_contracts": {"deid": "the data contracts import nothing of the library",
                       "tasks": "the contracts sit below the tasks", "flows": "the contracts sit below the flows",
                       "bench": "benchmarks are no dependency", "prefect": "the library (deid/) imports the contracts",
                       "mlflow": "the library (deid/) imports the contracts"},
}


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, root: Path) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` for every import in the file at ``path`` (a package tree under ``root``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            f = node.func
            dynamic = (isinstance(f, ast.Name) and f.id in ("__import__", "import_module")) or \
                (isinstance(f, ast.Attribute) and f.attr == "import_module")
            if dynamic:
                found.append((node.lineno, node.args[0].value))
    return found


def _forbidden(name: str, banned: str) -> bool:
    """Whether module ``name`` is ``banned``: a dotted ban (``deid.evaluation``) is that package and its
    modules; a top-level one that tool (prefect_dask, mlflow_skinny and the like belong to the same tool)."""
    if "." in banned:
        return name == banned or name.startswith(banned + ".")
    top = name.split(".")[0]
    return top == banned or (banned in ("prefect", "mlflow") and top.startswith(banned + "_"))


def import_violations(root: Path, rules: dict[str, dict[str, str]] = RULES) -> list[str]:
    """One line per import that breaks ``rules``: ``path:line: layer imports module (why)``; unparsable files too."""
    problems: list[str] = []
    for layer, banned in sorted(rules.items()):
        for path in sorted((root / layer).rglob("*.py")):
            rel = path.relative_to(root)
            try:
                imports = imported_modules(path, root)
            except SyntaxError as exc:
                problems.append(f"{rel}:{exc.lineno}: cannot be parsed, so its imports cannot be checked")
                continue
            for line, name in imports:
                for b, why in banned.items():
                    if _forbidden(name, b):
                        problems.append(f"{rel}:{line}: {layer}/ imports {name} ({why})")
    return problems


#: the product code, whose runtime import graph must have no cycle
PRODUCT = ("deid", "flows", "tasks", "data_contracts")


def _type_checking_only(tree: ast.AST) -> set[int]:
    """The ids of the nodes under ``if TYPE_CHECKING:``: they name types and never run."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out |= {id(n) for b in node.body for n in ast.walk(b)}
    return out


def import_graph(root: Path, packages=PRODUCT) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` it imports when it runs (at the top or inside a function; a
    name resolves to the longest module it starts with, so ``from deid.x import f`` is ``deid.x``)."""
    files = {_module_name(p, root): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))}

    def resolve(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        skip, package = _type_checking_only(tree), module if path.name == "__init__.py" else module.rpartition(".")[0]
        edges = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                edges |= {resolve(a.name) for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".") if node.level else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                name = ".".join(base + ([node.module] if node.module else []))
                # ``from pkg import sub`` imports the submodule when there is one
                edges |= {resolve(f"{name}.{a.name}") if f"{name}.{a.name}" in files else resolve(name)
                          for a in node.names}
        graph[module] = {e for e in edges if e and e != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


# -- the project --------------------------------------------------------------------------------------------
def test_the_product_code_imports_in_no_circle():
    """No module of deid/, flows/, tasks/ or data_contracts/ reaches itself through its imports (registries
    load their built-in plug-ins by name from a table, as the methods' do, and are no circle)."""
    found = cycles(import_graph(ROOT))
    assert not found, "import circles: " + "; ".join(" -> ".join(c) for c in found)


def test_the_project_keeps_its_import_rules():
    problems = import_violations(ROOT)
    assert not problems, "import rules broken (docs/architecture.md):\n" + "\n".join(problems)


def test_every_ruled_layer_exists_and_is_read():
    for layer in RULES:
        files = list((ROOT / layer).rglob("*.py"))
        assert files, f"{layer}/ has no Python files: the rule on it checks nothing"
    # the checker really sees the library's imports: deid/ imports numpy somewhere
    seen = {n.split(".")[0] for p in (ROOT / "deid").rglob("*.py") for _, n in imported_modules(p, ROOT)}
    assert {"numpy", "torch", "data_contracts"} <= seen


# -- the checker, on a tiny tree of its own -------------------------------------------------------------------
def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return tmp_path


CLEAN = {
    "deid/__init__.py": "",
    "deid/core.py": "import numpy as np\nfrom deid import core\nfrom . import core as c\n",
    "data_contracts/__init__.py": "import pyarrow\n",
    "tasks/__init__.py": "",
    "tasks/t.py": "from deid.core import np\nimport prefect\nimport mlflow\n",
    "bench/__init__.py": "",
    "bench/b.py": "from tasks import t\nimport deid.core\n",
    "flows/__init__.py": "",
    "flows/f.py": "from tasks import t\nfrom bench import b\n",
}


def test_checker_passes_a_clean_tree(tmp_path):
    assert import_violations(_tree(tmp_path, CLEAN)) == []


@pytest.mark.parametrize("rel, text, expect", [
    ("deid/late.py", "def f():\n    import mlflow\n    return mlflow\n", "deid/late.py:2: deid/ imports mlflow"),
    ("deid/typed.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from prefect import flow\n",
     "deid/typed.py:3: deid/ imports prefect"),
    ("deid/dyn.py", "import importlib\nm = importlib.import_module('prefect.runtime')\n",
     "deid/dyn.py:2: deid/ imports prefect.runtime"),
    ("deid/dunder.py", "m = __import__('mlflow')\n", "deid/dunder.py:1: deid/ imports mlflow"),
    ("deid/plug.py", "import prefect_dask\n", "deid/plug.py:1: deid/ imports prefect_dask"),
    ("deid/sub/up.py", "from ...flows import f\n", "deid/sub/up.py:1: deid/ imports flows"),
    ("tasks/t2.py", "from flows.f import x\n", "tasks/t2.py:1: tasks/ imports flows.f"),
    ("tasks/rel.py", "from ..flows import f\n", "tasks/rel.py:1: tasks/ imports flows"),
    ("bench/b2.py", "def main():\n    from flows.study import loadavg\n", "bench/b2.py:2: bench/ imports flows.study"),
    ("data_contracts/c.py", "import tasks.t\n", "data_contracts/c.py:1: data_contracts/ imports tasks.t"),
    ("data_contracts/d.py", "from deid.core import np\n", "data_contracts/d.py:1: data_contracts/ imports deid.core"),
    ("deid/methods/m.py", "from deid.evaluation.audit import audit\n",
     "deid/methods/m.py:1: deid/methods/ imports deid.evaluation.audit"),
    ("deid/clustering/k.py", "def f():\n    from deid.evaluation import gates\n",
     "deid/clustering/k.py:2: deid/clustering/ imports deid.evaluation"),
])
def test_checker_finds_each_kind_of_violation(tmp_path, rel, text, expect):
    root = _tree(tmp_path, {**CLEAN, rel: text, "deid/sub/__init__.py": ""})
    problems = import_violations(root)
    assert len(problems) == 1, problems
    assert problems[0].startswith(expect), problems


def test_checker_reports_a_file_it_cannot_parse(tmp_path):
    problems = import_violations(_tree(tmp_path, {**CLEAN, "bench/broken.py": "def f(:\n"}))
    assert problems == ["bench/broken.py:1: cannot be parsed, so its imports cannot be checked"]


def test_relative_imports_resolve_against_the_package(tmp_path):
    root = _tree(tmp_path, {"deid/__init__.py": "", "deid/a/__init__.py": "from .b import x\nfrom .. import c\n",
                            "deid/a/m.py": "from . import n\nfrom ..c import y\n"})
    assert [n for _, n in imported_modules(root / "deid/a/__init__.py", root)] == ["deid.a.b", "deid"]
    assert [n for _, n in imported_modules(root / "deid/a/m.py", root)] == ["deid.a", "deid.c"]


def test_the_circle_check_finds_a_lazy_circle_and_ignores_type_only_imports(tmp_path):
    root = _tree(tmp_path, {
        "deid/__init__.py": "",
        "deid/a.py": "from deid.b import f\n",
        "deid/b.py": "def f():\n    from deid import a\n",
        "deid/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from deid.d import T\n",
        "deid/d.py": "from deid.c import x\n",
    })
    graph = import_graph(root, ("deid",))
    assert graph["deid.b"] == {"deid.a"} and graph["deid.c"] == set()
    assert cycles(graph) == [["deid.a", "deid.b"]]
