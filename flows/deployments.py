"""Deployments of the anonymization flow, declared apart from the flow code: one per config file.

Every ``*.yaml`` in a folder (``configs/`` by default) is one deployment of the ``anonymize`` flow
named after the config's ``name``: ``anonymize/ferg-baselines``, ``anonymize/jaffe-baselines``, ...
Adding a dataset is adding a YAML file. The same config is also deployed under its dataset's former
flow name (``anonymize-ferg/ferg-baselines``), so the commands people already use keep working;
that alias carries no schedule. A config's ``schedule`` (cron) is attached to ``anonymize/<name>``,
inactive unless ``schedule_enabled: true``.

Two ways to run them against a Prefect server:

    python -m flows.deployments                # serve every config in configs/ (what `deid stack` does)
    prefect deployment run 'anonymize/ferg-baselines'

or a work pool: ``prefect.yaml`` (written by ``python -m flows.deployments --write-prefect-yaml``
from the same folder) holds the same deployments for ``prefect deploy --all``, run by
``prefect worker start --pool deid``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from deid.config import RunConfig, load_config
from deid.errors import ConfigError

__all__ = ["FLOW_NAME", "WORK_POOL", "configs_in", "load_configs", "build_deployments", "prefect_yaml",
           "write_prefect_yaml", "main"]

ROOT = Path(__file__).resolve().parents[1]
FLOW_NAME = "anonymize"
#: the process work pool ``prefect.yaml`` deploys into
WORK_POOL = "deid"
_ENTRYPOINT = "flows/anonymize.py"


def configs_in(folder: str | Path) -> list[Path]:
    """The config files of a folder (``*.yaml`` and ``*.yml``, not its subfolders), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: not a folder of configs")
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def load_configs(configs: list[Path]) -> list[tuple[Path, RunConfig]]:
    """Each config validated (a bad one fails here, one line naming it); two configs of one name are refused."""
    out, seen = [], {}
    for path in configs:
        cfg = load_config(path)
        if cfg.name in seen:
            raise ConfigError(f"{path}: name '{cfg.name}' is already the name of {seen[cfg.name]}; "
                              "a deployment is named after its config, so each needs its own name")
        seen[cfg.name] = path
        out.append((Path(path), cfg))
    return out


def _description(path: Path) -> str:
    return f"ingest → de-identify → audit → gate → publish, from {path.name}"


def build_deployments(configs: list[Path], *, base: Path = ROOT, aliases: bool = True):
    """RunnerDeployments for ``flow.serve``: per config, ``anonymize/<name>`` (with the schedule) and,
    with ``aliases``, ``anonymize-<dataset>/<name>`` (without)."""
    from prefect.schedules import Cron

    from deid import __version__
    from flows.anonymize import FLOWS, anonymize

    out = []
    for path, cfg in load_configs(configs):
        schedules = [Cron(cfg.schedule, timezone="UTC", active=cfg.schedule_enabled)] if cfg.schedule else None
        common = dict(name=cfg.name, parameters={"config": str(path.resolve()), "base": str(base)},
                      concurrency_limit=1,  # one run of a release job at a time
                      version=__version__, tags=["deid", cfg.dataset.name], description=_description(path))
        out.append(anonymize.to_deployment(schedules=schedules, **common))
        if aliases:
            out.append(FLOWS[cfg.dataset.name].to_deployment(**common))
    return out


def prefect_yaml(configs: list[Path], *, root: Path = ROOT, pool: str = WORK_POOL, aliases: bool = True) -> dict:
    """The ``prefect.yaml`` for ``prefect deploy --all`` from ``root``: the deployments of
    :func:`build_deployments` into the process pool ``pool``.

    Config paths inside ``root`` are written relative to it; the build step records the folder ``prefect deploy``
    runs in, and each flow run starts there (a process worker may run from anywhere)."""
    from flows.anonymize import _attribute

    root = Path(root).resolve()
    deployments = []
    for path, cfg in load_configs(configs):
        try:  # relative inside the project, so the file does not name this machine's folders
            rel = path.resolve().relative_to(root).as_posix()
        except ValueError:
            rel = str(path.resolve())
        common = {"tags": ["deid", cfg.dataset.name], "description": _description(path),
                  "parameters": {"config": rel}, "concurrency_limit": 1, "work_pool": {"name": pool}}
        schedules = ([{"cron": cfg.schedule, "timezone": "UTC", "active": cfg.schedule_enabled}]
                     if cfg.schedule else [])
        deployments.append({"name": cfg.name, "entrypoint": f"{_ENTRYPOINT}:{FLOW_NAME}", **common,
                            "schedules": schedules})
        if aliases:
            deployments.append({"name": cfg.name, "entrypoint": f"{_ENTRYPOINT}:{_attribute(cfg.dataset.name)}",
                                **common, "schedules": []})
    return {
        "name": "deid",
        "prefect-version": None,
        "build": [{"prefect.deployments.steps.run_shell_script": {"id": "project", "script": "pwd",
                                                                  "stream_output": False}}],
        "push": None,
        "pull": [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ project.stdout }}"}}],
        "deployments": deployments,
    }


_HEADER = """\
# Prefect deployments of the anonymization flow into the process work pool '{pool}': one per config
# in {folder}/ (anonymize/<config name>, and the alias anonymize-<dataset>/<config name>).
# Written by `python -m flows.deployments --write-prefect-yaml`; do not edit by hand (a test checks it).
#
#   prefect work-pool create {pool} --type process
#   prefect deploy --all                 # from this folder; the flow runs start in it
#   prefect worker start --pool {pool}
#   prefect deployment run 'anonymize/ferg-baselines'
"""


def write_prefect_yaml(configs: list[Path], path: Path, *, root: Path = ROOT, pool: str = WORK_POOL,
                       folder: str = "configs", aliases: bool = True) -> Path:
    """Write :func:`prefect_yaml` to ``path`` (with a header saying how to use it)."""
    import prefect
    import yaml

    doc = prefect_yaml(configs, root=root, pool=pool, aliases=aliases)
    doc["prefect-version"] = prefect.__version__
    class _Plain(yaml.SafeDumper):  # every deployment spelt out, no &anchors
        def ignore_aliases(self, data) -> bool:
            return True

    text = _HEADER.format(pool=pool, folder=folder) + yaml.dump(doc, Dumper=_Plain, sort_keys=False,
                                                                allow_unicode=True, width=120)
    Path(path).write_text(text)
    return Path(path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Serve the anonymization deployments, or write prefect.yaml.")
    ap.add_argument("configs", nargs="*", type=Path, help="config files (default: every config in --dir)")
    ap.add_argument("--dir", type=Path, default=ROOT / "configs", help="folder of configs (default configs/)")
    ap.add_argument("--base", type=Path, default=ROOT, help="directory relative paths in configs resolve against")
    ap.add_argument("--limit", type=int, default=None, help="at most this many concurrent flow runs")
    ap.add_argument("--write-prefect-yaml", type=Path, nargs="?", const=ROOT / "prefect.yaml", default=None,
                    metavar="PATH", help="write the work-pool deployments (default ./prefect.yaml) instead of serving")
    ap.add_argument("--pool", default=WORK_POOL, help="work pool named in prefect.yaml")
    a = ap.parse_args(argv)
    try:
        configs = a.configs or configs_in(a.dir)
        if a.write_prefect_yaml is not None:
            out = write_prefect_yaml(configs, a.write_prefect_yaml, root=a.base.resolve(), pool=a.pool,
                                     folder=_folder_name(a.dir, a.base))
            print(f"written: {out}")
            return
        deployments = build_deployments(configs, base=a.base.resolve())
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    from prefect import serve

    serve(*deployments, limit=a.limit)


def _folder_name(folder: Path, base: Path) -> str:
    try:
        return folder.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(folder)


if __name__ == "__main__":
    main()
