"""The one contract every de-identification method satisfies.

scikit-learn style: ``__init__`` stores hyperparameters and nothing else; ``fit`` validates,
learns and returns ``self``; learned state ends in ``_``; ``transform`` refuses to run unfitted;
``random_state`` makes two fits identical. Images are ``float32`` ``(N, C, H, W)`` in ``[0, 1]``.

Subclasses implement ``_fit`` and ``_transform``; the public methods check shapes, dtypes,
value ranges and NaNs on the way in and out, so a broken method fails loudly with its name.
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model

from deid.errors import ConfigError, MethodError, NotFittedError

__all__ = ["DeidMethod", "draw_stream", "check_images", "check_output", "check_labels", "DEVICE_PATTERN", "check_device", "Device",
           "PositiveInt", "NonNegativeInt", "AnonymityK", "PositiveFloat", "NonNegativeFloat", "UnitInterval",
           "Fraction", "Seed", "PowerOfTwo", "PARAM_DOCS", "K_WITHIN", "param_rows"]

# -- parameter types ----------------------------------------------------------------------
# A method declares each hyperparameter's type and constraint in its ``__init__`` signature with
# these aliases (or its own ``Annotated[...]``); :meth:`DeidMethod.validate_params` checks a
# config against them when it loads, before any work.
DEVICE_PATTERN = r"^(auto|cpu|cuda|cuda:(0|[1-9][0-9]{0,2}))$"


def check_device(v: str) -> str:
    """auto, cpu, cuda or cuda:N

    ``v`` if it is one of those; whether GPU ``N`` exists is checked at run time."""
    if not re.fullmatch(DEVICE_PATTERN, v):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {v!r}")
    return v


Device = Annotated[str, AfterValidator(check_device)]
PositiveInt = Annotated[int, Field(ge=1)]  # epochs, widths, batch sizes, block sizes
NonNegativeInt = Annotated[int, Field(ge=0)]
AnonymityK = Annotated[int, Field(ge=2)]  # k of k-anonymity: k = 1 protects nobody
PositiveFloat = Annotated[float, Field(gt=0)]  # sigma, learning rates, gradient-norm bounds
NonNegativeFloat = Annotated[float, Field(ge=0)]  # loss weights (λ)
UnitInterval = Annotated[float, Field(ge=0, le=1)]  # probabilities, mixing weights, pixel values
Fraction = Annotated[float, Field(ge=0, lt=1)]  # a held-out share of the training set
Seed = Annotated[int, Field(ge=0)]  # numpy's generators refuse negative seeds


def _power_of_two(v: int) -> int:
    """a power of two"""
    if v & (v - 1):
        raise ValueError(f"must be a power of two, got {v}")
    return v


PowerOfTwo = Annotated[int, Field(ge=4), AfterValidator(_power_of_two)]  # image sizes of conv networks

#: One line on each parameter several methods share; a method's ``param_docs`` adds its own and may
#: say it differently. ``deid methods`` prints them beside each parameter's type, default and range.
PARAM_DOCS: dict[str, str] = {
    "k": "identities mixed into each output (k of k-anonymity)",
    "random_state": "seed of every random draw of the fit: two fits with one seed are identical",
    "draw_seed": "seed of the draws at transform (None: fresh entropy each time, as a release needs)",
    "device": "where torch runs: auto picks a free GPU, else the CPU",
    "epochs": "passes over the training split",
    "min_steps": "at least this many optimiser steps (epochs are raised on small sets)",
    "batch_size": "images per optimiser step",
    "lr": "Adam learning rate",
    "width": "channels of the first convolution (the networks' width)",
    "hidden": "units of the hidden layer",
    "image_size": "side in pixels the networks work at (images are resized to it and back)",
    "n_components": "principal components of the PCA space in which nearest faces are found",
    "val_fraction": "share of the training images held out for early stopping",
    "patience": "epochs without a better validation loss before training stops",
    "clip": "gradient-norm bound (0: no clipping)",
    "target_identity": "the identity outputs are drawn towards ('@i': the i-th of the training split)",
    "alpha": "Dirichlet concentration of the mixing weights (high: even mixtures)",
    "max_weight": "largest weight one proxy identity may have in a mixture (must exceed 1/k)",
    "avoid_copies": "an output whose perceptual hash equals its input's is drawn again",
    "align": "each identity's nuisance moved to the set's mean, so pose and light say nothing of who it is",
}

#: Where a method must find k distinct identities (:attr:`DeidMethod.k_within`), checked right after ingest
#: (:mod:`deid.prefit`): the training split it fits on, every split it transforms whole, each utility label of
#: the training split (proxies share the image's label), or each utility label of every split it transforms.
K_WITHIN = ("train", "split", "train label", "split label")

_PARAM_CONFIG = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, validate_default=True)

_STATE_JSON = "state.json"
_STATE_NPZ = "state.npz"
_META = "method.json"


def draw_stream(draw_seed: int | None, X: np.ndarray) -> np.random.Generator:
    """The random stream of one ``transform`` call of a method that draws (proxies, mixtures, noise).

    Without ``draw_seed``: fresh operating-system entropy, as a release needs. With it (tests, ablations):
    a stream keyed by the seed *and the batch's pixels*, so a rerun draws the same in any process and
    order, while two batches or splits never replay one stream (with the seed alone the i-th images
    of every batch drew the same proxies). Which stream a batch gets says nothing of the draws' relation
    to any identity: the key is a hash.
    """
    import hashlib
    import secrets

    if draw_seed is None:
        return np.random.default_rng(secrets.randbits(64))
    key = hashlib.blake2b(np.ascontiguousarray(X).tobytes(), digest_size=8).digest()
    return np.random.default_rng([int(draw_seed), int.from_bytes(key, "little")])


def check_images(X: Any, where: str) -> np.ndarray:
    """``X`` as ``float32`` ``(N, C, H, W)`` in ``[0, 1]``, or a :class:`MethodError` saying why not."""
    if not isinstance(X, np.ndarray):
        raise MethodError(f"{where}: images must be a numpy array, got {type(X).__name__}")
    if X.ndim != 4:
        raise MethodError(f"{where}: images must have shape (N, C, H, W), got {X.shape}")
    if X.shape[0] == 0:
        raise MethodError(f"{where}: no images (N = 0)")
    if X.shape[1] not in (1, 3):
        raise MethodError(f"{where}: channel count must be 1 or 3, got {X.shape[1]} (shape {X.shape})")
    X = np.asarray(X, dtype=np.float32)
    if not np.isfinite(X).all():
        raise MethodError(f"{where}: images contain NaN or infinite values")
    lo, hi = float(X.min()), float(X.max())
    if lo < -1e-4 or hi > 1 + 1e-4:
        raise MethodError(f"{where}: pixel values must lie in [0, 1], got [{lo:.3f}, {hi:.3f}]")
    return X


def check_output(name: str, X: np.ndarray, Y: Any) -> np.ndarray:
    """Check a method's output against its input: same shape, float32, finite, in ``[0, 1]``."""
    if not isinstance(Y, np.ndarray):
        raise MethodError(f"method '{name}' returned {type(Y).__name__}, expected a numpy array")
    if Y.shape != X.shape:
        raise MethodError(f"method '{name}' returned shape {Y.shape} for input {X.shape}; shapes must match")
    if not np.isfinite(Y).all():
        raise MethodError(f"method '{name}' returned NaN or infinite pixels")
    Y = np.clip(Y.astype(np.float32, copy=False), 0.0, 1.0)
    return Y


def check_labels(labels: Any, n: int, what: str, where: str) -> np.ndarray | None:
    if labels is None:
        return None
    arr = np.asarray(labels)
    if arr.shape != (n,):
        raise MethodError(f"{where}: {what} must have one entry per image ({n}), got shape {arr.shape}")
    return arr


class DeidMethod:
    """Base class of every registered method.

    Class attributes a method may set:
    - ``name``: its registry name (set by :func:`deid.methods.register_method`).
    - ``needs_identity``: ``fit``/``transform`` need the private identity labels (k-Same).
    - ``needs_utility``: they use the utility labels (k-Same-Select, supervised shift).
    - ``set_level``: ``transform`` looks at the whole set at once (k-Same clusters); otherwise
      it may be applied batch by batch.
    - ``holds_training_images``: the saved state keeps original training images or pixels
      derived from few of them (an image bank, a mean face, eigenfaces): the model is private.
    - ``learns``: ``fit`` learns from the training images; ``False`` for stateless filters, which the
      pipeline fits on one image instead of reading the whole training split.
    """

    name: ClassVar[str] = "?"
    needs_identity: ClassVar[bool] = False
    needs_utility: ClassVar[bool] = False
    set_level: ClassVar[bool] = False
    holds_training_images: ClassVar[bool] = False
    learns: ClassVar[bool] = True
    #: where the ``k`` parameter's distinct identities must be found (one of :data:`K_WITHIN`); None: no such k
    k_within: ClassVar[str | None] = None
    #: what holds for every output by construction, whatever the audit measures ("" : nothing: only the audit speaks)
    guarantee: ClassVar[str] = ""
    #: one line per parameter of this method (over :data:`PARAM_DOCS`)
    param_docs: ClassVar[dict[str, str]] = {}

    # -- parameters ---------------------------------------------------------------------
    @classmethod
    def param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self" and sig.parameters[p].kind is not inspect.Parameter.VAR_KEYWORD]

    @classmethod
    def param_model(cls) -> type[BaseModel]:
        """A strict pydantic model of the hyperparameters, built from the ``__init__`` annotations and defaults.

        Strict: nothing is coerced (``'six'`` or ``2.5`` for an ``int`` is an error; an ``int`` for a
        ``float`` is accepted), NaN and infinities are refused, and the defaults must satisfy the
        constraints too.
        """
        model = cls.__dict__.get("_param_model")
        if model is None:
            hints = typing.get_type_hints(cls.__init__, include_extras=True)
            sig = inspect.signature(cls.__init__)
            fields: dict[str, Any] = {}
            for p in cls.param_names():
                default = sig.parameters[p].default
                fields[p] = (hints.get(p, Any), ... if default is inspect.Parameter.empty else default)
            model = create_model(f"{cls.__name__}Params", __config__=_PARAM_CONFIG, **fields)
            cls._param_model = model
        return model

    @classmethod
    def validate_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """Check ``params`` against the declared types and constraints; returns every parameter's value.

        Raises :class:`ConfigError` naming each bad parameter, its problem and the value given.
        """
        values = cls._typed_params(params)
        try:
            cls(**values)._validate()
        except (ConfigError, MethodError) as exc:
            raise ConfigError(str(exc)) from None
        return values

    @classmethod
    def _typed_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """Every parameter's value, each checked against its declared type and bounds (the one place a
        parameter's bound is defined: ``k`` ≥ 2, seeds ≥ 0, ...); :meth:`fit` checks a method built directly."""
        try:
            values = cls.param_model().model_validate(dict(params)).model_dump()
        except ValidationError as exc:
            problems = []
            for e in exc.errors():
                where = ".".join(str(x) for x in e["loc"]) or "params"
                got = "" if e["type"] == "missing" else f" (got {e['input']!r:.60})"
                if e["type"] == "extra_forbidden":
                    problems.append(f"{where}: no such parameter; allowed: {cls.param_names()}")
                elif e["type"] == "value_error":  # our own validators' messages already say what was given
                    problems.append(f"{where}: {e['ctx']['error']}")
                else:
                    problems.append(f"{where}: {e['msg']}{got}")
            raise ConfigError(f"method '{cls.name}': " + "; ".join(problems)) from None
        return values

    @classmethod
    def param_doc(cls, name: str) -> str:
        """One line on parameter ``name``: the method's own (its class or a base class), else the shared one."""
        for klass in cls.__mro__:
            doc = vars(klass).get("param_docs", {}).get(name)
            if doc:
                return doc
        return PARAM_DOCS.get(name, "")

    def _validate(self) -> None:
        """Checks that involve several hyperparameters; run at config load and by methods that call it in ``fit``."""

    def get_params(self) -> dict[str, Any]:
        return {p: getattr(self, p) for p in self.param_names()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- the contract --------------------------------------------------------------------
    def fit(self, X: np.ndarray, identity: Any = None, utility: Any = None) -> "DeidMethod":
        """Learn from training images ``X`` ``(N, C, H, W)``; returns ``self``."""
        type(self)._typed_params(self.get_params())  # the typed parameters' one check (k ≥ 2, seeds ≥ 0, ...)
        X = check_images(X, f"{self.name}.fit")
        identity = check_labels(identity, len(X), "identity", f"{self.name}.fit")
        utility = check_labels(utility, len(X), "utility", f"{self.name}.fit")
        if self.needs_identity and identity is None:
            raise MethodError(f"method '{self.name}' needs identity labels to fit")
        self.input_shape_ = tuple(int(s) for s in X.shape[1:])
        self._fit(X, identity, utility)
        self.fitted_ = True
        return self

    def transform(self, X: np.ndarray, identity: Any = None, utility: Any = None) -> np.ndarray:
        """De-identify ``X`` ``(N, C, H, W)``; returns an array of the same shape in ``[0, 1]``."""
        self._check_fitted()
        X = check_images(X, f"{self.name}.transform")
        if tuple(X.shape[1:]) != tuple(self.input_shape_):
            raise MethodError(
                f"method '{self.name}' was fitted on images of shape {self.input_shape_}, got {tuple(X.shape[1:])}"
            )
        identity = check_labels(identity, len(X), "identity", f"{self.name}.transform")
        utility = check_labels(utility, len(X), "utility", f"{self.name}.transform")
        if self.needs_identity and identity is None:
            raise MethodError(f"method '{self.name}' needs identity labels to transform")
        return check_output(self.name, X, self._transform(X, identity, utility))

    def fit_transform(self, X: np.ndarray, identity: Any = None, utility: Any = None) -> np.ndarray:
        return self.fit(X, identity, utility).transform(X, identity, utility)

    def _fit(self, X: np.ndarray, identity: np.ndarray | None, utility: np.ndarray | None) -> None:
        """Learn state (attributes ending in ``_``). Stateless methods learn nothing."""

    def _transform(self, X: np.ndarray, identity: np.ndarray | None, utility: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not getattr(self, "fitted_", False):
            raise NotFittedError(f"method '{self.name}' is not fitted; call fit(X) before transform or save")

    # -- persistence ---------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")}

    def _init_modules(self) -> None:
        """Re-create torch modules (with fresh weights) from loaded shapes; load() then fills them."""

    def save(self, directory: str | Path) -> Path:
        """Write hyperparameters and learned state to ``directory`` (created if needed)."""
        import torch

        self._check_fitted()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        arrays, plain, modules = {}, {}, []
        for k, v in self._state().items():
            if isinstance(v, torch.nn.Module):
                torch.save(v.state_dict(), d / f"{k}.pt")
                modules.append(k)
            elif isinstance(v, np.ndarray):
                arrays[k] = v
            else:
                plain[k] = v
        np.savez(d / _STATE_NPZ, **arrays)
        (d / _STATE_JSON).write_text(json.dumps({"plain": plain, "modules": modules}, default=_jsonable, indent=1))
        (d / _META).write_text(json.dumps({"name": self.name, "params": self.get_params()}, default=_jsonable, indent=1))
        return d

    @classmethod
    def load(cls, directory: str | Path) -> "DeidMethod":
        """Read a method written by :meth:`save`; torch weights load with ``weights_only=True``."""
        import torch

        d = Path(directory)
        meta = json.loads((d / _META).read_text())
        if meta["name"] != cls.name and cls is not DeidMethod:
            raise MethodError(f"{d} holds method '{meta['name']}', not '{cls.name}'")
        target = cls
        if cls is DeidMethod:
            from deid.methods.registry import method_class

            target = method_class(meta["name"])
        obj = target(**meta["params"])
        state = json.loads((d / _STATE_JSON).read_text())
        for k, v in state["plain"].items():
            setattr(obj, k, tuple(v) if k == "input_shape_" else v)
        with np.load(d / _STATE_NPZ, allow_pickle=False) as z:
            for k in z.files:
                setattr(obj, k, z[k])
        obj._init_modules()
        for k in state["modules"]:
            module = getattr(obj, k, None)
            if not isinstance(module, torch.nn.Module):
                raise MethodError(f"method '{meta['name']}' did not rebuild module '{k}' in _init_modules()")
            module.load_state_dict(torch.load(d / f"{k}.pt", map_location="cpu", weights_only=True))
            module.eval()
        return obj


_BOUNDS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}


def _type_and_range(annotation: Any, metadata: list) -> tuple[str, str]:
    """A parameter's type (``int``, ``float | None``, ``str``) and range (``≥ 2``, ``pixel | eigen``, ...)."""
    optional = False
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType", None)) \
            and type(None) in args:
        optional = True
        (annotation,) = [a for a in args if a is not type(None)]
    if typing.get_origin(annotation) is Annotated:
        base, *extra = typing.get_args(annotation)
        metadata = [*metadata, *[m for e in extra for m in (getattr(e, "metadata", None) or [e])]]
        annotation = base
    if typing.get_origin(annotation) is typing.Literal:
        kind, rng = "str", " | ".join(str(v) for v in typing.get_args(annotation))
    elif annotation is bool:
        kind, rng = "bool", "true | false"
    else:
        kind = getattr(annotation, "__name__", str(annotation))
        bounds, checks = {}, []
        for m in metadata:
            for attr in _BOUNDS:  # the tightest of repeated bounds (PowerOfTwo's ≥ 4 and a method's ≥ 8)
                if (v := getattr(m, attr, None)) is not None:
                    bounds[attr] = (max if attr in ("ge", "gt") else min)(bounds.get(attr, v), v)
            func = getattr(m, "func", None)
            if func is not None:
                checks.append((func.__doc__ or func.__name__).strip().splitlines()[0])
        lo = next(((op, bounds[op]) for op in ("ge", "gt") if op in bounds), None)
        hi = next(((op, bounds[op]) for op in ("le", "lt") if op in bounds), None)
        if lo and hi:
            rng = f"{'[' if lo[0] == 'ge' else '('}{lo[1]}, {hi[1]}{']' if hi[0] == 'le' else ')'}"
        else:
            rng = " ".join(f"{_BOUNDS[b[0]]} {b[1]}" for b in (lo, hi) if b)
        rng = ", ".join(r for r in (rng, *checks) if r)
    return kind + (" | None" if optional else ""), rng or "any"


def param_rows(cls: type[DeidMethod]) -> list[dict[str, str]]:
    """Each parameter of method class ``cls`` as ``deid methods`` shows it: name, type, default, range, doc;
    read from the typed ``__init__`` (:meth:`DeidMethod.param_model`) and the parameter docs."""
    rows = []
    for name, field in cls.param_model().model_fields.items():
        kind, rng = _type_and_range(field.annotation, list(field.metadata))
        rows.append({"name": name, "type": kind, "default": repr(field.default), "range": rng,
                     "doc": cls.param_doc(name)})
    return rows


def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (set, frozenset)):
        return sorted(v)
    raise TypeError(f"cannot store {type(v).__name__} in a method's JSON state")
