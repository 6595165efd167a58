"""The audit on a Dask cluster: the methods' rows dealt into one part per worker, each part an audit of
the originals and of its methods (:func:`deid.evaluation.audit.audit`), merged into one audit
(:func:`deid.evaluation.audit.merge_audits`) with the same figures as the audit in one process.

Each part trains its own reference (the originals' row and the negative control, computed the same
way from the same data, seeded): with ``p`` parts the originals are audited ``p`` times, which is the
price of running the methods' rows at once. The driver decodes every table into the pixel cache
before the parts start, so the workers only read it. Unlike the transform
(:mod:`deid.transform_dask`), the parts read the tables and the pixel cache from disk: on a cluster of
several machines the run's work folder must be on a filesystem every worker sees; a worker that
cannot see it says so in one line. Finished rows go to the run's row cache as in one process, so an
interrupted audit resumes at its rows whichever worker had them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from deid.errors import EvaluationError
from deid.evaluation.audit import AuditResult, audit_tables, merge_audits
from deid.evaluation.audit_config import AuditConfig
from deid.faces_dask import DaskConfig, open_client

__all__ = ["split_methods", "audit_on_dask"]


def split_methods(anonymized: dict[str, str], parts: int) -> list[dict[str, str]]:
    """``anonymized`` (label → table) dealt into ``parts`` groups of near-equal size, in order."""
    items = list(anonymized.items())
    groups = [dict(items[i::parts]) for i in range(max(1, min(parts, len(items))))]
    return groups or [{}]


def _audit_part(job: dict) -> AuditResult:
    """One part on a worker: the originals and this part's methods, one torch thread per Dask thread."""
    import torch

    try:
        from distributed import get_worker

        torch.set_num_threads(max(1, int(get_worker().state.nthreads)))
    except (ValueError, AttributeError):  # not on a worker (a synchronous client)
        pass
    missing = [p for p in (job["images_dir"], *job["anonymized"].values(), job["pixel_cache"]) if not Path(p).exists()]
    if missing:
        import socket

        raise EvaluationError(f"audit on Dask: worker on {socket.gethostname()} cannot see {missing[0]}; the "
                              "audit's parts read the run's work folder, which must be on a filesystem every "
                              "worker sees")
    return audit_tables(job["images_dir"], job["anonymized"], job["cfg"], pixel_cache=job["pixel_cache"],
                        dataset=job["dataset"], real_faces=job["real_faces"],
                        descriptor_cache=job["descriptor_cache"], row_cache=job["row_cache"])


def audit_on_dask(images_dir: str | Path, anonymized: dict[str, str], cfg: AuditConfig, *, dask: DaskConfig,
                  dataset: str, real_faces: bool, pixel_cache: str | Path, descriptor_cache: str | None = None,
                  row_cache: str | Path | None = None, client: Any = None,
                  say: Callable[[str], None] | None = None) -> AuditResult:
    """The audit of ``anonymized`` (label → table folder) against the originals in ``images_dir``, split
    into one part per worker of the cluster ``dask`` names (or of ``client``, left open); rows in the
    order of ``anonymized``. With one worker or one method it is one part."""
    from deid.data import open_image_set

    say = say or (lambda msg: None)
    open_image_set(images_dir, pixel_cache)  # decoded once here, read by every part
    for path in anonymized.values():
        open_image_set(path, pixel_cache, anonymized=True)
    base = {"images_dir": str(images_dir), "cfg": cfg, "dataset": dataset, "real_faces": real_faces,
            "descriptor_cache": descriptor_cache, "pixel_cache": str(pixel_cache),
            "row_cache": str(row_cache) if row_cache else None}
    if client is None:
        with open_client(dask) as c:
            return _run_parts(c, anonymized, base, say)
    return _run_parts(client, anonymized, base, say)


def _run_parts(client: Any, anonymized: dict[str, str], base: dict, say: Callable[[str], None]) -> AuditResult:
    from distributed import as_completed

    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    if not workers:
        client.wait_for_workers(1, timeout=60)
        workers = client.scheduler_info(n_workers=-1).get("workers", {})
    groups = split_methods(anonymized, len(workers))
    say(f"audit: {len(anonymized)} method(s) in {len(groups)} part(s) on {len(workers)} Dask worker(s) "
        "(each part audits the originals too)")
    futures = {client.submit(_audit_part, {**base, "anonymized": g}, pure=False): i for i, g in enumerate(groups)}
    results: dict[int, AuditResult] = {}
    try:
        for done, fut in enumerate(as_completed(list(futures), loop=client.loop), 1):
            i = futures[fut]
            results[i] = fut.result()
            say(f"audit: part {done}/{len(groups)} done ({', '.join(groups[i])})")
    except Exception:
        client.cancel(list(futures))
        raise
    return merge_audits([results[i] for i in sorted(results)], order=list(anonymized))
