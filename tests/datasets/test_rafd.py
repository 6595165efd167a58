"""RaFD loader on a small tree of real file names, and ingestion through dlib alignment."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_contracts import IMAGES_SCHEMA, read_table
from deid.datasets.ferg import FERG_EXPRESSIONS
from deid.datasets.rafd import RAFD_EXPRESSIONS, scan_rafd
from deid.errors import DatasetLayoutError
from deid.ingest import ingest_dataset
from deid.preprocessing import PreprocessConfig


def _name(cam="090", pid="01", eth="Caucasian", gender="female", expr="angry", gaze="frontal") -> str:
    return f"Rafd{cam}_{pid}_{eth}_{gender}_{expr}_{gaze}.jpg"


@pytest.fixture(scope="module")
def rafd_root(tmp_path_factory, make_face) -> Path:
    root = tmp_path_factory.mktemp("rafd")
    k = 0
    for pid, eth, gender in (("01", "Caucasian", "female"), ("02", "Moroccan", "male"), ("41", "Kid", "female")):
        for expr in ("angry", "happy", "contemptuous"):
            make_face(root / _name(pid=pid, eth=eth, gender=gender, expr=expr), k)
            k += 1
    make_face(root / _name(pid="01", expr="happy", gaze="left"), k)
    make_face(root / _name(cam="045", pid="01", expr="happy"), k + 1)
    make_face(root / "Rafd090_01_Caucasian_female_bored_frontal.jpg", k + 2)
    make_face(root / "Rafd090_01_Caucasian_female_happy_up.jpg", k + 3)
    make_face(root / "portrait.jpg", k + 4)
    (root / "README.txt").write_text("documentation is not data")
    return root


def test_expressions_map_to_ferg_names_with_contempt_kept():
    assert set(RAFD_EXPRESSIONS) == {"angry", "contemptuous", "disgusted", "fearful", "happy", "neutral", "sad", "surprised"}
    assert set(RAFD_EXPRESSIONS.values()) - set(FERG_EXPRESSIONS) == {"contempt"}
    assert RAFD_EXPRESSIONS["angry"] == "anger" and RAFD_EXPRESSIONS["happy"] == "joy"


def test_scan_default_is_the_frontal_camera(rafd_root):
    res = scan_rafd(rafd_root)
    assert len(res.items) == 10  # 9 frontal-gaze + 1 left gaze, all camera 090
    assert {it.identity for it in res.items} == {"01", "02", "41"}
    assert {it.label for it in res.items} == {"anger", "joy", "contempt"}
    assert all(it.attributes["camera_deg"] == 90.0 for it in res.items)
    reasons = sorted(r.reason.split(";")[0] for r in res.rejected)
    assert reasons == ["file name does not match Rafd<camera>_<id>_<ethnicity>_<gender>_<expression>_<gaze>",
                       "unknown expression 'bored'", "unknown gaze 'up'"]


def test_scan_selections(rafd_root):
    lit = scan_rafd(rafd_root, gazes=["frontal"], adults_only=True)
    assert len(lit.items) == 6 and {it.identity for it in lit.items} == {"01", "02"}
    assert all(it.attributes["gaze"] == 0.0 and it.attributes["child"] == 0.0 for it in lit.items)
    every = scan_rafd(rafd_root, cameras=None)
    assert len(every.items) == 11
    with pytest.raises(DatasetLayoutError, match="unknown camera"):
        scan_rafd(rafd_root, cameras=["091"])


def test_ingest_rafd(rafd_root, tmp_path):
    s = ingest_dataset("rafd", rafd_root, tmp_path / "out", preprocess=PreprocessConfig(size=64, align="dlib"),
                       workers=1, loader_options={"gazes": ["frontal"]})
    assert s.reconciles() and s.written == 9 and s.quarantined == 3
    assert s.utility_labels == ["anger", "contempt", "joy"]
    t = read_table(tmp_path / "out" / "images", IMAGES_SCHEMA)
    assert set(t.column("height").to_pylist()) == {64}
    assert all("Rafd" in p for p in t.column("source_path").to_pylist())
