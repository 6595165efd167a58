"""One set of checks over every registered method (scikit-learn's check_estimator, in small).

A method may set a class attribute ``test_params`` with small settings (few epochs, tiny
networks) so this suite stays fast; the checks themselves are the same for all.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from deid.errors import MethodError, NotFittedError
from deid.methods import DeidMethod, available_methods, get_method, method_class, register_method
from deid.registry import RegistryError

N, C, H, W = 36, 1, 32, 32

# The tiny settings below make some adversaries too weak to learn; their warning is expected here.
pytestmark = pytest.mark.filterwarnings("ignore:.*adversary did not learn:UserWarning")


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.random((N, C, H, W), dtype=np.float32)
    identity = np.array([f"id{i % 6}" for i in range(N)], dtype=object)
    utility = np.array([f"ex{(i // 6) % 3}" for i in range(N)], dtype=object)
    return X, identity, utility


def _make(name: str) -> DeidMethod:
    cls = method_class(name)
    return get_method(name, **getattr(cls, "test_params", {}))


@pytest.fixture(params=available_methods())
def name(request) -> str:
    return request.param


def test_fit_returns_self_and_keeps_shape_and_dtype(name):
    X, ident, util = _data()
    m = _make(name)
    assert m.fit(X, ident, util) is m
    Y = m.transform(X, ident, util)
    assert Y.shape == X.shape and Y.dtype == np.float32
    assert np.isfinite(Y).all() and Y.min() >= 0.0 and Y.max() <= 1.0


def test_init_stores_params_only(name):
    m = _make(name)
    assert not [k for k in vars(m) if k.endswith("_")], "learned state set in __init__"
    assert set(m.get_params()) == set(type(m).param_names())


def test_not_fitted_error(name):
    X, ident, util = _data()
    with pytest.raises(NotFittedError, match=name):
        _make(name).transform(X, ident, util)


def test_deterministic_under_seed(name):
    X, ident, util = _data()
    a = _make(name).fit(X, ident, util).transform(X, ident, util)
    b = _make(name).fit(X, ident, util).transform(X, ident, util)
    np.testing.assert_array_equal(a, b)


def test_save_load_round_trip(name, tmp_path):
    X, ident, util = _data()
    m = _make(name).fit(X, ident, util)
    Y = m.transform(X, ident, util)
    m.save(tmp_path / name)
    loaded = DeidMethod.load(tmp_path / name)
    assert type(loaded) is type(m) and loaded.get_params() == m.get_params()
    np.testing.assert_allclose(loaded.transform(X, ident, util), Y, atol=1e-6)


def test_rejects_bad_input(name):
    X, ident, util = _data()
    m = _make(name)
    with pytest.raises(MethodError, match="shape"):
        m.fit(X[0], ident, util)
    bad = X.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(MethodError, match="NaN"):
        m.fit(bad, ident, util)
    m.fit(X, ident, util)
    with pytest.raises(MethodError, match="fitted on images of shape"):
        m.transform(np.zeros((2, C, H + 2, W), np.float32), ident[:2], util[:2])


def test_registry_refuses_duplicates_and_unknown_params():
    with pytest.raises(RegistryError, match="already registered"):
        register_method("blur")(type("Other", (DeidMethod,), {}))
    from deid.errors import ConfigError

    with pytest.raises(ConfigError, match="allowed"):
        get_method("blur", radius=3)
    with pytest.raises(ConfigError, match="registered methods"):
        get_method("no-such-method")


def test_output_check_names_the_method():
    class Broken(DeidMethod):
        name = "broken"

        def __init__(self):
            pass

        def _transform(self, X, identity, utility):
            return X[:, :, :-1]

    X, _, _ = _data()
    with pytest.raises(MethodError, match="'broken' returned shape"):
        Broken().fit(X).transform(X)


def test_former_names_resolve_to_the_current_methods(tmp_path):
    import json

    from deid.methods.registry import ALIASES, NAME_STYLE

    assert all(re.fullmatch(NAME_STYLE, n) for n in available_methods()) and not set(ALIASES) & set(available_methods())
    for old, new in ALIASES.items():
        assert method_class(old) is method_class(new) and method_class(old).name == new
    with pytest.raises(RegistryError, match="lower case words joined by hyphens"):
        register_method("latent_shift")
    X, ident, util = _data()
    m = get_method("latent_shift", **method_class("latent-shift").test_params).fit(X)  # as an older run names it
    assert m.name == "latent-shift"
    meta = json.loads((m.save(tmp_path / "m") / "method.json").read_text())
    (tmp_path / "m" / "method.json").write_text(json.dumps({**meta, "name": "latent_shift"}))  # saved before the rename
    back = DeidMethod.load(tmp_path / "m")
    assert back.name == "latent-shift"
    np.testing.assert_allclose(back.transform(X), m.transform(X), atol=1e-6)
