"""The audit task, and the one that turns its result into figures and the HTML report."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from data_contracts.atomic import atomic_file
from deid.audit_dask import audit_on_dask
from deid.data import ImageSet, open_image_set
from deid.evaluation.audit import ORIGINAL, AuditConfig, AuditResult, audit_tables
from deid.evaluation.gates import AuditJudgement, GateConfig, gate_region, judge_audit
from deid.faces_dask import DaskConfig
from deid.reporting.html import render_report
from deid.reporting.plots import cmc_plot, confusion_plot, privacy_utility_plot, sample_grid

__all__ = ["audit", "judge_and_plot", "write_report"]


@task(tags=["compute-heavy"], task_run_name="audit {dataset}")
def audit(images_dir: str, anonymized: dict[str, str], cfg: AuditConfig, dataset: str, real_faces: bool,
          descriptor_cache: str | None, pixel_cache: str, row_cache: str | None = None,
          dask: DaskConfig | None = None) -> AuditResult:
    """The audit of every method's output (``anonymized``: label → table folder) against the originals.

    The images stay on disk (decoded once into ``pixel_cache``) and are read a chunk at a time; each
    finished row is kept in ``row_cache``, so a rerun after an interruption resumes at its row. With
    ``dask`` (the run's cluster) and more than one method, the rows are split over its workers
    (:func:`deid.audit_dask.audit_on_dask`) into the same audit."""
    log = get_run_logger()
    if dask is not None and len(anonymized) > 1:
        return audit_on_dask(images_dir, anonymized, cfg, dask=dask, dataset=dataset, real_faces=real_faces,
                             pixel_cache=pixel_cache, descriptor_cache=descriptor_cache, row_cache=row_cache,
                             say=log.info)
    return audit_tables(images_dir, anonymized, cfg, pixel_cache=pixel_cache, dataset=dataset,
                        real_faces=real_faces, descriptor_cache=descriptor_cache, progress=log.info,
                        progress_bar=True, row_cache=row_cache)


@task
def judge_and_plot(result: AuditResult, images_dir: str, anonymized: dict[str, str], gates: GateConfig, out_dir: str,
                   title: str, pixel_cache: str, data_problems: list[str] | None = None
                   ) -> tuple[AuditJudgement, list[tuple[str, str]]]:
    """The audit judged (itself first, with ``data_problems`` the data's checks found, then every method)
    and its figures; returns the judgement and (caption, path) per figure."""
    out = Path(out_dir)
    judgement = judge_audit({m: a.metrics for m, a in result.methods.items()}, gates,
                            data_problems=data_problems or ())
    original = open_image_set(images_dir, pixel_cache).of_split("test")  # the audit's decoded pixels
    pick, by_label = _sample_rows(original)
    rows, faces = _sample_images(original, anonymized, pixel_cache, pick, by_label)
    figs: list[tuple[str, Path]] = []

    def figure(caption: str, draw) -> None:
        """One figure; a figure that fails is logged and left out, never the audit's figures."""
        try:
            figs.append((caption, draw()))
        except Exception as exc:  # noqa: BLE001 - a plot must not lose the audit
            get_run_logger().warning("figure left out (%s): %s: %s", caption.split(":")[0], type(exc).__name__, exc)

    figure("Samples: each column one test image, each row a method",
           lambda: sample_grid(rows, out / "samples.png", labels=[str(e) for e in original.label[pick]]))
    if faces:
        figure("Faces by label: two test images of each label (columns), the originals on top and each method's "
               "outputs below them — what a person reads in the release",
               lambda: sample_grid(faces, out / "faces.png", labels=[str(e) for e in original.label[by_label]]))
    pts = {m: (a.metrics["identity_acc_worst"], a.metrics.get("tstr", float("nan"))) for m, a in result.methods.items()}
    ref = result.methods[ORIGINAL].metrics
    figure("Privacy–utility: worst informed attacker against utility on real faces (TSTR: trained on the outputs, "
           "tested on the original test images; original marked ★); the shaded corner is where the gates pass",
           lambda: privacy_utility_plot(pts, out / "privacy_utility.png", id_chance=ref["identity_chance"],
                                        util_chance=ref.get("utility_chance"), title=f"{title}: privacy–utility",
                                        gate=gate_region(ref, gates)))
    figure("Linkage CMC: originals as gallery, outputs as probes (identity CNN features)",
           lambda: cmc_plot({m: a.cmc["critic"] for m, a in result.methods.items()}, out / "cmc.png",
                            title="CMC, identity-CNN features"))
    if any("dlib" in a.cmc for a in result.methods.values()):
        figure("Linkage CMC with dlib's descriptor (independent recognizer)",
               lambda: cmc_plot({m: a.cmc["dlib"] for m, a in result.methods.items() if "dlib" in a.cmc},
                                out / "cmc_dlib.png", title="CMC, dlib descriptor"))
    for m, a in result.methods.items():
        figure(f"Confusion matrices (counts): {m} — the strongest identity attacker and the best utility classifier",
               lambda a=a, m=m: confusion_plot(_strongest(a.confusion, a.metrics), a.classes, out / f"confusion_{m}.png",
                                               title=f"{m}: on test outputs"))
    return judgement, [(cap, str(p)) for cap, p in figs]


def _sample_rows(original: ImageSet) -> tuple[list[int], list[int]]:
    """The test rows the sample figures show, drawn with a fixed seed: one image per identity (up to 8), and
    two images of each label (other people) when every image has one."""
    import numpy as np

    rng = np.random.default_rng(0)
    pick = []
    for ident in sorted(set(original.identity)):  # one test image per identity, up to 8
        idx = np.flatnonzero(original.identity == ident)
        pick.append(int(rng.choice(idx)))
    pick = pick[:8]
    # by label: two test images of each label (other people), every method below its originals
    by_label = []
    if not any(v is None for v in original.label):
        for lab in sorted(set(original.label), key=str):
            idx = np.flatnonzero(original.label == lab)
            by_label += [int(i) for i in rng.choice(idx, size=min(2, len(idx)), replace=False)]
    return pick, by_label


def _sample_images(original: ImageSet, anonymized: dict[str, str], pixel_cache: str, pick: list[int],
                   by_label: list[int]) -> tuple[dict, dict]:
    """The originals' and every method's images of those rows: (label → images of ``pick``, label → images of
    ``by_label``, empty without them)."""
    import numpy as np

    rows = {ORIGINAL: np.asarray(original.X[pick])}
    faces = {ORIGINAL: np.asarray(original.X[by_label])} if by_label else {}
    for name, path in anonymized.items():
        a = open_image_set(path, pixel_cache, anonymized=True)
        rows[name] = np.asarray(a.align_to(original.image_id[pick]).X)
        if by_label:
            faces[name] = np.asarray(a.align_to(original.image_id[by_label]).X)
    return rows, faces


@task
def write_report(result: AuditResult, judgement: AuditJudgement, figures: list[tuple[str, str]], out_dir: str,
                 title: str, dataset_info: dict, config: dict, notes: list[str], header: dict) -> str:
    """The HTML report, kept per run under ``reports/`` with ``report.html`` the latest; returns its path."""
    import shutil
    from datetime import datetime, timezone

    out = Path(out_dir)
    verdicts = {m: (v.status, v.reasons) for m, v in judgement.verdicts.items() if m != ORIGINAL}
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    kept = render_report(out / "reports" / f"report-{stamp}.html", title=title, dataset=dataset_info,
                         rows=result.table(), verdicts=verdicts, figures=figures, config=config, notes=notes,
                         judgement=judgement, header=header)
    latest = out / "report.html"
    with atomic_file(latest) as tmp:
        shutil.copyfile(kept, tmp)
    get_run_logger().info("report: %s", latest)
    return str(latest)


def _strongest(confusion: dict, metrics: dict) -> dict:
    """The confusion matrices of the identity attacker with the highest accuracy and of the utility
    classifier with the highest accuracy."""
    out = {}
    for label in ("identity", "utility"):
        keys = [k for k in confusion if k.startswith(f"{label}_")]
        if keys:
            best = max(keys, key=lambda k: metrics.get(f"{label}_acc_{k.split('_', 1)[1]}", -1.0))
            out[best] = confusion[best]
    return out
