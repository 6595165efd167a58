"""The ``deid`` command: the same entry points as the flows, for people at a terminal.

Imports stay inside the commands: ``deid --help``, ``deid methods``, ``deid validate`` and every
configuration error answer without loading torch, scikit-learn, prefect or mlflow, and ``deid run``
checks its config before it starts a Prefect server.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Orchestrator and tracker settings must be in place before either is imported. Prefect's state
# goes to the work directory of what runs (a config's work_dir for `deid run`); DEID_WORK is the
# default work directory of the commands that take no config; PREFECT_HOME set by hand wins.
_WORK = Path(os.environ.get("DEID_WORK", "work")).resolve()
_PREFECT_HOME_SET = bool(os.environ.get("PREFECT_HOME"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "deid")  # a long fit's epoch lines reach the flow run's log
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")

from deid.threads import configure_threads  # noqa: E402  (before numpy or torch start a pool per machine core)

configure_threads()

import typer  # noqa: E402

from deid.errors import DeidError  # noqa: E402
from deid.workspace import WorkLayout  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True, help="De-identify labelled face datasets and audit the result.")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from deid.provenance import git_commit

    try:
        v = version("deid")
    except PackageNotFoundError:  # run from a source tree that was never installed
        v = "unknown"
    commit = git_commit()
    return f"deid {v}" + (f" (commit {commit[:12]})" if commit != "unknown" else "")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(_version())
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="print the package version and git commit, then exit")) -> None:
    """De-identify labelled face datasets and audit the result."""


def _errors(exc: Exception) -> None:
    """One ``error:`` line per problem on stderr."""
    for line in str(exc).splitlines() or [type(exc).__name__]:
        typer.secho(f"error: {line}", fg="red", err=True)


def _fail(exc: Exception) -> None:
    _errors(exc)
    raise typer.Exit(2)


def _prefect_home(work: Path | None = None) -> Path:
    """Prefect's folder, ``<work>/prefect`` (default the DEID_WORK folder) unless PREFECT_HOME was set;
    exported so every Prefect client and server of this process uses it. Call before prefect is imported."""
    from flows.prefect_env import apply_prefect_settings

    home = os.environ["PREFECT_HOME"] if _PREFECT_HOME_SET else WorkLayout(Path(work or _WORK).resolve()).prefect
    return apply_prefect_settings(home)  # and no logging config, profile or cached result read from it


def _parse_sets(sets: list[str], flag: str = "--set") -> dict:
    """``key=value`` pairs (each value read as YAML: ``[a, b]`` is a list, ``3`` a number) as a dict."""
    import yaml

    from deid.errors import ConfigError

    out = {}
    for s in sets:
        k, eq, v = s.partition("=")
        if not eq or not k.strip():
            raise ConfigError(f"{flag} wants key=value, got '{s}'")
        try:
            out[k.strip()] = yaml.safe_load(v)
        except yaml.YAMLError:
            raise ConfigError(f"{flag} {k.strip()}: the value is not valid YAML: {v!r}") from None
    return out


def _checked(config: str | Path, sets: list[str], warnings: list[str] | None = None):
    """The config, validated, resolved once (:func:`deid.run.resolve_run`: its seeds, work dir and every
    method's typed parameters) and checked (:func:`deid.config.check_run`), and its workspace: no data
    read, no server started. Raises :class:`~deid.errors.ConfigError`; with ``warnings``, a missing
    dataset is one of them instead."""
    from deid.config import check_run, load_config
    from deid.errors import ConfigError
    from deid.run import resolve_run

    cfg = load_config(config, _parse_sets(sets))
    try:
        run = resolve_run(cfg, Path.cwd())
        return run, check_run(run.config, Path.cwd(), warnings=warnings)
    except ConfigError as exc:  # name the file, as load_config's messages do
        raise ConfigError(f"{config}: {exc}") from None


def _describe(config: str | Path, run, workspace) -> str:
    cfg = run.config
    ds = cfg.dataset
    source = "built-in generator" if ds.source == "builtin" else str(ds.source_path(Path.cwd()))
    methods = ", ".join(m.key for m in run.methods)
    return (f"ok: {config}: run '{cfg.name}', dataset {ds.name} ({source}), methods {methods}; "
            f"work dir {workspace.work}" + (f"; release to {workspace.release}" if workspace.release else ""))


def _run(config: str, sets: list[str]) -> None:
    """Run a config's flow, then print the verdict table from the run's ``summary.json`` and exit with
    the outcome: 0 done (and released when asked), 3 the audit is inconclusive, 4 the release was
    refused, 2 a configuration error (before any work)."""
    import time

    from deid.workspace import claim_workspace

    started = time.time()
    blocked: Exception | None = None
    try:  # everything that can be checked, before prefect is even imported
        run, workspace = _checked(config, sets)
        claim_workspace(workspace)
    except DeidError as exc:
        _fail(exc)
    typer.echo(_describe(config, run, workspace).replace("ok: ", "starting: ", 1), err=True)  # the first line, at once
    home = _prefect_home(workspace.work)  # one work dir for everything the run writes, Prefect's state too
    from prefect.exceptions import TerminationSignal

    from deid.reporting.summary import EXIT_CODES, read_summary
    from flows import anonymize as flows_anonymize
    from flows.anonymize import ReleaseBlocked

    flow_fn = flows_anonymize.anonymize  # one flow for any config
    own = None  # this run's own summary, as the flow returns it (a refused release carries it)
    try:
        with _server_for(flow_fn, run.work, home):
            result = flow_fn(config=run.config, base=str(Path.cwd()))  # the config as resolved here: not parsed again
        own = (result or {}).get("summary")
    except (KeyboardInterrupt, TerminationSignal):  # Ctrl-C or SIGTERM: the server is stopped on the way out
        typer.secho("stopped", fg="red", err=True)
        raise typer.Exit(130) from None
    except ReleaseBlocked as exc:  # before the catch-all below: a refused release is an outcome, not a crash
        blocked, own = exc, getattr(exc, "summary", None)
    except DeidError as exc:
        if _summary_since(run, started) is None:  # failed before the audit concluded
            _fail(exc)
        blocked = exc  # the release policy refused after the audit
    except Exception:
        from flows.stack import stop_requested

        if stop_requested():  # SIGTERM arrived inside a library that re-wrapped it
            typer.secho("stopped", fg="red", err=True)
            raise typer.Exit(130) from None
        raise
    path = Path(own) if own and Path(own).is_file() else _summary_since(run, started)
    if path is None:
        _fail(blocked or RuntimeError("the run wrote no summary"))
    doc = read_summary(path)
    _print_summary(doc, path)
    if blocked is not None:
        typer.secho(f"release refused: {blocked}", fg="red", err=True)
    if doc.outcome != "ok":
        raise typer.Exit(EXIT_CODES[doc.outcome])


def _server_for(flow_fn, work: Path, home: Path):
    """A Prefect server for this run (its database under ``home``) that dies with it (also on kill -9),
    unless PREFECT_API_URL names one; nothing for a stand-in that is not a Prefect flow."""
    from contextlib import nullcontext

    from prefect import Flow

    from flows.server_keeper import run_server

    if not isinstance(flow_fn, Flow):
        return nullcontext()
    return run_server(home, WorkLayout(work).prefect_server_log, say=lambda m: typer.echo(m, err=True))


def _summary_since(run, started: float) -> Path | None:
    """The run's summary.json, if this run wrote it."""
    from deid.reporting.summary import SUMMARY_FILE

    p = run.run_dir / SUMMARY_FILE
    return p if p.exists() and p.stat().st_mtime >= started - 1 else None


def _print_summary(doc, path: Path) -> None:
    from rich.console import Console

    from deid.reporting.text import summary_table

    console = Console()
    if not console.is_terminal:  # logs and pipes: the whole table on one line per method
        console = Console(width=240)
    console.print(summary_table(doc))
    if not doc.audit.sound:
        typer.secho("INCONCLUSIVE: no verdict can be trusted", fg="yellow")
        for r in doc.audit.inconclusive:
            typer.echo(f"  - {r}")
    typer.echo(f"summary: {path}")
    typer.echo(f"report:  {doc.report}")
    typer.echo(f"mlflow:  run {doc.mlflow_run_id} — browse with `make ui` (or `deid ui`)")
    rel = doc.release
    typer.echo(f"release: {rel.status}" + (f" — {rel.version} at {rel.path}" if rel.version else "")
               + (f" — {rel.reason}" if rel.reason and rel.status == "blocked" else ""))

def demo_config() -> Path:
    """The demo's config, shipped in the package (``flows/demo.yaml``, a link to ``configs/ferg.yaml`` in the
    source tree, its content in a built wheel), so an installed ``deid demo`` runs from any folder."""
    from importlib.resources import files

    return Path(str(files("flows") / "demo.yaml")).resolve()


def _demo_help() -> str:
    """``deid demo --help``: what the demo config runs, read from it (its methods, the baselines, the release)."""
    import yaml

    path = demo_config()
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):  # the help still answers; `deid demo` says what is wrong
        return f"Run the demo config ({path})."
    methods = [m["name"] + (f" (k={m['params']['k']})" if "k" in (m.get("params") or {}) else "")
               for m in cfg.get("methods") or []]
    if cfg.get("include_baselines", True):
        methods.append("the naive baselines")
    which = " and ".join([", ".join(methods[:-1]), methods[-1]] if len(methods) > 1 else methods)
    out = (f"Generate the built-in FERG-like data, de-identify it with {which}, audit every output with attackers "
           "trained on it, and write the report and the verdict table")
    release = cfg.get("release") or {}
    if release.get("enabled"):
        out += f"; {release.get('method')}'s output is published if it passes its gates and the release policy"
    return (f"{out}. Runs from any folder: the work goes to ./{cfg.get('work_dir', 'work')}.\n\n"
            f"Config: {path} (`deid run` takes any other).")


@app.command(help=_demo_help())
def demo(sets: list[str] = typer.Option([], "--set", help="override a config field, e.g. --set audit.cnn_epochs=5")) -> None:
    _run(str(demo_config()), sets)


@app.command()
def run(config: Path = typer.Argument(..., help="a YAML config from configs/"),
        sets: list[str] = typer.Option([], "--set", help="override a config field: key.sub=value"),
        dry_run: bool = typer.Option(False, "--dry-run", help="only check the config (as `deid validate`); start nothing")) -> None:
    """Run the anonymization flow on a config (any dataset loader)."""
    if dry_run:
        _validate([config], sets, data_required=True)
        return
    _run(str(config), sets)


@app.command()
def validate(configs: list[Path] = typer.Argument(..., help="YAML configs, e.g. configs/*.yaml"),
             sets: list[str] = typer.Option([], "--set", help="override a config field: key.sub=value")) -> None:
    """Check configs without data or servers: YAML, keys, types, methods and their parameters, paths, work dir.

    One line per problem; exit code 2 when any config has one. A dataset that is not on this machine is a
    warning: the config is valid (`deid run` and `--dry-run` refuse it).
    """
    _validate(configs, sets, data_required=False)


def _validate(configs: list[Path], sets: list[str], *, data_required: bool) -> None:
    failed = False
    for config in configs:
        warnings: list[str] = []
        try:
            run, workspace = _checked(config, sets, None if data_required else warnings)
        except DeidError as exc:
            _errors(exc)
            failed = True
            continue
        typer.echo(_describe(config, run, workspace))
        for w in warnings:  # the config is valid; its data is not on this machine
            typer.secho(f"warning: {config}: {w}", fg="yellow", err=True)
    if failed:
        raise typer.Exit(2)


def _loaders_help() -> str:
    """``deid ingest --help``: every registered loader, what it reads and the options it takes."""
    from deid.datasets import available_loaders, get_loader

    lines = ["Ingest a dataset from its on-disk layout into the Parquet contract.",
             "Loaders (give their options as --option key=value):"]
    for name in available_loaders():
        loader = get_loader(name)
        lines.append(f"- {name}: {loader.description or '-'}; options: {', '.join(loader.option_names())}")
    return "\n\n".join(lines)


def _loader_names() -> str:
    from deid.datasets import available_loaders

    return ", ".join(available_loaders())


@app.command(help=_loaders_help())
def ingest(dataset: str = typer.Argument(..., help=f"the loader: {_loader_names()}"),
           source: Path = typer.Argument(..., help="the dataset's root folder (or a manifest file)"),
           options: list[str] = typer.Option([], "--option", help="a loader option, key=value (repeatable; the value "
                                             "is read as YAML), e.g. --option path_column=file"),
           out: Path = typer.Option(None, help="output folder (default work/datasets/<dataset>)"),
           size: int = 64, grayscale: bool = True, align: str = typer.Option("none", help="none | dlib"),
           test: float = 0.2, val: float = 0.1, seed: int = 0, identity_disjoint: bool = False) -> None:
    from deid.ingest import ingest_dataset
    from deid.preprocessing import PreprocessConfig
    from deid.splits import SplitConfig

    try:
        s = ingest_dataset(dataset, source, out or WorkLayout(_WORK).dataset(dataset),
                           preprocess=PreprocessConfig(size=size, grayscale=grayscale, align=align),
                           split=SplitConfig(test=test, val=val, seed=seed, identity_disjoint=identity_disjoint),
                           progress=True, loader_options=_parse_sets(options, "--option"))
    except (DeidError, ValueError) as exc:
        _fail(exc)
    typer.echo(s.model_dump_json(indent=2))


@app.command()
def generate(out: Path = typer.Argument(Path("work/data/ferg-like")), characters: int = 6, per_cell: int = 24,
             entanglement: float = 0.5, seed: int = 0) -> None:
    """Draw the FERG-like dataset in FERG-DB's layout."""
    from deid.datasets.synthetic import SyntheticFergConfig, generate_ferg_like

    root = generate_ferg_like(out, SyntheticFergConfig(characters, per_cell, entanglement=entanglement, seed=seed),
                              progress=True)
    typer.echo(str(root))


@app.command()
def methods(name: str = typer.Argument(None, help="one method: its paper, guarantee and parameters")) -> None:
    """List the registered de-identification methods, each parameter with its type, default, range and meaning."""
    from deid.methods import available_methods, method_class

    if name is not None:
        try:
            cls = method_class(name)
        except DeidError as exc:
            _fail(exc)
        _method_facts(cls)
        return
    for n in available_methods():
        cls = method_class(n)
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        typer.echo(f"{n:16s} {doc}")
        _param_lines(cls)
    typer.echo("\n`deid methods NAME`: a method's paper and guarantee")


def _param_lines(cls) -> None:
    """One indented line per parameter: name, type, default, range, meaning (``-`` when it has none)."""
    from deid.methods.base import param_rows

    rows = param_rows(cls)
    if not rows:
        typer.echo("  (no parameters)")
    for r in rows:
        typer.echo(f"  {r['name']:22s} {r['type']:12s} {r['default']:16s} {r['range']:28s} {r['doc'] or '-'}")


def _method_facts(cls) -> None:
    """``deid methods NAME``: what the method does, its paper, its guarantee, where its k must hold, its parameters."""
    from deid.release_card import method_facts

    facts = method_facts(cls.name)
    typer.echo(f"{cls.name}: {facts['description']}")
    typer.echo(f"paper:     {facts['citation'] or 'none (a baseline from the literature, no method of its own)'}")
    typer.echo(f"guarantee: {cls.guarantee or 'none by construction: only the audit measures what it protects'}")
    if cls.k_within:
        where = {"train": "the training split", "split": "every split (each is transformed whole)",
                 "train label": "each utility label of the training split",
                 "split label": "each utility label of every split"}[cls.k_within]
        typer.echo(f"k:         needs k distinct identities in {where}; checked right after ingest")
    typer.echo("parameters (name, type, default, range, meaning):")
    _param_lines(cls)


@app.command()
def ui(config: Path = typer.Argument(None, help="a run config: open the MLflow store of its work_dir"),
       work_dir: Path = typer.Option(None, "--work-dir", help="open the store under this work directory"),
       sets: list[str] = typer.Option([], "--set", help="override a config field, as with `deid run`"),
       port: int = 5000) -> None:
    """Open the MLflow UI (127.0.0.1) on the store runs were written to.

    The store is the config's (its ``tracking.uri``, else ``<work_dir>/mlflow``), or the one under
    ``--work-dir``; without either, under DEID_WORK (default ./work).
    """
    uri = _ui_store(config, work_dir, sets)
    if uri.startswith(("http://", "https://")):
        typer.echo(f"runs are tracked on the MLflow server {uri}: open it there")
        return
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
           "--port", str(port)]
    typer.echo(" ".join(cmd))
    os.execv(sys.executable, cmd)


def _ui_store(config: Path | None, work_dir: Path | None, sets: list[str]) -> str:
    """The tracking store ``deid ui`` opens (exit 2 with one line on a bad config)."""
    if config is not None and work_dir is not None:
        _fail(ValueError("give a config or --work-dir, not both"))
    if config is None and sets:
        _fail(ValueError("--set needs a config"))
    if config is not None:
        from deid.config import load_config
        from deid.run import resolve_run

        try:
            run = resolve_run(load_config(config, _parse_sets(sets)), Path.cwd())
        except DeidError as exc:
            _fail(exc)
        if run.config.tracking.uri:
            return run.config.tracking.uri
        work = run.work
    else:
        work = (work_dir or _WORK).resolve()
    if not (WorkLayout(work).mlflow / "mlflow.db").exists():
        typer.echo(f"note: no runs recorded under {work} yet", err=True)
    _prefect_home(work)  # tasks.tracking imports prefect: its state stays in the work directory too
    from tasks.tracking import local_tracking_uri

    return local_tracking_uri(work)


@app.command()
def stack(port: int = typer.Option(4200, help="the Prefect server's port on 127.0.0.1 (its UI and API)"),
          configs: list[Path] = typer.Argument(None, help="configs to serve (default: every configs/*.yaml)"),
          work_dir: Path = typer.Option(None, "--work-dir",
                                        help="where Prefect's database and the logs go (default DEID_WORK or ./work)")) -> None:
    """Start a Prefect server (127.0.0.1, SQLite under <work dir>/prefect) and serve one deployment per config.

    It says "ready: N deployments registered (...)" once the server lists every one of them (until then
    "registering deployments: k/N"). Then, in another terminal: PREFECT_API_URL=http://127.0.0.1:PORT/api
    prefect deployment run 'anonymize/ferg-baselines' (the former names, 'anonymize-ferg/ferg-baselines',
    run the same). Ctrl-C, SIGTERM or SIGHUP stops both; they also die with this process if it is killed.
    """
    from flows.stack import run_stack

    work = (work_dir or _WORK).resolve()
    try:
        code = run_stack(_prefect_home(work), port, list(configs or []), WorkLayout(work).logs, Path.cwd(), say=typer.echo)
    except (RuntimeError, TimeoutError, DeidError) as exc:  # a bad config, or the server did not come up:
        _fail(exc)  # nothing it started is left running
    if code:
        raise typer.Exit(code)


@app.command()
def study(quick: bool = typer.Option(False, "--quick", help="budget run: one seed, fewer settings and epochs (< 15 min here)"),
          datasets: list[str] = typer.Option(["ferg", "jaffe"], "--datasets", help="ferg and/or jaffe (repeat the option)"),
          out: Path = typer.Option(Path("docs"), "--out", help="where RESULTS.md and its plot are written"),
          from_mlflow: bool = typer.Option(False, "--from-mlflow", help="only regenerate the files from the MLflow store"),
          study_id: str = typer.Option(None, "--study-id", help="with --from-mlflow: which study (default the latest)"),
          tracking_uri: str = typer.Option(None, "--tracking-uri", help="MLflow store (default the local one under work/)"),
          workers: int = typer.Option(1, "--workers", min=1, help="(dataset, seed) units run in this many processes"),
          full_size: bool = typer.Option(False, "--full-size", help="the papers' settings on the built-in set at FERG's "
                                         "size (55,776 images), one seed; writes docs/full-size/RESULTS.md")) -> None:
    """The privacy–utility study: every method, papers' settings and a sweep, audited; writes RESULTS.md."""
    _prefect_home()
    from flows.study import command_line, plan, run_study, write_results
    from tasks.tracking import configure_tracking

    try:
        if from_mlflow:
            uri = configure_tracking(tracking_uri, "deid-study", _WORK)
            path = write_results(uri, study_id, out)
        else:
            if full_size:
                from deid.errors import ConfigError

                if quick:
                    raise ConfigError("--full-size and --quick are two different plans: give one")
                if "jaffe" in datasets and datasets != ["ferg", "jaffe"]:
                    raise ConfigError("--full-size runs the built-in set at FERG's size; JAFFE has no bigger size")
                datasets = ["ferg"]
                out = out / "full-size" if out == Path("docs") else out
            path = run_study(plan("full-size" if full_size else "quick" if quick else "full"), datasets, work=_WORK, out=out,
                             tracking_uri=tracking_uri, command=command_line(), say=typer.echo, workers=workers)
    except (DeidError, LookupError, ValueError) as exc:
        _fail(exc)
    typer.echo(f"written: {path}")


@app.command()
def perf(sizes: list[int] = typer.Option([1000, 10000], "--sizes", help="dataset sizes N (repeat the option)"),
         out: Path = typer.Option(Path("docs"), "--out", help="where PERFORMANCE.md and its plot are written"),
         demo_time: bool = typer.Option(True, "--demo/--no-demo", help="also time the default demo end to end"),
         stages: list[str] = typer.Option([], "--stage", help="only these stages (default all)"),
         demo_only: bool = typer.Option(False, "--demo-only", help="re-time only the demo; keep the measured stage rows")) -> None:
    """Each stage's images/s and peak memory at each N, next to its bare-library loop; writes PERFORMANCE.md."""
    _prefect_home()
    from bench.perf import refresh_demo, run_perf

    if demo_only:
        path = refresh_demo(out, _WORK, say=typer.echo)
    else:
        path = run_perf(sizes, out=out, work=_WORK, demo=demo_time, stages=stages or None, say=typer.echo)
    typer.echo(f"written: {path}")


@app.command()
def publish(release: Path = typer.Argument(..., help="a published release folder, <release root>/<dataset>/<version>"),
            repo: str = typer.Option(..., "--repo", help="the Hugging Face Hub dataset repository, ORG/NAME"),
            yes: bool = typer.Option(False, "--yes", "--no-dry-run",
                                     help="upload; without it, a dry run that only lists what would go where"),
            public: bool = typer.Option(False, "--public", help="create the repository public (default private); "
                                        "an existing repository keeps its visibility"),
            work_dir: Path = typer.Option(None, "--work-dir", help="the work directory of the run that published the "
                                          "release: its private record names the input the leak scan reads "
                                          "(default DEID_WORK or ./work)")) -> None:
    """Upload a published release to the Hugging Face Hub as a dataset repository (token: HF_TOKEN).

    A dry run unless --yes. Either way the release is checked first: its manifest and card, exactly the
    files the manifest lists with their checksums, and the leak scan against its input. The upload replaces
    the repository's data/ files, so it holds this release only. Every refusal is one line, exit code 2.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import validate_repo_id

    from deid.release import check_release, release_private_dir

    token = os.environ.get("HF_TOKEN") or None
    try:
        if repo.count("/") != 1:
            raise ValueError(f"--repo wants ORG/NAME, got '{repo}'")
        validate_repo_id(repo)
        check = check_release(release, release_private_dir((work_dir or _WORK).resolve()))
        if yes and token is None:
            raise DeidError(f"HF_TOKEN is not set: export a Hugging Face token with write access to {repo} to upload")
    except (DeidError, ValueError) as exc:
        _fail(exc)
    url = f"{constants.ENDPOINT}/datasets/{repo}"
    typer.echo(f"release {check.dataset} {check.version} at {check.path}: {len(check.files)} files checked against "
               f"its manifest; leak scan clean ({check.scanned} private strings of its input)")
    typer.echo(f"{'uploading' if yes else 'dry run: would upload'} to {url} (dataset repository, created "
               f"{'public' if public else 'private'} if missing; its data/ files replaced):")
    for name, size in check.files:
        typer.echo(f"  {name}  {size:,} bytes")
    typer.echo(f"  total {len(check.files)} files, {sum(s for _, s in check.files):,} bytes")
    if not yes:
        typer.echo("token: " + ("HF_TOKEN is set" if token else "HF_TOKEN is not set (needed to upload)"))
        again = f" --work-dir {work_dir}" if work_dir else ""
        typer.echo(f"nothing uploaded; to upload: deid publish {release} --repo {repo}{again} --yes")
        return
    try:
        commit = _hub_upload(check, repo, token, public)
    except Exception as exc:  # noqa: BLE001  (the Hub's and the network's errors: one line, not a traceback)
        _fail(RuntimeError(f"upload to {url} failed: {type(exc).__name__}: {' '.join(str(exc).split())}"))
    typer.echo(f"uploaded: {url}" + (f" ({commit})" if commit else ""))


def _hub_upload(check, repo: str, token: str, public: bool) -> str:
    """Create the dataset repository if missing and upload exactly the checked files in one commit, removing
    the data files of any release it held before; returns the commit's address."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo, repo_type="dataset", private=not public, exist_ok=True)
    info = api.upload_folder(folder_path=str(check.path), repo_id=repo, repo_type="dataset",
                             allow_patterns=[name for name, _ in check.files], delete_patterns=["data/*"],
                             commit_message=f"deid release {check.dataset} {check.version}")
    return str(getattr(info, "commit_url", "") or "")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
