"""A method whose saved state holds training pixels declares it (``holds_training_images``), so its
model is tracked and registered as private. Checked on what ``save`` actually writes."""

from __future__ import annotations

import numpy as np
import pytest

from deid.methods import DeidMethod, available_methods, get_method, method_class

N, C, H, W = 36, 1, 32, 32

pytestmark = pytest.mark.filterwarnings("ignore:.*adversary did not learn:UserWarning")


def _image_sized(a: np.ndarray) -> bool:
    """An image ``(…, C, H, W)`` or flattened image rows ``(…, C·H·W)``: a stored face or eigenface."""
    return a.ndim >= 1 and (tuple(a.shape[-3:]) == (C, H, W) or a.shape[-1] == C * H * W)


@pytest.mark.slow
@pytest.mark.parametrize("name", available_methods())
def test_saved_training_pixels_are_declared(name, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.random((N, C, H, W), dtype=np.float32)
    identity = np.array([f"id{i % 6}" for i in range(N)], dtype=object)
    utility = np.array([f"ex{(i // 6) % 3}" for i in range(N)], dtype=object)
    cls = method_class(name)
    params = dict(getattr(cls, "test_params", {}))
    if "substitute" in cls.param_names():  # the variant that keeps an image bank
        params.update(substitute=True, target_identity="id0")
    get_method(name, **params).fit(X, identity, utility).save(tmp_path)
    with np.load(tmp_path / "state.npz") as z:
        pixels = sorted(k for k in z.files if _image_sized(z[k]))
    if pixels:
        assert cls.holds_training_images, f"'{name}' saves {pixels} (training pixels) but is not marked private"
    assert DeidMethod.holds_training_images is False


def test_the_image_bank_and_eigenface_methods_are_private():
    private = {n for n in available_methods() if method_class(n).holds_training_images}
    assert {"substitution", "mi-adversarial", "ksame-pixel", "ksame-eigen", "ksame-select", "ksame-net"} <= private
    assert not private & {"none", "blur", "pixelate", "blackout"}
