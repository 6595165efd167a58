"""docs/reliability.md is the table the tests' reliability markers make, and each listed test exists."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("reliability_table", ROOT / "scripts" / "reliability_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_reliability_doc_is_up_to_date():
    mod = _script()
    assert mod.DOC.read_text() == mod.render(), "run: .venv/bin/python scripts/reliability_table.py"


def test_every_section_of_the_reliability_issue_has_cases():
    sections = {c["section"].split(".")[0] for c in _script().cases()}
    assert sections >= {"1", "2", "3", "4", "5", "6"}, sorted(sections)
