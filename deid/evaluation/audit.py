"""The audit: every protocol over the original data, the baselines and each method, in one place.

Pure: takes images and labels, returns metrics and the arrays plots are made from. Tracking
(MLflow) and orchestration live in ``tasks/`` and ``flows/``.

Metric names (per method):
- ``identity_acc_<attacker>``, ``identity_acc_worst``, ``identity_chance``: informed attackers
  trained on the method's training outputs, tested on its test outputs (lower is more private).
- ``utility_acc_<attacker>``, ``utility_acc_best``, ``utility_chance``: the same for the utility
  label; ``utility_orig_clf_acc_<cnn|linear>``: classifiers trained on original images applied
  to the method's test outputs (``utility_orig_clf_acc`` the better of the two);
  ``utility_retention``: ``utility_acc_best`` over the original data's.
- ``linkage_rank1``/``linkage_rank5`` (± ``_std``): originals as gallery, outputs as probes, with
  features of an identity CNN trained on original training images; ``linkage_dlib_*`` the same
  with dlib's descriptor (real faces only).
- ``faceness``, ``faces_kept`` (of the test images dlib finds a face in, the outputs it still finds one
  in, with a Wilson interval), ``deid``, ``div`` (real faces only), ``k_anonymity`` (identical outputs shared by k
  identities), ``k_attacker`` (``1 /`` the worst attacker's upper bound: the k a distribution-level
  guarantee promises, measured), ``ssim``, ``psnr``.
- ``tstr``/``trts`` (and per classifier, intervals, ``_retention`` against the reference row) and
  ``sharpness_ratio``: usefulness on real faces and readability (:mod:`deid.evaluation.transfer`).
- ``feature_frechet`` (and ``_yardstick``): the Fréchet distance of the outputs' identity-CNN features
  to the originals' over the originals' halves' own (:mod:`deid.evaluation.frechet`); ``dlib_frechet``
  the same with dlib's descriptor (real faces only).
- ``identity_chance_min``: the smallest identity's share, the least a guess blind to the outputs
  scores; an attacker significantly below it reads identity from what the outputs exclude.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deid.data import ImageSet
from deid.errors import EvaluationError
from deid.evaluation.attacker_registry import get_attacker
from deid.evaluation.attackers import AttackerConfig, Gallery, check_split_labels, train_attackers, uses_gallery
from deid.evaluation.audit_config import AUDIT_METRICS, AuditConfig
from deid.evaluation.diversity import diversity_ratio
from deid.evaluation.fidelity import fidelity
from deid.evaluation.frechet import frechet_ratio
from deid.evaluation.intervals import add_intervals
from deid.evaluation.linkage import linkage
from deid.evaluation.transfer import sharpness_ratio, transfer_metrics, transfer_retention
from deid.evaluation.unseen import unseen_attributes, unseen_retention
from deid.pixels import chunks, is_lazy, map_pixels

__all__ = ["AuditConfig", "MethodAudit", "AuditResult", "audit", "merge_audits", "audit_folds", "ORIGINAL",
           "AUDIT_METRICS"]

ORIGINAL = "original"
NEGATIVE_CONTROL = "blackout"

@dataclass
class MethodAudit:
    method: str
    metrics: dict[str, float]
    confusion: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # "identity_cnn" -> matrix
    classes: dict[str, list[str]] = field(default_factory=dict, repr=False)
    cmc: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)


@dataclass
class AuditResult:
    dataset: str
    methods: dict[str, MethodAudit]
    config: dict
    real_faces: bool

    def table(self) -> list[dict]:
        return [{"method": m, **a.metrics} for m, a in self.methods.items()]


def _check_aligned(name: str, original: ImageSet, anon: ImageSet) -> ImageSet:
    """``anon`` reordered to ``original``'s rows; errors name the method and what is wrong."""
    if len(anon) != len(original):
        raise EvaluationError(f"method '{name}': {len(anon)} de-identified rows for {len(original)} originals")
    if set(anon.image_id) != set(original.image_id):
        missing = sorted(set(original.image_id) - set(anon.image_id))[:3]
        raise EvaluationError(f"method '{name}': de-identified rows do not match the originals' image ids "
                              f"(e.g. missing {missing})")
    anon = anon.align_to(original.image_id)
    if anon.X.shape != original.X.shape:
        raise EvaluationError(f"method '{name}': images of shape {anon.X.shape[1:]}, originals {original.X.shape[1:]}")
    if not is_lazy(anon.X) and not all(np.isfinite(c).all() for _, c in chunks(anon.X)):  # uint8 on disk is finite
        raise EvaluationError(f"method '{name}': de-identified images contain NaN or infinite pixels")
    if not (np.array_equal(anon.identity, original.identity) and np.array_equal(anon.split, original.split)):
        raise EvaluationError(f"method '{name}': identity or split labels differ from the originals' for the same ids")
    return anon


def audit_folds(y: np.ndarray, folds: int, seed: int, groups: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) row indices of ``folds`` folds stratified by ``y``. With ``groups`` (``None`` for an
    image in no group) a group never straddles two folds (``StratifiedGroupKFold``): frames of one
    recording are near copies, and one in the training fold would let an attacker recognise its twin."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if groups is None or all(g is None for g in groups):
        return list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
    g = np.asarray([f"g:{v}" if v is not None else f"i:{i}" for i, v in enumerate(groups)], dtype=object)
    return list(StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y, g))


def _gallery(originals, public, train, test) -> Gallery:
    """The :class:`Gallery` of an attack whose training rows are ``train`` and test rows ``test``."""
    if public is None:
        return Gallery(originals[train])
    return Gallery(originals[train], public[train], public[test])


def _pooled_attack(X: np.ndarray, y: np.ndarray, label: str, folds: int, acfg: AttackerConfig, where: str,
                   seed: int, groups: np.ndarray | None = None, gallery: tuple | None = None):
    """Every attacker trained on k-1 folds and tested on the k-th, predictions pooled over the folds:
    each image is tested once, so the interval is over all of them. Stratified by ``y``; a group never
    straddles two folds (:func:`audit_folds`). ``gallery``: (originals, published label or ``None``),
    row-aligned with ``X``, for the attackers that hold the originals (each fold's training rows)."""
    y = np.asarray(y)
    _, counts = np.unique(y, return_counts=True)
    if counts.min() < folds:
        raise EvaluationError(f"{where}: audit.folds={folds} but a {label} class has only {counts.min()} images")
    correct: dict[str, float] = {}
    confusion: dict[str, np.ndarray] = {}
    first = None
    for tr, te in audit_folds(y, folds, seed, groups):
        r = train_attackers(X[tr], y[tr], X[te], y[te], label=label, cfg=acfg, where=f"{where} (fold)",
                            gallery=None if gallery is None else _gallery(*gallery, tr, te))
        first = first or r
        for a, c in r.correct.items():
            correct[a] = correct.get(a, 0) + c
            if r.classes == first.classes:
                confusion[a] = confusion.get(a, 0) + r.confusion[a]
    _, counts = np.unique(y, return_counts=True)
    first.accuracy = {a: c / len(y) for a, c in correct.items()}
    first.correct, first.n_test = correct, len(y)
    first.confusion = confusion
    first.chance = float(counts.max() / len(y))
    return first


def _code_digest() -> str:
    """A digest of the code a row's figures come from (this package and the networks it trains)."""
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    here = Path(__file__).resolve().parent
    for f in sorted([*here.glob("*.py"), *(here.parent / "models").glob("*.py"), here.parent / "pixels.py"]):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


class _RowCache:
    """Finished rows of an audit on disk, so an interrupted audit (a killed run, a machine that went
    down) resumes at the row it was on. A row is keyed by everything its figures depend on: the
    original and output pixel files (their paths name their table versions) and rows, the audit's
    settings, the dataset, and the audit's code; anything else changed means a new key."""

    def __init__(self, root: str | Path, original: ImageSet, cfg: AuditConfig, dataset: str, face: bool,
                 unseen: list[str]):
        import hashlib
        import json

        self.root = Path(root)
        base = json.dumps({"original": original.X.key(), "cfg": cfg.model_dump(mode="json"), "dataset": dataset,
                           "face": face, "unseen": unseen, "code": _code_digest()}, sort_keys=True)
        self._base = hashlib.blake2b(base.encode(), digest_size=16).hexdigest()

    def _path(self, name: str, out: ImageSet) -> Path:
        import hashlib

        h = hashlib.blake2b(f"{self._base}|{name}|{out.X.key()}".encode(), digest_size=16).hexdigest()
        return self.root / f"{h}.json"

    def get(self, name: str, out: ImageSet) -> "MethodAudit | None":
        """The row kept for ``name``'s outputs, or None (absent, unreadable or not a row of this audit:
        then it is computed again). A row is plain JSON read as data: nothing in the file can run."""
        p = self._path(name, out)
        if not p.exists():
            return None
        try:
            row = row_from_json(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError):
            return None
        return row if row.method == name else None

    def put(self, name: str, out: ImageSet, row: "MethodAudit") -> None:
        from data_contracts.atomic import atomic_file

        with atomic_file(self._path(name, out)) as tmp:
            tmp.write_text(row_to_json(row), encoding="utf-8")


def _array(v: dict) -> np.ndarray:
    if not isinstance(v, dict) or set(v) != {"dtype", "shape", "data"}:
        raise ValueError("not an array record")
    dtype = np.dtype(v["dtype"])
    if dtype.kind not in "biuf":  # numbers only: an object array could hold anything
        raise ValueError(f"array of dtype {dtype} in a row record")
    return np.asarray(v["data"], dtype=dtype).reshape([int(d) for d in v["shape"]])


def _record(a: np.ndarray) -> dict:
    a = np.asarray(a)
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.ravel().tolist()}


def row_to_json(row: MethodAudit) -> str:
    """An audit row as JSON: metrics, confusion matrices, class names and CMC curves."""
    import json

    return json.dumps({"method": row.method, "metrics": {k: float(v) for k, v in row.metrics.items()},
                       "confusion": {k: _record(v) for k, v in row.confusion.items()},
                       "classes": {k: [str(c) for c in v] for k, v in row.classes.items()},
                       "cmc": {k: [_record(a) for a in v] for k, v in row.cmc.items()}})


def row_from_json(text: str) -> MethodAudit:
    """The inverse of :func:`row_to_json`; every field is checked for its type (ValueError/TypeError)."""
    import json

    d = json.loads(text)
    if not isinstance(d, dict) or not isinstance(d.get("method"), str):
        raise ValueError("not an audit row")
    metrics = {str(k): float(v) for k, v in d["metrics"].items()}
    confusion = {str(k): _array(v) for k, v in d["confusion"].items()}
    classes = {str(k): [str(c) for c in v] for k, v in d["classes"].items()}
    cmc = {}
    for k, v in d["cmc"].items():
        if not isinstance(v, list) or len(v) != 2:
            raise ValueError("a CMC curve is two arrays")
        cmc[str(k)] = (_array(v[0]), _array(v[1]))
    return MethodAudit(d["method"], metrics, confusion, classes, cmc)

@dataclasses.dataclass
class _AuditRun:
    """What every row of one audit is judged with: the settings, the originals and their splits, the
    attacker pool and the references (None when every row was kept from an earlier audit)."""

    cfg: AuditConfig
    original: ImageSet
    acfg: AttackerConfig
    train_mask: np.ndarray
    test_mask: np.ndarray
    util_ok: bool
    face: bool
    held: bool
    unseen: list[str]
    test: ImageSet
    refs: tuple | None

    @property
    def pool_mask(self) -> np.ndarray:
        return self.train_mask | self.test_mask

    def attack(self, out_X: np.ndarray, y: np.ndarray, y_test: np.ndarray, label: str, where: str, pretrained,
               also: dict | None = None, public: np.ndarray | None = None):
        """The informed attackers (pooled over folds when configured), and with ``also`` the correct
        counts of models trained on the training split's outputs on other test sets (TSTR). Attackers
        that hold the originals get those of their training rows, and ``public``, the label published
        with every image (the utility label, when ``y`` is identity)."""
        tr, te, pool, orig = self.train_mask, self.test_mask, self.pool_mask, self.original
        if not self.cfg.folds:
            gal = _gallery(orig.X, public, tr, te) if self.held else None
            return train_attackers(out_X[tr], y[tr], out_X[te], y_test, label=label, cfg=self.acfg, where=where,
                                   pretrained=pretrained, also=also, gallery=gal)
        r = _pooled_attack(out_X[pool], y[pool], label, self.cfg.folds, self.acfg, where, self.cfg.seed,
                           None if orig.group is None else orig.group[pool],
                           (orig.X[pool], None if public is None else public[pool]) if self.held else None)
        if also:
            r.also = train_attackers(out_X[tr], y[tr], out_X[te], y_test, label=label, cfg=self.acfg,
                                     where=f"{where} (train on outputs, test on originals)", pretrained=pretrained,
                                     also=also).also
        return r

    def attack_unseen(self, Xtr, ytr, Xte, yte, label):
        ucfg = dataclasses.replace(self.acfg, attackers=tuple(self.cfg.unseen_attackers))
        return train_attackers(Xtr, ytr, Xte, yte, label=label, cfg=ucfg, where="unseen attributes")


def _audit_row(a: "_AuditRun", name: str, out: ImageSet, say, stage) -> MethodAudit:
    """One method's row: its attackers, transfer figures, linkage, realism, diversity, unseen attributes
    and fidelity, against the references in ``a``; ``stage(name, what)`` reports each stage."""
    from deid.clustering.anonymity import k_anonymity

    cfg, original, test, test_mask = a.cfg, a.original, a.test, a.test_mask
    ref_id, _, _, orig_feat, *_ = a.refs
    t0 = time.perf_counter()
    say(f"auditing '{name}'")
    stage(name, "identity attackers", advance=False)
    m: dict[str, float] = {"n_train": float(a.train_mask.sum()), "n_test": float(test_mask.sum())}
    ma = MethodAudit(name, m)
    Xte = out.X[test_mask]
    _identity_figures(a, ma, out)
    stage(name, "utility attackers")
    if a.util_ok:
        _utility_figures(a, ma, out, Xte)
    stage(name, "linkage")
    out_feat = ref_id.features(Xte)  # for linkage and, with the originals', for diversity
    link = linkage(orig_feat, out_feat, test.identity, repeats=cfg.linkage_repeats, seed=cfg.seed)
    m.update(linkage_rank1=link.rank1, linkage_rank1_std=link.rank1_std, linkage_rank5=link.rank5,
             linkage_rank5_std=link.rank5_std)
    ma.cmc["critic"] = (link.cmc, link.cmc_std)
    m.update(frechet_ratio(orig_feat, out_feat, seed=cfg.seed))
    if a.face:
        _face_figures(a, ma, Xte)
    stage(name, "diversity")
    groups = test.label if a.util_ok else np.zeros(len(test), dtype=object)
    m.update(diversity_ratio(test.X, Xte, groups, embeddings=(orig_feat, out_feat), random_state=cfg.seed))
    del out_feat
    stage(name, "unseen attributes")
    if a.unseen:
        m.update(unseen_attributes(original, out.X, a.train_mask, test_mask, a.unseen, a.attack_unseen))
    stage(name, "fidelity")
    m["k_anonymity"] = float(k_anonymity(out.X, original.identity))
    m.update(fidelity(test.X, Xte))
    m.update(sharpness_ratio(test.X, Xte, seed=cfg.seed))
    m["seconds"] = time.perf_counter() - t0
    return ma


def _identity_figures(a: "_AuditRun", ma: MethodAudit, out: ImageSet) -> None:
    """The identity attackers' accuracies, confusion matrices and chance (also the smallest identity's share)."""
    name, m, original, is_ref = ma.method, ma.metrics, a.original, ma.method == ORIGINAL
    # the reference classifiers are the original row's CNN attackers: reuse them
    ident = a.attack(out.X, original.identity, a.test.identity, "identity", f"method '{name}'",
                     {"cnn": a.refs[0]} if is_ref else None, public=original.label if a.util_ok else None)
    if a.cfg.folds:
        m["n_eval"] = float(a.pool_mask.sum())
    for att, v in ident.accuracy.items():
        m[f"identity_acc_{att}"] = v
        ma.confusion[f"identity_{att}"] = ident.confusion[att]
    m["identity_acc_worst"], m["identity_chance"] = ident.worst, ident.chance
    _, id_counts = np.unique(original.identity[a.pool_mask if a.cfg.folds else a.test_mask], return_counts=True)
    m["identity_chance_min"] = float(id_counts.min() / id_counts.sum())  # the least a blind guess scores
    ma.classes["identity"] = ident.classes


def _utility_figures(a: "_AuditRun", ma: MethodAudit, out: ImageSet, Xte: np.ndarray) -> None:
    """The utility attackers' accuracies and chance, TSTR, and the original-trained judges on the outputs (TRTS)."""
    name, m, test, is_ref = ma.method, ma.metrics, a.test, ma.method == ORIGINAL
    _, ref_util, ref_util_clfs, *_ = a.refs
    util = a.attack(out.X, a.original.label, test.label, "utility", f"method '{name}'",
                    {"cnn": ref_util} if is_ref else None, also={"tstr": (test.X, test.label)})
    m.update(transfer_metrics("tstr", util.also.get("tstr", {}), len(test)))
    for att, v in util.accuracy.items():
        m[f"utility_acc_{att}"] = v
        ma.confusion[f"utility_{att}"] = util.confusion[att]
    m["utility_acc_best"] = max(util.accuracy.values())
    m["utility_chance"] = util.chance
    for cname, clf in ref_util_clfs.items():
        m[f"utility_orig_clf_acc_{cname}"] = float((clf.predict(Xte) == test.label).mean())
    m["utility_orig_clf_acc"] = max(m[f"utility_orig_clf_acc_{c}"] for c in ref_util_clfs)
    m.update(transfer_metrics("trts", {c: round(m[f"utility_orig_clf_acc_{c}"] * len(test))
                                       for c in ref_util_clfs}, len(test)))
    ma.classes["utility"] = util.classes


def _face_figures(a: "_AuditRun", ma: MethodAudit, Xte: np.ndarray) -> None:
    """The real-face figures from dlib's descriptor: linkage, faceness, faces kept, de-identification, diversity."""
    from deid.evaluation.facemetrics import deid_rate, describe, diversity, faceness, faces_found, faces_kept

    cfg, m, test = a.cfg, ma.metrics, a.test
    *_, cache, orig_desc, orig_found = a.refs
    desc = describe(Xte, cache)
    dl = linkage(orig_desc, desc, test.identity, repeats=cfg.linkage_repeats, seed=cfg.seed)
    found = orig_found if ma.method == ORIGINAL else faces_found(Xte)  # each image detected once
    m.update(linkage_dlib_rank1=dl.rank1, linkage_dlib_rank1_std=dl.rank1_std,
             linkage_dlib_rank5=dl.rank5, linkage_dlib_rank5_std=dl.rank5_std,
             faceness=faceness(found=found), deid=deid_rate(orig_desc, desc), div=diversity(desc, seed=cfg.seed))
    m.update(faces_kept(orig_found, found))
    m.update(frechet_ratio(orig_desc, desc, prefix="dlib_frechet", seed=cfg.seed))
    ma.cmc["dlib"] = (dl.cmc, dl.cmc_std)


def _check_splits(original: ImageSet, cfg: AuditConfig) -> tuple[np.ndarray, np.ndarray, bool]:
    """The training and test masks, and whether every image has a utility label; an
    :class:`EvaluationError` for splits the audit cannot judge (missing, unseen labels, a single class)."""
    train_mask = np.isin(original.split, cfg.train_splits)
    test_mask = original.split == cfg.test_split
    if not train_mask.any() or not test_mask.any():
        raise EvaluationError(f"audit: need rows in splits {cfg.train_splits} and '{cfg.test_split}'; "
                              f"found splits {sorted(set(original.split))}")
    util_ok = not any(v is None for v in original.label)
    check_split_labels(original.identity[train_mask], original.identity[test_mask], "identity", "audit")
    if util_ok:
        check_split_labels(original.label[train_mask], original.label[test_mask], "utility", "audit")
    for label, y in (("identity", original.identity), ("utility", original.label if util_ok else None)):
        if y is not None and len(set(y[test_mask].tolist())) < 2:
            raise EvaluationError(f"audit: the test split has a single {label} class ({y[test_mask][0]!r}); "
                                  "every method would score 100% on it")
    return train_mask, test_mask, util_ok


def _unseen_attributes(original: ImageSet, cfg: AuditConfig) -> list[str]:
    """The attributes no method was given that the audit checks are kept; named ones must be recorded."""
    recorded = sorted(original.attributes or {})
    unseen = recorded if cfg.unseen_attributes == "auto" else list(cfg.unseen_attributes)
    if missing := sorted(set(unseen) - set(recorded)):
        raise EvaluationError(f"audit.unseen_attributes: {missing} are not recorded for every image; "
                              f"recorded: {recorded}")
    return unseen


def _negative_control(original: ImageSet, scratch: str | Path | None) -> ImageSet:
    """The negative control's outputs (blackout), which every audit runs; on disk beside the originals
    (or in ``scratch``) when the originals are on disk."""
    from deid.methods import get_method

    control = get_method(NEGATIVE_CONTROL).fit(np.asarray(original.X[:1]))
    if is_lazy(original.X):
        where = Path(scratch) if scratch is not None else original.X.path.parent
        X_control = map_pixels(control.transform, original.X, where / f"{NEGATIVE_CONTROL}-{original.X.key()}.npy")
    else:
        X_control = control.transform(original.X)
    return ImageSet(X_control, original.image_id, original.split, original.identity, original.label)


def _add_retentions(results: dict[str, MethodAudit], unseen: list[str]) -> None:
    """Each row's figures against the reference row's (utility, transfer and unseen-attribute retention),
    then every figure's interval."""
    base = results[ORIGINAL].metrics.get("utility_acc_best")
    for ma in results.values():
        ref = results[ORIGINAL].metrics  # the reference row's, with its intervals once it has been through
        if base:  # capped: a method cannot be more useful than the data it came from
            ma.metrics["utility_retention"] = min(1.0, ma.metrics["utility_acc_best"] / base)
        ma.metrics.update(transfer_retention(ma.metrics, ref))
        if unseen and (r := unseen_retention(ma.metrics, ref, unseen)) is not None:
            ma.metrics["unseen_retention"] = r
        ma.metrics = add_intervals(ma.metrics)


def audit(original: ImageSet, anonymized: dict[str, ImageSet], cfg: AuditConfig = AuditConfig(), *,
          dataset: str = "?", real_faces: bool = False, descriptor_cache: str | Path | None = None,
          progress=None, progress_bar: bool = False, scratch: str | Path | None = None,
          row_cache: str | Path | None = None) -> AuditResult:
    """Audit ``anonymized`` (method name → outputs row-aligned by ``image_id``) against ``original``.

    The original data is audited as the reference row :data:`ORIGINAL`. ``progress`` is an
    optional callable ``progress(message)``; ``progress_bar`` shows a bar over methods and stages.

    The sets' images may be in memory or on disk (:func:`deid.data.open_image_set`); every protocol
    reads them a chunk at a time, so with images on disk memory stays flat in their number. Images
    the audit makes itself (the negative control) then go to ``scratch`` (default: beside the originals).

    ``row_cache``: a folder where each finished row is kept (sets on disk only), so a rerun after an
    interruption audits only the rows it had not finished (:class:`_RowCache`), and an audit whose every
    row was audited before on the same data, settings and code (a scheduled run on unchanged data) trains
    no reference classifier at all.
    """
    say = progress or (lambda msg: None)
    train_mask, test_mask, util_ok = _check_splits(original, cfg)
    face = cfg.face_metrics == "on" or (cfg.face_metrics == "auto" and real_faces)
    acfg = _attacker_pool(cfg, face, descriptor_cache)
    held = any(uses_gallery(a) for a in acfg.attackers)  # an attacker holds the originals (a Gallery)
    outputs = {ORIGINAL: original}
    for name, anon in anonymized.items():
        if name == ORIGINAL:
            raise EvaluationError(f"'{ORIGINAL}' is the reference row's name; a method may not use it")
        outputs[name] = _check_aligned(name, original, anon)
    unseen = _unseen_attributes(original, cfg)
    if NEGATIVE_CONTROL not in outputs:  # the negative control runs in every audit
        outputs[NEGATIVE_CONTROL] = _negative_control(original, scratch)
    rows = None
    if row_cache is not None and is_lazy(original.X) and all(is_lazy(o.X) for o in outputs.values()):
        rows = _RowCache(row_cache, original, cfg, dataset, face, unseen)
    kept = {name: rows.get(name, out) for name, out in outputs.items()} if rows is not None else {}
    test = original.subset(test_mask)
    refs = None
    if all(kept.get(name) is not None for name in outputs):
        say("every row was audited before on the same data, settings and code: kept, no reference trained")
    else:
        refs = _references(original, train_mask, test, acfg, cfg, util_ok, face, descriptor_cache, say)
    run = _AuditRun(cfg, original, acfg, train_mask, test_mask, util_ok, face, held, unseen, test, refs)
    results = _audit_rows(run, outputs, kept, rows, say, progress_bar)
    _add_retentions(results, unseen)
    return AuditResult(dataset=dataset, methods=results, config=cfg.model_dump(), real_faces=face)


def _attacker_pool(cfg: AuditConfig, face: bool, descriptor_cache: str | Path | None) -> AttackerConfig:
    """The audit's attackers: the configured pool, joined by the pretrained recogniser where faces are judged."""
    acfg = cfg.attacker_config()
    if face:  # the pretrained recogniser joins the pool where the dlib linkage runs, sharing its descriptor cache
        acfg = dataclasses.replace(acfg, attackers=tuple(dict.fromkeys([*acfg.attackers, "dlib-descriptor"])),
                                   descriptor_cache=None if descriptor_cache is None else str(descriptor_cache))
    return acfg


def _audit_rows(run: _AuditRun, outputs: dict[str, ImageSet], kept: dict[str, MethodAudit | None],
                rows: _RowCache | None, say, progress_bar: bool) -> dict[str, MethodAudit]:
    """Every output's row, kept from an earlier audit or audited now (and kept), with a bar over rows and stages."""
    from tqdm.auto import tqdm

    results: dict[str, MethodAudit] = {}
    stages = ("identity attackers", "utility attackers", "linkage", "diversity", "unseen attributes", "fidelity")
    bar = tqdm(total=len(outputs) * len(stages), desc="audit", unit="stage", disable=not progress_bar)

    def stage(name: str, what: str, advance: bool = True) -> None:
        bar.set_postfix_str(f"{name}: {what}", refresh=not advance)
        if advance:
            bar.update(1)

    for name, out in outputs.items():
        if (done := kept.get(name)) is not None:
            say(f"'{name}': audited before on the same data, settings and code; kept")
            results[name] = done
            bar.update(len(stages))
            continue
        results[name] = ma = _audit_row(run, name, out, say, stage)
        if rows is not None:
            rows.put(name, out, ma)
        bar.update(1)
    bar.close()
    return results


def _references(original: ImageSet, train_mask: np.ndarray, test: ImageSet, acfg, cfg: AuditConfig, util_ok: bool,
                face: bool, descriptor_cache, say):
    """The audit's reference classifiers, trained on the original training images, and what every row
    compares with: (identity CNN, utility CNN, original-trained utility judges, the identity CNN's features
    of the original test images, the descriptor cache, their dlib descriptors, where dlib finds a face)."""
    say("training reference classifiers on original images")
    # The reference classifiers are built as the CNN attacker is, so the original row reuses them.
    ref_id = get_attacker("cnn", acfg).fit(original.X[train_mask], original.identity[train_mask])
    ref_util = None
    ref_util_clfs = {}
    if util_ok:  # original-trained utility judges: the CNN and, for small sets where it cannot learn, a linear one
        from deid.evaluation.attackers import LinearPixelClassifier

        ref_util = get_attacker("cnn", acfg).fit(original.X[train_mask], original.label[train_mask])
        ref_util_clfs = {"cnn": ref_util, "linear": LinearPixelClassifier(cfg.pca_components, cfg.seed).fit(
            original.X[train_mask], original.label[train_mask])}
    orig_feat = ref_id.features(test.X)
    cache = orig_desc = orig_found = None
    if face:
        from deid.evaluation.facemetrics import DescriptorCache, describe, faces_found

        cache = DescriptorCache(descriptor_cache)
        orig_desc = describe(test.X, cache)
        orig_found = faces_found(test.X)  # once: the reference row's faceness and every row's faces_kept
    return ref_id, ref_util, ref_util_clfs, orig_feat, cache, orig_desc, orig_found


def audit_tables(images_dir: str | Path, anonymized: dict[str, str | Path], cfg: AuditConfig, *,
                 pixel_cache: str | Path, dataset: str = "?", real_faces: bool = False,
                 descriptor_cache: str | Path | None = None, row_cache: str | Path | None = None,
                 progress=None, progress_bar: bool = False) -> AuditResult:
    """:func:`audit` of tables on disk: the originals' ``images`` table and each method's ``anonymized``
    table (label → folder), decoded once into ``pixel_cache`` and read a chunk at a time."""
    from deid.data import open_image_set

    original = open_image_set(images_dir, pixel_cache)
    outs = {name: open_image_set(path, pixel_cache, anonymized=True) for name, path in anonymized.items()}
    return audit(original, outs, cfg, dataset=dataset, real_faces=real_faces, descriptor_cache=descriptor_cache,
                 progress=progress, progress_bar=progress_bar, scratch=pixel_cache, row_cache=row_cache)


def merge_audits(parts: list[AuditResult], order: list[str] | None = None) -> AuditResult:
    """Audits of the same originals under the same settings, each of some of the methods (run at once
    on several workers), as one audit: every row once, in the order the parts give them. Each part
    has its own reference row (:data:`ORIGINAL`) and negative control; they are computed the same way
    from the same data, and the first part's are kept. ``order``: the method names in the order the
    rows should take (after the reference row); rows it does not name follow."""
    if not parts:
        raise EvaluationError("merge_audits: no audits to merge")
    first = parts[0]
    for p in parts[1:]:
        if (p.dataset, p.config, p.real_faces) != (first.dataset, first.config, first.real_faces):
            raise EvaluationError("merge_audits: the parts were audited on different data or settings")
    methods: dict[str, MethodAudit] = {}
    for p in parts:
        for name, row in p.methods.items():
            methods.setdefault(name, row)
    first_names = [ORIGINAL, *(order or [])]
    names = [n for n in first_names if n in methods] + [n for n in methods if n not in first_names]
    methods = {n: methods[n] for n in names}
    return AuditResult(dataset=first.dataset, methods=methods, config=first.config, real_faces=first.real_faces)
