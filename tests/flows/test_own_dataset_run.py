"""The README's "Your own dataset" command, run as written on a manifest tree the test draws: a
dataset name no flow was written for goes through `deid run` to a release whose dataset card carries
the config's licence, and everything the run writes (Prefect's state too) lands in the work_dir
given with --set."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.flows.settings import FAST_POOLED_AUDIT, MECHANICS_GATES

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
# The example's labels, drawn by the built-in generator under other names; its other expressions stay
# in the manifest and are quarantined (a label outside `labels`).
AS_LABEL = {"anger": "anger", "disgust": "contempt", "joy": "joy", "neutral": "neutral"}


def _section(title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", (ROOT / "README.md").read_text(), re.MULTILINE | re.DOTALL)
    assert m, f"README has no section '{title}'"
    return m.group(1)


def _my_faces(project: Path, per_cell: int) -> int:
    """``project/data/my-faces/manifest.csv`` in the example's columns; returns how many rows cannot be used."""
    from deid.datasets.synthetic import FERG_EXPRESSIONS, SyntheticFergConfig, generate_ferg_like

    d = project / "data" / "my-faces"
    root = generate_ferg_like(d / "img", SyntheticFergConfig(n_characters=6, images_per_cell=per_cell, size=64,
                                                             entanglement=0.0, noise=0.0), workers=1)
    rows = []
    for png in sorted(root.rglob("*.png")):
        person, expression = png.parent.name.split("_", 1)
        k = int(png.stem.rsplit("_", 1)[1])
        label = AS_LABEL.get(expression, expression)
        rows.append({"file": png.relative_to(d).as_posix(), "person": person, "emotion": label,
                     "smiling": str(label == "joy").lower(), "part": "test" if k % 5 in (0, 1) else "train"})
    with open(d / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return 6 * per_cell * (len(FERG_EXPRESSIONS) - len(AS_LABEL))


def test_the_readme_own_dataset_command_runs_to_a_licensed_release(tmp_path):
    m = re.search(r"^\.venv/bin/deid run (configs/examples/my-faces\.yaml)$", _section("Your own dataset"), re.MULTILINE)
    assert m, "the README's 'Your own dataset' section states the command that runs the example"
    project, work = tmp_path / "project", tmp_path / "elsewhere"
    (project / "configs" / "examples").mkdir(parents=True)
    shutil.copy(ROOT / m.group(1), project / m.group(1))
    example = yaml.safe_load((project / m.group(1)).read_text())
    unusable = _my_faces(project, per_cell=21)
    # The command as written, with the run made small and releasable, and another work directory.
    sets = {"work_dir": str(work), "dataset.preprocess.size": 40, "include_baselines": False,
            "methods": [{"name": "proxy-morph", "params": {"k": 3, "draw_seed": 0}}], "audit": FAST_POOLED_AUDIT,
            "gates": MECHANICS_GATES,
            "release.enabled": True, "release.method": "proxy-morph"}
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={yaml.safe_dump(v, default_flow_style=True).strip()}"
                                                  if not isinstance(v, str) else f"{k}={v}")]
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_HOME", "DEID_WORK")}
    r = subprocess.run([str(Path(sys.executable).with_name("deid")), "run", m.group(1), *args], cwd=str(project),
                       env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    assert "release: published" in r.stdout

    from deid.ingest import load_summary

    summary = json.loads((work / "runs" / example["name"] / "summary.json").read_text())
    assert summary["dataset"]["name"] == "manifest" and summary["dataset"]["rows"] == 6 * 4 * 21
    (ingested,) = (work / "datasets").glob("manifest-*")
    ingest = load_summary(ingested)
    assert ingest.reconciles() and (ingest.written, ingest.quarantined) == (6 * 4 * 21, unusable)
    (card,) = (work / "release" / "manifest").glob("v-*/README.md")
    front = yaml.safe_load(card.read_text().split("---")[1])
    assert front["license"] == example["release"]["license"] == "cc-by-4.0"
    assert json.loads((card.parent / "manifest.json").read_text())["license"] == "cc-by-4.0"
    # One work directory for everything the run wrote: Prefect's database and the MLflow store too.
    assert (work / "prefect" / "prefect.db").is_file() and (work / "mlflow" / "mlflow.db").is_file()
    assert sorted(p.name for p in project.iterdir()) == ["configs", "data"]
