"""The ingest flow: a dataset from its on-disk layout (or the built-in generator) into Parquet."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from deid.config import load_config
from deid.ingest import IngestSummary
from deid.run import ResolvedRun, content_key, resolve_run
from tasks.data import generate_ferg_like, ingest_dataset

__all__ = ["ingest", "ingest_run", "resolve_source", "content_key"]


def resolve_source(run: ResolvedRun) -> Path:
    """The dataset's root on disk; for ``source: builtin`` the generated tree (drawn once per settings,
    the run's effective synthetic seed among them)."""
    ds = run.config.dataset
    src = ds.source_path(run.base)
    if src is None:
        spec = ds.synthetic
        src = Path(generate_ferg_like(str(run.layout.data / f"ferg-builtin-{content_key(spec.model_dump())}"), spec))
    return src


def ingest_run(run: ResolvedRun) -> tuple[Path, IngestSummary]:
    """The run's dataset ingested under ``<work_dir>/datasets/<name>-<key of its settings>``: returns the
    images table's folder and the ingest summary (its ``digest`` identifies the content)."""
    ds = run.config.dataset
    src = resolve_source(run)
    out = run.layout.dataset(ds.name, content_key(str(src.resolve()), ds.preprocess.model_dump(), ds.split.model_dump(),
                                                  ds.loader_options, ds.utility_attribute))
    summary = ingest_dataset(ds, str(src), str(out), run.config.dask)
    return out / "images", summary


@flow(name="ingest", log_prints=True)
def ingest(config: str = "configs/ferg.yaml", out_dir: str | None = None, base: str | None = None) -> dict:
    """Ingest the dataset a config names; the output is reused when files and settings are unchanged."""
    base_dir = Path(base) if base else Path.cwd()
    run = resolve_run(load_config(config if Path(config).is_absolute() else base_dir / config), base_dir)
    ds = run.config.dataset
    src = resolve_source(run)
    out = Path(out_dir) if out_dir else run.layout.dataset(ds.name)
    s = ingest_dataset(ds, str(src), str(out), run.config.dask)
    print(f"{ds.name}: input {s.input} = written {s.written} + quarantined {s.quarantined} → {out}")
    return s.model_dump()
