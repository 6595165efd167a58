"""Prefect's settings for a run whose state lives in a work directory that holds data, never code.

Prefect keeps its database under ``PREFECT_HOME`` (``<work_dir>/prefect``), and by default it also
reads from there a ``logging.yml`` (whose handlers are Python callables: ``(): os.system`` runs a
command) and a ``profiles.toml`` (settings, which can point the logging config anywhere), and it reads
cached task results back as pickles. A work directory can be written by others (a team's shared
folder, a copied work dir), so none of that may come from it:

- the logging config is the one installed with Prefect, or the one the user names in
  ``PREFECT_LOGGING_CONFIG_PATH`` / ``PREFECT_LOGGING_SETTINGS_PATH`` themselves;
- the profiles file is Prefect's packaged default, or the user's own ``PREFECT_PROFILES_PATH``;
- task caching and result persistence are off: reuse is the pipeline's own JSON records
  (:mod:`tasks.methods`).

Nothing here imports prefect: these are environment variables, set before prefect is imported.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

__all__ = ["prefect_settings", "apply_prefect_settings", "prefect_package"]


def prefect_package() -> Path:
    """The installed prefect package's folder, found without importing it."""
    spec = importlib.util.find_spec("prefect")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("prefect is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def prefect_settings(home: str | Path, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment variables that put Prefect's state in ``home`` and read no code from it.

    A logging or profiles path the user exported (in ``environ``, default this process's) is theirs and
    kept, unless it lies inside ``home``, which is data."""
    env = os.environ if environ is None else environ
    home = Path(home).resolve()
    pkg = prefect_package()
    out = {"PREFECT_HOME": str(home),
           "PREFECT_TASKS_DISABLE_CACHING": "true",
           "PREFECT_TASKS_DEFAULT_PERSIST_RESULT": "false",
           "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}

    def _own(name: str) -> str | None:
        v = env.get(name)
        if not v:
            return None
        p = Path(v).resolve()
        return None if p.is_relative_to(home) else str(p)

    logging_cfg = _own("PREFECT_LOGGING_CONFIG_PATH") or _own("PREFECT_LOGGING_SETTINGS_PATH")
    logging_cfg = logging_cfg or str(pkg / "logging" / "logging.yml")
    out["PREFECT_LOGGING_CONFIG_PATH"] = out["PREFECT_LOGGING_SETTINGS_PATH"] = logging_cfg
    out["PREFECT_PROFILES_PATH"] = _own("PREFECT_PROFILES_PATH") or str(pkg / "settings" / "profiles.toml")
    return out


def apply_prefect_settings(home: str | Path) -> Path:
    """:func:`prefect_settings` exported into this process (before prefect is imported); creates ``home``."""
    settings = prefect_settings(home)
    os.environ.update(settings)
    home = Path(settings["PREFECT_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    return home
