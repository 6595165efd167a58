"""Shared by the flow tests: one Prefect test server for every module of this folder (flows and their
tasks need an API), the built-in set of ``settings.SMALL_DECIDABLE`` drawn once, and the release owner's
policy for tests of mechanics (``settings.mechanics_policy``) named in every flow test's environment."""

from __future__ import annotations

import os
import shutil
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.flows.settings import SMALL_DECIDABLE, mechanics_policy

HERE = Path(__file__).resolve().parent


class _Harness:
    """``prefect_test_harness()`` started on first use and kept until the session leaves this folder."""

    def __init__(self) -> None:
        self._stack: ExitStack | None = None

    def ensure(self) -> None:
        if self._stack is not None:
            return
        os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "180"
        from prefect.testing.utilities import prefect_test_harness

        stack = ExitStack()
        stack.enter_context(prefect_test_harness(server_startup_timeout=180))  # stops its server if it fails
        self._stack = stack

    def close(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()


_HARNESS = _Harness()


@pytest.fixture(scope="session")
def _prefect_harness():
    try:
        yield _HARNESS
    finally:
        _HARNESS.close()


@pytest.fixture
def prefect_server(_prefect_harness):
    """A Prefect test server (127.0.0.1) shared by the flow tests; stopped when the last test of this
    folder ends, whether it passed or not."""
    _prefect_harness.ensure()
    yield


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    if nextitem is None or HERE not in Path(nextitem.path).resolve().parents:
        _HARNESS.close()  # tests outside this folder never see the flow tests' server


@pytest.fixture(scope="session")
def small_decidable_tree(tmp_path_factory) -> Path:
    """``source: builtin`` with ``SMALL_DECIDABLE``, drawn once: the folder a run puts under
    ``<work_dir>/data`` (:func:`flows.ingest.resolve_source`), returned as that folder."""
    from deid.datasets.synthetic import SyntheticFergConfig, generate_ferg_like
    from flows.ingest import content_key

    spec = SyntheticFergConfig(**SMALL_DECIDABLE)
    out = tmp_path_factory.mktemp("builtin") / f"ferg-builtin-{content_key(spec.model_dump())}"
    generate_ferg_like(out, spec, workers=1)
    return out


@pytest.fixture(scope="session")
def seed_small_decidable(small_decidable_tree):
    """Put the drawn tree under ``work_dir/data`` (hard links) where a run looks for it first; the
    generator then keeps it as drawn (its marker records the settings), so the run's inputs are the same."""

    def seed(work_dir: Path) -> None:
        dest = Path(work_dir) / "data" / small_decidable_tree.name
        if dest.exists():
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copytree(small_decidable_tree, dest, copy_function=os.link)
        except OSError:
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(small_decidable_tree, dest)

    return seed


@pytest.fixture(autouse=True)
def _owner_policy(tmp_path_factory, monkeypatch):
    """Every flow test runs under the release owner's policy for tests of mechanics (no usefulness floor),
    named by ``DEID_RELEASE_POLICY`` as an owner names theirs; the processes a test starts inherit it."""
    return mechanics_policy(tmp_path_factory.mktemp("owner"), monkeypatch)
