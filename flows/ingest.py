"""The ingest flow: a dataset from its on-disk layout (or the built-in generator) into Parquet."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from deid.config import RunConfig, load_config
from deid.ingest import IngestSummary
from tasks.data import generate_ferg_like, ingest_dataset

__all__ = ["ingest", "ingest_run", "resolve_source", "content_key"]


def content_key(*parts) -> str:
    """A short stable key for directory names derived from settings."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def resolve_source(cfg: RunConfig, base_dir: Path, work: Path) -> Path:
    """The dataset's root on disk; for ``source: builtin`` the generated tree (drawn once per settings)."""
    src = cfg.dataset.source_path(base_dir)
    if src is None:
        spec = cfg.dataset.synthetic
        src = Path(generate_ferg_like(str(work / "data" / f"ferg-builtin-{content_key(spec.model_dump())}"), spec))
    return src


def ingest_run(cfg: RunConfig, base_dir: Path) -> tuple[Path, IngestSummary]:
    """The run's dataset ingested under ``<work_dir>/datasets/<name>-<key of its settings>``: returns the
    images table's folder and the ingest summary (its ``digest`` identifies the content)."""
    ds, work = cfg.dataset, cfg.work_path(base_dir)
    src = resolve_source(cfg, base_dir, work)
    out = work / "datasets" / f"{ds.name}-{content_key(str(src.resolve()), ds.preprocess.model_dump(), ds.split.model_dump(), ds.loader_options, ds.utility_attribute)}"
    summary = ingest_dataset(ds, str(src), str(out), cfg.dask)
    return out / "images", summary


@flow(name="ingest", log_prints=True)
def ingest(config: str = "configs/ferg.yaml", out_dir: str | None = None, base: str | None = None) -> dict:
    """Ingest the dataset a config names; the output is reused when files and settings are unchanged."""
    base_dir = Path(base) if base else Path.cwd()
    cfg = load_config(config if Path(config).is_absolute() else base_dir / config)
    ds, work = cfg.dataset, cfg.work_path(base_dir)
    src = resolve_source(cfg, base_dir, work)
    out = Path(out_dir) if out_dir else work / "datasets" / ds.name
    s = ingest_dataset(ds, str(src), str(out), cfg.dask)
    print(f"{ds.name}: input {s.input} = written {s.written} + quarantined {s.quarantined} → {out}")
    return s.model_dump()
