"""Where a run may write: system directories and other people's folders are refused before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from deid.config import MethodSpec, validate_config
from deid.errors import ConfigError
from deid.workspace import (MARKER, check_root, check_workspace, claim_workspace, ensure_inside, inside,
                            release_root, work_root)


def _cfg(work_dir, **kw):
    return validate_config({"name": "t", "dataset": {"name": "ferg"}, "work_dir": str(work_dir), **kw})


def _release(root, **kw):
    return {"enabled": True, "method": "blur", "root": str(root), **kw}


@pytest.mark.reliability(section='2. Paths from config are validated', case='work_dir: /, /etc, /usr/local/work, /proc/self, /var, /root, /tmp/../etc, ...',
                         before='accepted',
                         after='refused: a system directory')
@pytest.mark.parametrize("work_dir", ["/", "/etc", "/etc/deid", "/usr/local/work", "/proc/self", "/sys", "/dev",
                                      "/boot", "/bin", "/lib", "/var", "/root", "/home", "/tmp", "/tmp/../etc"])
def test_system_directories_are_refused_as_work_dir(work_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"^work_dir: .* is a system directory; choose a folder of its own$"):
        check_workspace(_cfg(work_dir), tmp_path)


@pytest.mark.reliability(section='2. Paths from config are validated', case='release.root: /etc/cron.d',
                         before='accepted',
                         after='refused: a system directory')
def test_release_root_in_a_system_directory_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"^release.root: /etc/cron.d is a system directory"):
        check_workspace(_cfg(tmp_path / "work", release=_release("/etc/cron.d")), tmp_path)


def test_the_home_directory_itself_is_refused(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(ConfigError, match="is a system directory"):
        check_workspace(_cfg("~"), tmp_path)
    check_workspace(_cfg("~/deid-work"), tmp_path)  # a folder of its own below it is fine


def test_a_symlink_to_a_system_directory_is_refused(tmp_path):
    (tmp_path / "work").symlink_to("/etc")
    with pytest.raises(ConfigError, match="is a system directory"):
        check_workspace(_cfg("work"), tmp_path)


@pytest.mark.reliability(section='2. Paths from config are validated', case='work_dir or release.root a non-empty folder deid did not create',
                         before='written into',
                         after='refused (no .deid-workspace marker), nothing written')
def test_a_non_empty_folder_deid_did_not_create_is_refused(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "thesis.tex").write_text("years of work")
    with pytest.raises(ConfigError, match=r"^work_dir: .*victim is not empty and was not created by deid"):
        check_workspace(_cfg(victim), tmp_path)
    (tmp_path / "work").mkdir()
    with pytest.raises(ConfigError, match=r"^release.root: .*victim is not empty and was not created by deid"):
        check_workspace(_cfg(tmp_path / "work", release=_release(victim)), tmp_path)
    assert sorted(p.name for p in victim.iterdir()) == ["thesis.tex"]  # nothing was written


def test_a_file_is_refused(tmp_path):
    (tmp_path / "work").write_text("")
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        check_workspace(_cfg("work"), tmp_path)


def test_missing_or_empty_roots_are_claimed_and_then_recognised(tmp_path):
    cfg = _cfg("work", release=_release(tmp_path / "out" / "releases"))
    ws = check_workspace(cfg, tmp_path)
    assert not (tmp_path / "work").exists()  # the check writes nothing
    claim_workspace(ws)
    assert (tmp_path / "work" / MARKER).is_file() and (tmp_path / "out" / "releases" / MARKER).is_file()
    (tmp_path / "work" / "notes.txt").write_text("anything")  # ours now: whatever it holds
    (tmp_path / "out" / "releases" / "ferg").mkdir()
    assert check_workspace(cfg, tmp_path) == ws


def test_a_work_dir_written_before_the_marker_is_recognised(tmp_path):
    work = tmp_path / "work"
    for d in ("prefect", "datasets", "runs", "mlflow"):
        (work / d).mkdir(parents=True)
    assert check_workspace(_cfg(work), tmp_path).work == work
    (work / "other").mkdir()
    with pytest.raises(ConfigError, match="not created by deid"):
        check_workspace(_cfg(work), tmp_path)


@pytest.mark.reliability(section='2. Paths from config are validated', case='default release root',
                         before='work_dir/../release, outside work/',
                         after="<work_dir>/release; release root inside the pipeline's own folders refused")
def test_a_relative_release_root_is_inside_the_work_dir(tmp_path):
    cfg = _cfg("w", release=_release("release"))
    assert work_root(cfg, tmp_path) == tmp_path / "w"
    assert release_root(cfg, tmp_path) == tmp_path / "w" / "release"
    assert check_workspace(cfg, tmp_path).release == tmp_path / "w" / "release"
    assert release_root(_cfg("w"), tmp_path) == tmp_path / "w" / "release"  # the default
    for bad in (".", "runs", "datasets/x"):
        with pytest.raises(ConfigError, match="release.root: .* is the work directory or one of its own folders"):
            check_workspace(_cfg("w", release=_release(bad)), tmp_path)


@pytest.mark.reliability(section='2. Paths from config are validated', case='a computed output path escaping its root',
                         before='not checked',
                         after='refused before any work')
def test_computed_paths_must_stay_inside_their_root(tmp_path):
    assert inside(tmp_path, tmp_path / "a" / "b") and inside(tmp_path, tmp_path)
    assert not inside(tmp_path / "a", tmp_path / "a" / ".." / "b")
    assert not inside(tmp_path / "a", tmp_path / "ab")
    with pytest.raises(ConfigError, match=r"^label: .* is outside .*; refusing to write there$"):
        ensure_inside(tmp_path / "runs", tmp_path / "runs" / ".." / ".." / "x", "label")
    # a label that escaped validation (built without it) is still caught before any work
    cfg = _cfg("work")
    cfg.methods.append(MethodSpec.model_construct(name="blur", params={}, label="../../../x"))
    with pytest.raises(ConfigError, match="method '../../../x': .* is outside"):
        check_workspace(cfg, tmp_path)


def test_check_root_reports_one_line(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "y").write_text("")
    with pytest.raises(ConfigError) as info:
        check_root(tmp_path / "x", "work_dir")
    assert "\n" not in str(info.value)
    assert Path(str(info.value).split(": ")[1].split(" ")[0]) == tmp_path / "x"


@pytest.mark.reliability(section='6. Crash and concurrency', case='run killed while writing RESULTS.md, a report or summary.json',
                         before='a half-written file',
                         after='the old file whole, or the new one (temporary file and os.replace)')
def test_an_interrupted_atomic_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    import os

    from data_contracts.atomic import write_text_atomic

    doc = tmp_path / "docs" / "RESULTS.md"
    write_text_atomic(doc, "old\n")
    assert doc.read_text() == "old\n"

    def killed(src, dst):
        raise KeyboardInterrupt  # the run stopped between writing the new text and putting it in place

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_text_atomic(doc, "new text that never lands\n")
    monkeypatch.undo()
    assert doc.read_text() == "old\n"
    assert sorted(p.name for p in doc.parent.iterdir()) == ["RESULTS.md"]  # no temporary file left behind
    write_text_atomic(doc, "new\n")
    assert doc.read_text() == "new\n"


@pytest.mark.reliability(section='2. Paths from config are validated', case='work_dir: a world-writable folder (/var/tmp) or one of another user; release.root inside <work_dir>/private',
                         before='accepted: anyone could plant files the next run reads; a release published beside release.key',
                         after='refused at config check, one line each')
def test_shared_or_foreign_roots_and_the_private_folder_are_refused(tmp_path):
    import os

    from deid.errors import ConfigError
    from deid.workspace import check_root

    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    with pytest.raises(ConfigError, match="writable by every user"):
        check_root(shared, "work_dir")
    os.chmod(shared, 0o755)
    assert check_root(shared, "work_dir") == shared
    cfg = _cfg(tmp_path / "work", release=_release(tmp_path / "work" / "private" / "releases"))
    with pytest.raises(ConfigError, match="release.root"):
        check_workspace(cfg, tmp_path)


def test_every_folder_of_a_work_directory_is_named_once_in_its_layout():
    """Product code reaches the work directory's folders through WorkLayout; a folder spelt where it is
    used (``work / "runs"``) would be a second layout."""
    import re

    from deid.workspace import WorkLayout

    root = Path(__file__).resolve().parents[1]
    layout = WorkLayout(Path("/w"))
    assert layout.run("x") == Path("/w/runs/x") and layout.cache("pixels") == Path("/w/cache/pixels")
    assert layout.dataset("ferg", "ab12") == Path("/w/datasets/ferg-ab12") and layout.dataset("ferg").name == "ferg"
    assert {p.name for p in (layout.data, layout.datasets, layout.runs, layout.private, layout.logs, layout.prefect,
                             layout.mlflow, layout.study)} <= set(WorkLayout.INTERNAL)
    spelt = re.compile(r'/ "(runs|cache|datasets|prefect|mlflow|logs|private|study)"')
    found = [f"{p.relative_to(root)}:{i}" for d in ("deid", "flows", "tasks") for p in sorted((root / d).rglob("*.py"))
             if p.name != "workspace.py" for i, line in enumerate(p.read_text().splitlines(), 1) if spelt.search(line)]
    assert found == [], found
