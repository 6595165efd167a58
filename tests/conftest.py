"""Shared fixtures: RNG state restored around every test, tiny datasets made on the fly."""

from __future__ import annotations

import os
import random
from pathlib import Path

# Under pytest-xdist each of the n workers (and every process a test starts) gets its share of the cores,
# set before numpy or torch start their pools (deid/threads.py); a DEID_THREADS the user set wins.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0) > 1 and not os.environ.get("DEID_THREADS"):
    from deid.threads import available_cores, configure_threads

    os.environ["DEID_THREADS"] = str(max(1, available_cores() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    configure_threads()

import numpy as np  # noqa: E402
import pytest  # noqa: E402

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

JAFFE_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "jaffe"


def pytest_collection_modifyitems(config, items):
    import torch

    skip_gpu = pytest.mark.skip(reason="needs CUDA; none here")
    skip_jaffe = pytest.mark.skip(reason=f"JAFFE not found at {JAFFE_DIR}")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if "jaffe" in item.keywords and not JAFFE_DIR.is_dir():
            item.add_marker(skip_jaffe)


@pytest.fixture(autouse=True)
def _restore_rng_state():
    import torch

    np_state, py_state, torch_state = np.random.get_state(), random.getstate(), torch.get_rng_state()
    yield
    np.random.set_state(np_state)
    random.setstate(py_state)
    torch.set_rng_state(torch_state)


@pytest.fixture
def torch_one_thread():
    """Small networks run as fast on one thread, and their results do not depend on the thread count."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def dlib_models() -> None:
    """Skip unless dlib and the model files of ``face-recognition-models`` are installed."""
    pytest.importorskip("dlib")
    from deid.evaluation.facemetrics import model_file

    try:
        model_file("dlib_face_recognition_resnet_model_v1.dat")
    except FileNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def jaffe_dir() -> Path:
    return JAFFE_DIR


@pytest.fixture(scope="session")
def ferg_tree(tmp_path_factory) -> Path:
    """A small FERG-like tree: 4 characters × 7 expressions × 6 images at 64 px."""
    from deid.datasets.synthetic import SyntheticFergConfig, generate_ferg_like

    root = tmp_path_factory.mktemp("raw")
    return generate_ferg_like(root, SyntheticFergConfig(n_characters=4, images_per_cell=6, size=64), workers=1)


@pytest.fixture(scope="session")
def ferg_images(ferg_tree, tmp_path_factory) -> Path:
    """``ferg_tree`` ingested at 32 × 32 grayscale; returns the ``images`` table directory."""
    from deid.ingest import ingest_dataset
    from deid.preprocessing import PreprocessConfig

    out = tmp_path_factory.mktemp("ingested") / "ferg"
    ingest_dataset("ferg", ferg_tree, out, preprocess=PreprocessConfig(size=32), workers=1)
    return out / "images"
