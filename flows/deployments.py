"""Deployments of the anonymization flows, declared apart from the flow code.

One deployment per config in ``configs/`` (named after the config's ``name``), on the flow of its
dataset: ``anonymize-ferg/ferg-baselines``, ``anonymize-jaffe/jaffe-baselines``, ... A config's
``schedule`` (cron) is attached but inactive unless ``schedule_enabled: true``.

Serve them against a Prefect server (``make stack`` starts both on 127.0.0.1)::

    python -m flows.deployments                # serve every config in configs/
    prefect deployment run 'anonymize-ferg/ferg-baselines'
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prefect import serve
from prefect.schedules import Cron

from deid import __version__
from deid.config import load_config
from flows.anonymize import FLOWS

__all__ = ["build_deployments", "main"]

ROOT = Path(__file__).resolve().parents[1]


def build_deployments(configs: list[Path], *, base: Path = ROOT):
    """One RunnerDeployment per config file; configs are validated first (a bad one fails here)."""
    out = []
    for path in configs:
        cfg = load_config(path)
        schedules = [Cron(cfg.schedule, timezone="UTC", active=cfg.schedule_enabled)] if cfg.schedule else None
        out.append(FLOWS[cfg.dataset.name].to_deployment(
            name=cfg.name,
            parameters={"config": str(Path(path).resolve()), "base": str(base)},
            schedules=schedules,
            concurrency_limit=1,  # one run of a release job at a time
            version=__version__,
            tags=["deid", cfg.dataset.name],
            description=f"ingest → de-identify → audit → gate → publish, from {Path(path).name}",
        ))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Serve (or register) the anonymization deployments.")
    ap.add_argument("configs", nargs="*", type=Path, help="config files (default: every configs/*.yaml)")
    ap.add_argument("--base", type=Path, default=ROOT, help="directory relative paths in configs resolve against")
    ap.add_argument("--limit", type=int, default=None, help="at most this many concurrent flow runs")
    a = ap.parse_args(argv)
    configs = a.configs or sorted((ROOT / "configs").glob("*.yaml"))
    deployments = build_deployments(configs, base=a.base.resolve())
    serve(*deployments, limit=a.limit)


if __name__ == "__main__":
    main()
