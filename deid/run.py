"""One run, resolved once: a :class:`~deid.config.RunConfig` → a frozen :class:`ResolvedRun`.

Every driver (``deid run`` and ``deid validate``, the ``anonymize`` flow, the study) calls
:func:`resolve_run` once and reads what it needs from the result as typed values: the work directory,
every effective seed, the audit's settings and each method's validated parameters with the run's seed
and device applied. Nothing downstream parses the config again or derives a value from it a second time.

**The seed policy.** The top-level ``seed`` is the run seed. A component whose own seed the config leaves
unset (``dataset.split.seed``, ``dataset.synthetic.seed``, ``audit.seed``, a method's ``random_state``)
takes :func:`derived_seed` of the run seed, which is the run seed itself: with the default run seed 0
every derived seed is 0, the old default of each, so a config that leaves them unset gives exactly the
data it gave before, and ``--set seed=1`` moves them all. (The components do not share one random
stream: the split hashes its seed with a key of its own, the generator with each character's index.)
A seed the config sets explicitly is kept as it is. :attr:`ResolvedRun.seeds` records every effective
seed and which were derived; the run's ``summary.json`` carries them.

A method's ``target_identity: '@i'`` names the i-th identity of the training split, known only once the
data is ingested: :meth:`ResolvedRun.methods_for` binds it, and :meth:`ResolvedMethod.content_key` keys a
fitted model and its output by every parameter's value and the data's digest.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from deid.errors import ConfigError
from deid.workspace import WorkLayout

if TYPE_CHECKING:
    from deid.config import MethodSpec, RunConfig
    from deid.evaluation.audit_config import AuditConfig

__all__ = ["ResolvedRun", "ResolvedMethod", "Seeds", "resolve_run", "derived_seed", "content_key", "SEEDED"]

#: the components with a seed of their own, each derived from the run seed when the config leaves it unset
SEEDED = ("split", "synthetic", "audit")


def derived_seed(run_seed: int, component: str) -> int:
    """The seed of ``component`` (one of :data:`SEEDED`, or a method) whose own seed is unset: the run seed.

    The identity keeps the results of every config that leaves sub-seeds unset (run seed 0 → 0, the old
    default) and of the study, which always gave its split, audit and methods the run's seed."""
    return int(run_seed)


def content_key(*parts: Any) -> str:
    """A short stable key for folder names derived from settings (12 hex digits of a SHA-256)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Seeds:
    """Every effective seed of a run. ``synthetic`` is None when the dataset is read from disk (nothing is
    drawn); ``derived`` names the components whose seed came from the run seed."""

    run: int
    split: int
    audit: int
    synthetic: int | None
    derived: tuple[str, ...]

    def record(self, methods: Sequence["ResolvedMethod"] = ()) -> dict[str, Any]:
        """As ``summary.json`` records them: each component's seed, the derived ones, each method's ``random_state``."""
        out: dict[str, Any] = {"run": self.run, "split": self.split, "audit": self.audit}
        if self.synthetic is not None:
            out["synthetic"] = self.synthetic
        out["derived"] = list(self.derived)
        out["methods"] = {m.key: m.random_state for m in methods if m.random_state is not None}
        return out


@dataclass(frozen=True)
class ResolvedMethod:
    """One method of the run as it will be built.

    ``params``: every parameter's value (the method's defaults included), validated against its typed
    ``__init__`` once, with the run's seed (``random_state``) and device applied where the method declares
    them and the config did not set them. ``k`` is its validated k of k-anonymity (None: it has none).
    ``target``: the ``'@i'`` index of ``target_identity`` still to bind to the data (None: nothing to bind).
    ``given``: the parameters as the config wrote them (what tables and the release manifest show).
    ``index``: its place under ``methods:`` in the config (None: a baseline the run adds)."""

    key: str
    name: str
    params: tuple[tuple[str, Any], ...]
    given: tuple[tuple[str, Any], ...]
    random_state: int | None
    device: str | None
    k: int | None
    target: int | None
    index: int | None

    def kwargs(self) -> dict[str, Any]:
        """The constructor's keyword arguments."""
        return dict(self.params)

    def given_params(self) -> dict[str, Any]:
        return dict(self.given)

    def bind(self, identities: Sequence[str]) -> "ResolvedMethod":
        """``target_identity: '@i'`` replaced by the i-th of ``identities`` (the training split's, sorted)."""
        if self.target is None:
            return self
        i = self.target
        if i >= len(identities):
            raise ConfigError(f"method '{self.key}': target_identity '@{i}' asks for identity {i}, but the "
                              f"training split has {len(identities)} (@0 to @{len(identities) - 1})")
        params = tuple((n, str(identities[i]) if n == "target_identity" else v) for n, v in self.params)
        return replace(self, params=params, target=None)

    def content_key(self, data_digest: str) -> str:
        """What a fitted model and its output are made of: the method, every parameter's value, the data."""
        if self.target is not None:
            raise ValueError(f"method '{self.key}': bind its target identity to the data before keying it")
        return content_key(self.name, self.kwargs(), data_digest)


@dataclass(frozen=True)
class ResolvedRun:
    """A run config resolved once. ``config`` is the run's config with every effective seed written in
    (resolving it again gives the same run); ``work`` the absolute work directory; ``audit`` the audit's
    settings with the run's device when the audit's own is ``auto``."""

    config: "RunConfig"
    base: Path
    work: Path
    seeds: Seeds
    methods: tuple[ResolvedMethod, ...]
    audit: "AuditConfig"

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def layout(self) -> WorkLayout:
        """The work directory's folders."""
        return WorkLayout(self.work)

    @property
    def run_dir(self) -> Path:
        return self.layout.run(self.config.name)

    def method(self, key: str) -> ResolvedMethod:
        return next(m for m in self.methods if m.key == key)

    def methods_for(self, identities: Sequence[str]) -> tuple[ResolvedMethod, ...]:
        """Every method with its ``'@i'`` target bound to ``identities`` (the training split's, sorted)."""
        return tuple(m.bind(identities) for m in self.methods)

    def without(self, keys: set[str]) -> "ResolvedRun":
        """The run without the methods named in ``keys`` (the study leaves out settings the data cannot hold)."""
        config = self.config.model_copy(update={"methods": [m for m in self.config.methods if m.key not in keys]})
        return replace(self, config=config, methods=tuple(m for m in self.methods if m.key not in keys))

    def seed_record(self) -> dict[str, Any]:
        return self.seeds.record(self.methods)


def _seed(component: str, model: Any, run_seed: int, derived: list[str]) -> int:
    if "seed" in model.model_fields_set:
        return int(model.seed)
    derived.append(component)
    return derived_seed(run_seed, component)


def _target(name: str, value: Any) -> int | None:
    if not (isinstance(value, str) and value.startswith("@")):
        return None
    if not value[1:].isdigit():
        raise ConfigError(f"method '{name}': target_identity {value!r} must be '@' and an index, e.g. '@0'")
    return int(value[1:])


def _resolve_method(spec: "MethodSpec", index: int | None, seed: int, device: str) -> ResolvedMethod:
    from deid.methods import method_class

    cls = method_class(spec.name)
    names = cls.param_names()
    asked = dict(spec.params)
    if "random_state" in names:
        asked.setdefault("random_state", derived_seed(seed, spec.key))
    if "device" in names:
        asked.setdefault("device", device)
    try:
        values = cls.validate_params(asked)  # the one check of types and bounds (k of k-anonymity: ≥ 2)
    except ConfigError as exc:
        where = f"methods.{index}.params" if index is not None else f"method '{spec.key}'"
        raise ConfigError(f"{where}: {exc}") from None
    return ResolvedMethod(key=spec.key, name=spec.name, params=tuple(values.items()), given=tuple(spec.params.items()),
                          random_state=values.get("random_state"), device=values.get("device"),
                          k=values.get("k") if cls.k_within is not None else None,
                          target=_target(spec.key, values.get("target_identity")), index=index)


def resolve_run(cfg: "RunConfig", base: str | Path | None = None) -> ResolvedRun:
    """``cfg`` resolved once: its effective seeds (the policy in this module's docstring), work directory
    (relative to ``base``, default the current directory), audit settings and methods. Raises
    :class:`ConfigError` naming the field when a method's parameters, with the run's seed and device, are
    refused (a negative run seed, say) or a ``'@i'`` target is not an index."""
    base = Path.cwd() if base is None else Path(base)
    ds, derived = cfg.dataset, []
    split = _seed("split", ds.split, cfg.seed, derived)
    synthetic = _seed("synthetic", ds.synthetic, cfg.seed, derived) if ds.source == "builtin" else None
    audit_seed = _seed("audit", cfg.audit, cfg.seed, derived)
    dataset = ds.model_copy(update={"split": ds.split.model_copy(update={"seed": split}), **(
        {"synthetic": ds.synthetic.model_copy(update={"seed": synthetic})} if synthetic is not None else {})})
    audit = cfg.audit.model_copy(update={"seed": audit_seed})
    config = cfg.model_copy(update={"dataset": dataset, "audit": audit})
    index = {id(spec): i for i, spec in enumerate(cfg.methods)}
    methods = tuple(_resolve_method(spec, index.get(id(spec)), cfg.seed, cfg.device) for spec in cfg.all_methods())
    if cfg.device != "auto" and audit.device == "auto":
        audit = audit.model_copy(update={"device": cfg.device})
    return ResolvedRun(config=config, base=base, work=cfg.work_path(base), seeds=Seeds(
        run=cfg.seed, split=split, audit=audit_seed, synthetic=synthetic, derived=tuple(derived)),
        methods=methods, audit=audit)
