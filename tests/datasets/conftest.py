"""Real-photo fixtures for the loader tests: crops of scikit-image's astronaut photo saved as JPEG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from face_photos import face_crop, write_jpeg


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage.data import astronaut as load

    return load()  # (512, 512, 3) RGB, one face at about (175..266, 76..166)


@pytest.fixture(scope="session")
def make_face(astronaut):
    """``make_face(path, k, size=(w, h))`` writes the ``k``-th distinct face photo as JPEG."""

    def _make(path: Path, k: int, size: tuple[int, int] = (250, 250)) -> Path:
        return write_jpeg(path, face_crop(astronaut, k, size))

    return _make
