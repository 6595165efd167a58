"""Every audit metric's facts, once: its name, what it means, how it is shown, what it is read against.

The report's and the terminal's tables, the dataset card, the study's table, the MLflow headline
figures, the names a gate may use and the face-only check of a config are all read from this table.
A new metric: compute it (one module, called by :func:`deid.evaluation.audit.audit`) and register its
facts here with one :func:`register_metric` entry.

Light on purpose (no numpy, no torch): a run config is validated against :func:`metric_names` without
importing the audit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from deid.evaluation.attacker_registry import available_attackers
from deid.registry import RegistryError

__all__ = ["Metric", "register_metric", "metric", "metrics", "metric_names", "chance_level", "report_metrics",
           "study_metrics", "headline_names", "face_only_names", "ATTACKER"]

#: the placeholder a per-attacker metric's key carries: ``identity_acc_{attacker}``
ATTACKER = "{attacker}"
#: the placeholder a per-attribute metric's key carries (the attributes come with the data): ``attr_{attribute}_chance``
ATTRIBUTE = "{attribute}"

Kind = Literal["pct", "int", "f3", "f1"]
Chance = Literal["identity", "utility", "identity_rank5"]


@dataclass(frozen=True)
class Metric:
    """One audit figure.

    ``key``: its name in the audit's rows (``{attacker}`` in it: one per registered attacker).
    ``label``: the report's and the card's header; ``meaning``: one line saying what it measures.
    ``kind``: how a value is printed; ``better``: which way is better (``None``: neither, a description).
    ``chance``: the chance level it is read against: the identity or utility label's, or five guesses
    at identity (Rank-5). ``bounds``: the suffixes of the companions the audit writes beside it
    (``_lo``/``_hi``: a 95 % interval, ``_std``: a spread over repeats).
    ``short``: the terminal table's header (``None``: not shown there); ``report``: in the report's and
    the card's table; ``study``: the study table's header (``None``: not there); ``headline``: logged on
    the parent MLflow run as ``<method>.<key>`` (and its interval bounds); ``faces_only``: measured on
    real faces only (dlib)."""

    key: str
    label: str
    kind: Kind
    meaning: str
    better: Literal["lower", "higher"] | None = None
    chance: Chance | None = None
    bounds: tuple[str, ...] = ()
    short: str | None = None
    report: bool = True
    study: str | None = None
    headline: bool = False
    faces_only: bool = False

    @property
    def per_attacker(self) -> bool:
        return ATTACKER in self.key

    @property
    def per_attribute(self) -> bool:
        return ATTRIBUTE in self.key

    def names(self) -> list[str]:
        """The metric's name(s) as the audit writes them, companions included (none for a per-attribute
        metric: its names come with the data, :meth:`matches` recognises them)."""
        if self.per_attribute:
            return []
        keys = [self.key.replace(ATTACKER, a) for a in available_attackers()] if self.per_attacker else [self.key]
        return [k + s for k in keys for s in ("", *self.bounds)]

    def matches(self, name: str) -> bool:
        """Whether ``name`` is this metric (or a companion) as the audit writes it."""
        if not self.per_attribute:
            return name in self.names()
        head, tail = self.key.split(ATTRIBUTE)
        return any(name.startswith(head) and name.endswith(tail + s) and len(name) > len(head + tail + s)
                   for s in ("", *self.bounds))

    def study_header(self) -> str | None:
        if self.study is None:
            return None
        arrow = {"lower": " ↓", "higher": " ↑"}.get(self.better or "", "")
        return self.study + arrow


_METRICS: dict[str, Metric] = {}


def register_metric(m: Metric) -> Metric:
    """Add ``m`` to the table; a key registered twice is refused (one metric, one set of facts)."""
    if m.key in _METRICS:
        raise RegistryError(f"a metric named '{m.key}' is already registered")
    if m.short is not None and not m.report:
        raise ValueError(f"metric '{m.key}': a terminal column is also a report column (report=True)")
    _METRICS[m.key] = m
    return m


def metric(key: str) -> Metric | None:
    """The facts of ``key`` (a companion such as ``tstr_lo`` resolves to ``tstr``), or ``None``."""
    if key in _METRICS:
        return _METRICS[key]
    return next((m for m in _METRICS.values() if m.matches(key)), None)


def metrics() -> list[Metric]:
    """Every registered metric, in the order the tables show them."""
    return list(_METRICS.values())


def metric_names() -> tuple[str, ...]:
    """Every name the audit may write (per attacker, companions included): what a gate may name."""
    return tuple(dict.fromkeys(n for m in _METRICS.values() for n in m.names()))


def chance_level(key: str, row: dict) -> float | None:
    """The chance level ``key`` is read against, from a row that carries ``identity_chance`` / ``utility_chance``."""
    m = metric(key)
    if m is None or m.chance is None:
        return None
    if m.chance == "identity_rank5":
        c = row.get("identity_chance")
        return None if c is None else min(1.0, 5 * c)
    return row.get(f"{m.chance}_chance")


def report_metrics() -> list[Metric]:
    return [m for m in _METRICS.values() if m.report and not m.per_attacker and not m.per_attribute]


def study_metrics() -> list[Metric]:
    return [m for m in _METRICS.values() if m.study is not None]


def headline_names() -> tuple[str, ...]:
    """What each method's row logs on the parent MLflow run (with the interval bounds the audit writes)."""
    return tuple(n for m in _METRICS.values() if m.headline for n in m.names() if not n.endswith("_std"))


def face_only_names() -> frozenset[str]:
    return frozenset(n for m in _METRICS.values() if m.faces_only for n in m.names())


_I, _U = "identity", "utility"
for _m in (
    # -- privacy: informed attackers trained on the outputs, tested on held-out outputs ---------------------
    Metric("identity_acc_worst", "identity, worst attacker", "pct", "the strongest informed attacker's identity "
           "accuracy on held-out outputs; near chance means the outputs do not say who", "lower", _I, ("_lo", "_hi"),
           short="id worst", study="id acc, worst informed attacker", headline=True),
    Metric("identity_acc_{attacker}", "identity, attacker", "pct", "one attacker's identity accuracy", "lower", _I,
           ("_lo", "_hi"), report=False),
    Metric("identity_chance", "identity chance", "pct", "the largest identity's share of the test images: what a "
           "guess blind to the outputs scores", report=False, headline=True),
    Metric("identity_chance_min", "smallest identity's share", "pct", "the least a blind guess scores; an attacker "
           "significantly below it reads identity from what outputs exclude", report=False),
    # -- usefulness on real faces ---------------------------------------------------------------------------
    Metric("tstr", "utility on real faces, trained on output (TSTR)", "pct", "classifiers trained on the release "
           "read real test faces this well (the release user's figure)", "higher", _U, ("_lo", "_hi"), short="TSTR",
           study="utility on real faces, trained on anonymized (TSTR)", headline=True),
    Metric("tstr_{attacker}", "TSTR, classifier", "pct", "one classifier's TSTR", "higher", _U, report=False),
    Metric("trts", "utility on output, original-trained (TRTS)", "pct", "classifiers trained on the originals read "
           "the outputs this well: the label is drawn as on real faces", "higher", _U, ("_lo", "_hi"), short="TRTS",
           study="utility on anonymized, original-trained (TRTS)", headline=True),
    Metric("trts_cnn", "TRTS, CNN", "pct", "the original-trained CNN on the outputs", "higher", _U, report=False),
    Metric("trts_linear", "TRTS, linear", "pct", "the original-trained linear classifier on the outputs", "higher",
           _U, report=False),
    Metric("utility_acc_best", "utility, trained and tested on output (diagnostic)", "pct", "trained and tested on "
           "outputs; above the originals' while TSTR lags means the label is drawn as a code", "higher", _U,
           ("_lo", "_hi"), short="util(out)", study="utility acc, trained and tested on anonymized (diagnostic)",
           headline=True),
    Metric("utility_acc_{attacker}", "utility, classifier", "pct", "one classifier trained and tested on outputs",
           "higher", _U, ("_lo", "_hi"), report=False),
    Metric("utility_chance", "utility chance", "pct", "the largest label's share of the test images", report=False),
    Metric("utility_orig_clf_acc", "utility, original-trained", "pct", "the better of the original-trained "
           "classifiers on the outputs", "higher", _U, ("_lo", "_hi"), study="utility acc, original-trained clf"),
    Metric("utility_orig_clf_acc_cnn", "utility, original-trained CNN", "pct", "the original-trained CNN on the "
           "outputs", "higher", _U, ("_lo", "_hi"), report=False),
    Metric("utility_orig_clf_acc_linear", "utility, original-trained linear", "pct", "the original-trained linear "
           "classifier on the outputs", "higher", _U, ("_lo", "_hi"), report=False),
    Metric("tstr_retention", "TSTR kept of the original's (TRTR)", "pct", "TSTR over the same classifiers trained on "
           "the originals (TRTR); the usefulness gate reads its lower bound", "higher", bounds=("_lo",), headline=True),
    Metric("trts_retention", "TRTS kept of the original's", "pct", "TRTS over the originals' own accuracy",
           "higher", bounds=("_lo",), headline=True),
    Metric("sharpness_ratio", "sharpness ratio (Laplacian variance, median)", "f3", "the outputs' fine detail over "
           "the originals' (1: as sharp; low: blurred)", "higher", bounds=("_lo", "_hi"), short="sharp",
           study="sharpness ratio", headline=True),
    Metric("feature_frechet", "Fréchet ratio (identity features)", "f3", "the Fréchet distance of the outputs' "
           "identity-CNN features to the originals' over the originals' own between random halves (1: as close as "
           "real faces are to each other; high: unlike any face of the set); realism, not privacy", "lower",
           study="Fréchet ratio", headline=True),
    Metric("feature_frechet_yardstick", "Fréchet yardstick (identity features)", "f3", "the Fréchet distance "
           "between two random halves of the originals' identity-CNN features, the ratio's denominator",
           report=False),
    Metric("utility_retention", "utility retention", "pct", "trained-and-tested-on-outputs utility over the "
           "originals'", "higher"),
    # -- linkage: originals as the gallery, outputs as probes -------------------------------------------------
    Metric("linkage_rank1", "linkage Rank-1", "pct", "outputs whose nearest original (identity-CNN features) is "
           "their own person", "lower", _I, ("_std",), short="rank-1", study="linkage Rank-1", headline=True),
    Metric("linkage_rank5", "linkage Rank-5", "pct", "outputs whose own person is among the five nearest "
           "identities; chance is five guesses", "lower", "identity_rank5", ("_std",), study="linkage Rank-5"),
    Metric("linkage_dlib_rank1", "dlib Rank-1", "pct", "Rank-1 with dlib's face descriptor (real faces)", "lower",
           _I, ("_std",), study="dlib Rank-1", faces_only=True),
    Metric("linkage_dlib_rank5", "dlib Rank-5", "pct", "Rank-5 with dlib's face descriptor (real faces)", "lower",
           "identity_rank5", ("_std",), report=False, faces_only=True),
    # -- faces (dlib, real faces only) ---------------------------------------------------------------------
    Metric("faceness", "faceness", "pct", "outputs in which dlib finds a face", "higher", study="FCNS",
           faces_only=True),
    Metric("faces_kept", "faces kept", "pct", "of the test images in whose original dlib finds a face, the share "
           "in whose output it still finds one", "higher", bounds=("_lo", "_hi"), study="faces kept",
           headline=True, faces_only=True),
    Metric("dlib_frechet", "Fréchet ratio (dlib descriptor)", "f3", "the Fréchet ratio with dlib's descriptor "
           "in place of the identity CNN's features (real faces)", "lower", study="Fréchet ratio, dlib",
           faces_only=True),
    Metric("dlib_frechet_yardstick", "Fréchet yardstick (dlib descriptor)", "f3", "the Fréchet distance between "
           "two random halves of the originals' dlib descriptors", report=False, faces_only=True),
    Metric("deid", "DEID", "pct", "outputs dlib judges a different person from their input", "higher",
           study="DEID", faces_only=True),
    Metric("div", "DIV", "pct", "output pairs of different inputs dlib judges different people", "higher",
           study="DIV", faces_only=True),
    # -- diversity and readability ---------------------------------------------------------------------------
    Metric("unseen_retention", "unseen attributes kept (above chance)", "pct", "attributes no method used, read "
           "from the outputs, as a share of the originals' margin above chance", "higher", short="unseen",
           study="unseen attributes kept", headline=True),
    Metric("attr_{attribute}_acc_best", "unseen attribute, best classifier", "pct", "an attribute no method used, "
           "read from the outputs by classifiers trained on them", bounds=("_lo", "_hi"), report=False),
    Metric("attr_{attribute}_chance", "unseen attribute chance", "pct", "the attribute's largest value's share",
           report=False),
    Metric("diversity_pixels", "diversity ratio (pixels)", "f3", "pixel spread among same-label outputs over the "
           "originals'", "higher", short="div px", study="diversity", headline=True),
    Metric("diversity_features", "diversity ratio (identity features)", "f3", "identity-feature spread among "
           "same-label outputs over the originals'", "higher"),
    Metric("distinct_outputs", "distinct outputs", "pct", "the share of distinct outputs (at 8 bits)", "higher",
           study="distinct", headline=True),
    Metric("k_anonymity", "k", "int", "the fewest identities sharing one identical output (1: some output "
           "belongs to one identity alone)", "higher", short="k", study="k-anonymity"),
    Metric("k_attacker", "k, attackers' view (1 / worst upper bound)", "f1", "one over the worst attacker's upper "
           "bound: how many people an output could be, as the attackers see it", "higher", short="k att"),
    Metric("ssim", "SSIM", "f3", "structural similarity of each output to its own input", short="ssim",
           study="SSIM"),
    Metric("psnr", "PSNR dB", "f1", "peak signal-to-noise ratio of each output against its own input"),
    # -- bookkeeping -----------------------------------------------------------------------------------------
    Metric("n_train", "training images", "int", "images the attackers trained on", report=False),
    Metric("n_test", "test images", "int", "images the attackers were tested on", report=False),
    Metric("n_eval", "pooled test images", "int", "images tested once each when the audit pools folds",
           report=False),
    Metric("seconds", "audit seconds", "f1", "wall time of this row's audit", report=False),
):
    register_metric(_m)
del _m
