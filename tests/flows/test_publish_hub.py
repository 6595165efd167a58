"""``deid publish RELEASE --repo ORG/NAME``: a checked release to the Hugging Face Hub, a dry run unless told
otherwise. The Hub is replaced at the client boundary only (``HfApi.create_repo`` and ``HfApi.upload_folder``);
everything before them runs as it does for a user."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from data_contracts import IMAGES_SCHEMA, read_table
from deid.release import release_private_dir
from flows import cli
from tests.test_release import _anonymize, _private, _publish

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
REPO = "my-org/ferg-deid"


@pytest.fixture(scope="module")
def published(ferg_images, tmp_path_factory):
    """A release and the work directory of the run that published it."""
    anonymized = _anonymize("pixelate", ferg_images, tmp_path_factory)
    work = tmp_path_factory.mktemp("work")
    r = _publish(anonymized, ferg_images, work / "release", release_private_dir(work), private=_private(ferg_images),
                 manifest={"mlflow_run_id": "0a1b2c"})
    return r.path, work


@pytest.fixture
def release(published, tmp_path):
    """A copy of the release (tests may tamper with it), with the private record of the original."""
    path, work = published
    copy = tmp_path / "release" / "ferg" / path.name
    shutil.copytree(path, copy)
    return copy, work


@pytest.fixture
def hub(monkeypatch):
    """The Hub client's two calls, recorded instead of sent."""
    from huggingface_hub import HfApi

    calls: list[tuple[str, tuple, dict]] = []

    def create_repo(self, *args, **kwargs):
        calls.append(("create_repo", args, kwargs))
        return f"https://huggingface.co/datasets/{args[0] if args else kwargs['repo_id']}"

    def upload_folder(self, **kwargs):
        calls.append(("upload_folder", (), {**kwargs, "token": self.token}))
        return None

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return calls


def _publish_cmd(release_dir, work, *extra):
    return runner.invoke(cli.app, ["publish", str(release_dir), "--repo", REPO, "--work-dir", str(work), *extra])


def _errors(r) -> list[str]:
    return [line for line in r.output.splitlines() if line.strip()]


def test_a_dry_run_by_default_lists_what_would_go_where_and_uploads_nothing(release, hub, monkeypatch):
    path, work = release
    monkeypatch.setenv("HF_TOKEN", "hf_test")  # a token alone does not upload
    r = _publish_cmd(path, work)
    assert r.exit_code == 0, r.output
    assert hub == []
    assert f"dry run: would upload to https://huggingface.co/datasets/{REPO}" in r.output
    listed = re.findall(r"^  (\S+)  [\d,]+ bytes$", r.output, re.MULTILINE)
    files = json.loads((path / "manifest.json").read_text())["files"]
    assert listed == ["README.md", "manifest.json", *sorted(files)]
    assert "nothing uploaded" in r.output and "--yes" in r.output


@pytest.mark.parametrize("flag", ["--yes", "--no-dry-run"])
def test_the_flag_uploads_the_checked_files_to_the_dataset_repository(release, hub, monkeypatch, flag):
    path, work = release
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    r = _publish_cmd(path, work, flag)
    assert r.exit_code == 0, r.output
    assert [c[0] for c in hub] == ["create_repo", "upload_folder"]
    _, args, kw = hub[0]
    assert args == (REPO,) and kw == {"repo_type": "dataset", "private": True, "exist_ok": True}
    _, _, up = hub[1]
    assert up["folder_path"] == str(path) and up["repo_id"] == REPO and up["repo_type"] == "dataset"
    assert up["token"] == "hf_test"
    files = json.loads((path / "manifest.json").read_text())["files"]
    assert sorted(up["allow_patterns"]) == sorted(["README.md", "manifest.json", *files])
    assert up["delete_patterns"] == ["data/*"]  # the repository holds this release's data only
    assert f"uploaded: https://huggingface.co/datasets/{REPO}" in r.output


def test_public_creates_a_public_repository(release, hub, monkeypatch):
    path, work = release
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    assert _publish_cmd(path, work, "--yes", "--public").exit_code == 0
    assert hub[0][2]["private"] is False


def test_no_token_is_one_line_and_nothing_is_called(release, hub, monkeypatch):
    path, work = release
    monkeypatch.delenv("HF_TOKEN", raising=False)
    r = _publish_cmd(path, work, "--yes")
    assert r.exit_code == 2 and hub == []
    assert _errors(r) == [f"error: HF_TOKEN is not set: export a Hugging Face token with write access to {REPO} "
                          "to upload"]
    dry = _publish_cmd(path, work)  # the dry run still works, and says a token is needed
    assert dry.exit_code == 0 and "HF_TOKEN is not set (needed to upload)" in dry.output


@pytest.mark.parametrize("case", ["no manifest", "no card", "added file", "changed file", "not a folder",
                                  "other work dir", "bad repo"])
def test_a_folder_that_is_not_the_release_as_published_is_refused_in_one_line(release, hub, monkeypatch, tmp_path,
                                                                              case):
    path, work = release
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    repo = REPO
    if case == "no manifest":
        (path / "manifest.json").unlink()
    elif case == "no card":
        (path / "README.md").unlink()
    elif case == "added file":
        (path / "data" / "notes.txt").write_text("x")
    elif case == "changed file":
        f = next(path.rglob("*.parquet"))
        f.write_bytes(f.read_bytes() + b"\0")
    elif case == "not a folder":
        path = tmp_path / "nowhere"
    elif case == "other work dir":
        work = tmp_path / "other-work"
    else:
        repo = "ferg-deid"
    r = runner.invoke(cli.app, ["publish", str(path), "--repo", repo, "--work-dir", str(work), "--yes"])
    assert r.exit_code == 2 and hub == []
    lines = _errors(r)
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    expected = {"no manifest": "no manifest.json", "no card": "no README.md", "added file": "data/notes.txt",
                "changed file": "checksum", "not a folder": "is not a folder", "other work dir": "no private record",
                "bad repo": "ORG/NAME"}[case]
    assert expected in lines[0]


def test_a_release_whose_leak_scan_fails_is_refused(release, hub, monkeypatch, ferg_images):
    path, work = release
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    identities = read_table(ferg_images, IMAGES_SCHEMA, columns=["identity"]).column("identity").to_pylist()
    identity = sorted(set(identities))[0]
    with (path / "README.md").open("a") as fh:  # the card is not checksummed: a hand edit naming someone
        fh.write(f"\nThanks to {identity} for sitting.\n")
    r = _publish_cmd(path, work, "--yes")
    assert r.exit_code == 2 and hub == []
    lines = _errors(r)
    assert len(lines) == 1 and "holds private data of its input" in lines[0] and identity in lines[0]


def test_a_hub_error_is_one_line(release, monkeypatch):
    from huggingface_hub import HfApi

    path, work = release
    monkeypatch.setenv("HF_TOKEN", "hf_test")

    def refuse(self, *args, **kwargs):
        raise PermissionError("403 Forbidden: you cannot\nwrite to this repository")

    monkeypatch.setattr(HfApi, "create_repo", refuse)
    r = _publish_cmd(path, work, "--yes")
    assert r.exit_code == 2
    assert _errors(r)[-1] == (f"error: upload to https://huggingface.co/datasets/{REPO} failed: PermissionError: 403 "
                              "Forbidden: you cannot write to this repository")


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"^## Publishing to the Hugging Face Hub\n(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert m, "README has no section 'Publishing to the Hugging Face Hub'"
    block = re.search(r"```bash\n(.*?)```", m.group(1), re.DOTALL)
    assert block
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if "deid publish" in line]


def test_the_readmes_publish_commands_run_as_written(release, hub, monkeypatch):
    path, work = release
    commands = _readme_commands()
    assert len(commands) == 2
    monkeypatch.setattr(cli, "_WORK", work)  # the README runs from the project folder: work/ is the default
    monkeypatch.delenv("HF_TOKEN", raising=False)
    for command in commands:
        words = shlex.split(command)
        env = dict(w.split("=", 1) for w in words if re.match(r"^[A-Z_]+=", w))
        words = [w for w in words if not re.match(r"^[A-Z_]+=", w)]
        assert words[:2] == [".venv/bin/deid", "publish"] and re.fullmatch(r"work/release/ferg/v-[0-9a-f]+", words[2])
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        r = runner.invoke(cli.app, [words[1], str(path), *words[3:]])
        assert r.exit_code == 0, r.output
    dry, upload = commands
    assert "--yes" not in dry and "--yes" in upload
    assert [c[0] for c in hub] == ["create_repo", "upload_folder"]  # once: the second command only
    assert hub[1][2]["folder_path"] == str(path) and hub[1][2]["repo_id"] == re.search(r"--repo (\S+)", upload)[1]
