"""One Prefect test server per flow-test module (flows and their tasks need an API)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="module")
def prefect_server():
    os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "180"
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield
