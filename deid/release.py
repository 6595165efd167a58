"""Publishing a release: the de-identified images and utility labels only, in an order and with
ids drawn from the operating system's CSPRNG, a manifest with checksums, written atomically under
a lock.

Nothing in a release is a function of the input order or of the private data: the row order, the
split files' contents, the ``release_id`` values and the version are drawn with :mod:`secrets`,
and no seed or digest of the private table is kept in it. Reruns find their release again through
a private index under the work directory (a keyed digest of the content → the version), which
never leaves it. No identity column, source path or file name, original pixels or input row ids
leave: :func:`find_leaks` scans a release for given private strings, and
:func:`publish_release` refuses to finish when it finds any, or when the release policy's floors
(:mod:`deid.release_policy`) are not met.

The manifest is public: it carries the deid version, never an internal pointer (an MLflow run id,
a code commit, an orchestrator's run ids, an absolute path). Those go to the release's private
record beside the index (:func:`release_record`). Next to the manifest, ``README.md`` is the
release's Hugging Face dataset card (:mod:`deid.release_card`), built from the released table,
counts of the source, the method, the audit figures and the policy only, so it names nothing of
the input either, and it passes the same leak scan. The Parquet files carry ``datasets``
features: ``image`` decodes to a PIL image and ``label`` is a ``ClassLabel``.
:func:`check_release` is what a release must pass before it leaves the machine (``deid publish``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq
from filelock import FileLock

from data_contracts import (ANONYMIZED_SCHEMA, IMAGES_SCHEMA, RELEASE_SCHEMA, SPLITS, TableWriter, atomic_dir,
                            read_table, table_labels)
from deid import __version__
from deid.errors import DeidError
from deid.release_card import HF_SPLIT_NAMES, NOTICE, dataset_card, md_code
from deid.release_policy import ReleasePolicy, ReleaseRefused, near_copies, privacy_floor, release_policy

__all__ = ["ReleaseResult", "publish_release", "find_leaks", "LeakError", "ReleaseRefused", "MANIFEST", "CARD",
           "DECLARED_FIELDS", "release_order", "new_release_ids", "dataset_card", "md_code", "HF_SPLIT_NAMES",
           "INTERNAL_FIELDS", "release_record", "check_release", "NotARelease", "ReleaseCheck",
           "private_strings", "release_private_dir"]

MANIFEST = "manifest.json"
CARD = "README.md"
# Lines of the card that carry the run config's declared values (method parameters), skipped by
# the leak scan as the manifest's DECLARED_FIELDS are.
_DECLARED_BLOCK = re.compile(r"^[^\n]*declared:begin[^\n]*\n.*?^[^\n]*declared:end[^\n]*$", re.MULTILINE | re.DOTALL)
_RUN_SPECIFIC = ("mlflow_run_id", "audit")
#: manifest fields that point inside the organisation that made the release: kept in its private record,
#: never in the public manifest (so are fields named like them, and any field holding an absolute path)
INTERNAL_FIELDS = ("mlflow_run_id", "code_commit", "prefect_flow_run_id", "prefect_task_run_id")
_INTERNAL_NAME = re.compile(r"^(mlflow|prefect)_|_run_id$|(^|_)commit$")
# Manifest fields whose values the run config declares (a template identity named by the config is
# not a leak of the input): the leak scan reads the manifest without them.
DECLARED_FIELDS = ("method_params",)
_KEY_FILE = "release.key"
_INDEX_FILE = "release-index.json"
_RECORDS_DIR = "records"


class LeakError(DeidError):
    """A release would carry private data; the message says what and where."""


@dataclass
class ReleaseResult:
    path: Path
    version: str
    reused: bool
    rows: int


def release_order(n: int) -> np.ndarray:
    """A uniformly random permutation of ``range(n)`` from the OS CSPRNG (never seeded, never stored)."""
    order = list(range(n))
    secrets.SystemRandom().shuffle(order)
    return np.asarray(order, dtype=np.int64)


def new_release_ids(n: int) -> list[str]:
    """``n`` distinct 64-bit ids from the OS CSPRNG, as 16 hex digits."""
    ids: set[str] = set()
    while len(ids) < n:
        ids.update(secrets.token_hex(8) for _ in range(n - len(ids)))
    out = list(ids)
    secrets.SystemRandom().shuffle(out)  # set order is a function of the values' hashes, not of anything private
    return out


def _private_key(private_dir: Path) -> bytes:
    """The work directory's secret release key (created once, 0600, never published)."""
    private_dir.mkdir(parents=True, exist_ok=True)
    p = private_dir / _KEY_FILE
    if not p.exists():
        tmp = private_dir / f".{_KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
        try:
            os.link(tmp, p)  # first writer wins; a concurrent one reads the winner's key
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return p.read_bytes()


def _content_key(private_dir: Path, anonymized_digest: str, spec: dict) -> str:
    """A keyed digest of what is released and how: equal for a rerun, meaningless without the key."""
    msg = anonymized_digest.encode() + json.dumps(spec, sort_keys=True, default=str).encode()
    return hmac.new(_private_key(private_dir), msg, hashlib.sha256).hexdigest()


def _read_index(private_dir: Path) -> dict[str, str]:
    p = private_dir / _INDEX_FILE
    return json.loads(p.read_text()) if p.exists() else {}


def _write_json(p: Path, doc: dict) -> None:
    """``doc`` to ``p`` at once (written beside it, then renamed)."""
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.{secrets.token_hex(4)}")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True, default=str))
    os.replace(tmp, p)


def _write_index(private_dir: Path, index: dict[str, str]) -> None:
    _write_json(private_dir / _INDEX_FILE, index)


def _absolute_path(value) -> bool:
    """Whether ``value`` (or a string anywhere in it) is an absolute local path or a URI of one."""
    if isinstance(value, dict):
        return any(_absolute_path(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_absolute_path(v) for v in value)
    if isinstance(value, Path):
        return value.is_absolute()
    return isinstance(value, str) and bool(re.match(r"(/[^/\s]|[A-Za-z]:[\\/]|\\\\|(file|sqlite):/)", value))


def _internal(manifest: dict) -> tuple[dict, dict]:
    """``manifest`` split into what the public manifest may carry and the internal pointers
    (:data:`INTERNAL_FIELDS`, fields named like them, fields holding an absolute path)."""
    inside = {k for k, v in manifest.items() if k in INTERNAL_FIELDS or _INTERNAL_NAME.search(k)
              or (k not in DECLARED_FIELDS and _absolute_path(v))}
    return ({k: v for k, v in manifest.items() if k not in inside}, {k: manifest[k] for k in sorted(inside)})


def _record_path(private_dir: Path, dataset: str, version: str) -> Path:
    return Path(private_dir) / _RECORDS_DIR / dataset / f"{version}.json"


def release_private_dir(work: str | Path) -> Path:
    """Where a work directory keeps its release key, index and records (never published)."""
    from deid.workspace import WorkLayout

    return WorkLayout(Path(work)).private / "releases"


def release_record(private_dir: str | Path, dataset: str, version: str) -> dict | None:
    """The private record of a release (``None`` if there is none): where it and its input are on this
    machine (``path``, ``originals_dir``), and the internal pointers of the run that published it
    (``published``: ``mlflow_run_id``, ``code_commit``, ...) and of each rerun that found it again
    (``reruns``). It lives beside the private index and never leaves the work directory."""
    p = _record_path(Path(private_dir), dataset, version)
    return json.loads(p.read_text()) if p.exists() else None


def _note_run(private_dir: Path, dataset: str, version: str, final: Path, originals_dir: str | Path,
              internal: dict, reused: bool) -> None:
    """Add this run's internal pointers to the release's private record (under the release lock)."""
    run = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), **internal}
    record = release_record(private_dir, dataset, version) or {
        "dataset": dataset, "version": version, "path": str(Path(final).resolve()),
        "originals_dir": str(Path(originals_dir).resolve()), "published": None, "reruns": []}
    if reused:  # a release published before records were kept has no publishing run on record
        record["reruns"].append(run)
    else:
        record["published"] = run
    _write_json(_record_path(private_dir, dataset, version), record)


def private_strings(images_dir: str | Path) -> set[str]:
    """What must not appear in a release of the ingested ``images`` table: its identities and its
    source file names (with and without their extension)."""
    src = read_table(images_dir, IMAGES_SCHEMA, columns=["identity", "source_path"])
    private = set(src.column("identity").to_pylist())
    for p in src.column("source_path").to_pylist():
        name = p.rsplit("/", 1)[-1]
        private |= {name, name.rsplit(".", 1)[0]}
    return private


def _source_facts(originals_dir: str | Path, labels: list[str] | None, source: dict | None,
                  dataset: str) -> dict:
    """What the card says of the source dataset: counts from the ingested table (people, images,
    labels), the loader's description, and whether it is synthetic when the caller says so."""
    from deid.datasets import available_loaders, get_loader

    t = read_table(originals_dir, IMAGES_SCHEMA, columns=["identity"])
    described = get_loader(dataset).description if dataset in available_loaders() else ""
    return {"description": described, "synthetic": None, "identities": len(set(t.column("identity").to_pylist())),
            "images": t.num_rows, "labels": len(labels) if labels else None, **(source or {})}


def _sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _arrow_bytes(files: list[Path]) -> int:
    """The Arrow size of Parquet files as ``datasets`` reads them (a split's ``num_bytes``), a row group at a time."""
    total = 0
    for f in files:
        pf = pq.ParquetFile(f)
        total += sum(pf.read_row_group(i).nbytes for i in range(pf.num_row_groups))
    return int(total)


def _scrub(table: pa.Table) -> pa.Table:
    """The release columns, rows in a fresh random order with fresh random ids."""
    n = table.num_rows
    t = table.take(pa.array(release_order(n)))
    images = t.column("image").combine_chunks()
    image = pa.StructArray.from_arrays([images.field("bytes"), pa.nulls(n, pa.string())], ["bytes", "path"])
    return pa.table({
        "release_id": pa.array(new_release_ids(n), pa.string()), "split": t.column("split"),
        "label": t.column("label"), "image": image, "height": t.column("height"),
        "width": t.column("width"), "channels": t.column("channels"),
    })


def _check_near_copies(table: pa.Table, originals_dir: str | Path, policy: ReleasePolicy, chunk: int = 2048) -> None:
    """Refuse when any output is a copy (pixel-identical, SSIM, perceptual hash) of its own input."""
    from deid.imageio import images_to_array

    src = read_table(originals_dir, IMAGES_SCHEMA, columns=["image_id", "image"])
    pos = {k: i for i, k in enumerate(src.column("image_id").to_pylist())}
    ids = table.column("image_id").to_pylist()
    missing = [k for k in ids if k not in pos]
    if missing:
        raise ReleaseRefused(f"{len(missing)} released rows have no input image to compare with (e.g. {missing[0]})")
    reasons: list[str] = []
    totals = None
    for s in range(0, len(ids), chunk):
        out = images_to_array(table.column("image").slice(s, chunk))
        inp = images_to_array(src.column("image").take(pa.array([pos[k] for k in ids[s:s + chunk]])))
        if inp.shape != out.shape:
            raise ReleaseRefused(f"outputs {out.shape[1:]} and inputs {inp.shape[1:]} differ in shape; "
                                 "cannot check the release for copies of its inputs")
        nc = near_copies(inp, out, policy)
        totals = nc if totals is None else type(nc)(
            totals.checked + nc.checked, totals.identical + nc.identical, totals.ssim_over + nc.ssim_over,
            totals.phash_match + nc.phash_match, max(totals.max_ssim, nc.max_ssim),
            min(totals.min_phash_distance, nc.min_phash_distance))
    if totals is not None and totals.any:
        reasons = totals.reasons(policy)
        raise ReleaseRefused("release policy: outputs are copies of their inputs: " + "; ".join(reasons))


#: words that name nothing on their own: a private string that is one of them (or a number, or one or two
#: characters) is a leak only as a whole value in a structured field, never as a word of prose
COMMON_WORDS = frozenset("""a an and the of to in on at by for with from as is it this that no yes true false none null
test train val validation image images data face faces mix method label labels split splits file files name
male female man woman left right up down top bottom small large low high""".split())
#: structured fields of a release that are the release's own vocabulary, not its people
_PUBLIC_COLUMNS = frozenset({"split", "label"})
_CONTRACT_METADATA = frozenset({b"deid.schema", b"deid.schema_version"})


def _weak(word: str, public: set[str]) -> bool:
    """A private string too common to be a leak as a word: a number, one or two characters, a common
    word, or a word of the release's own vocabulary (its splits and labels)."""
    w = word.strip().lower()
    return w.replace(".", "", 1).isdigit() or len(w) <= 2 or w in COMMON_WORDS or w in public


def _walk(doc, path: str = ""):
    """(path, key or None, string value or None) for every key and string value of a JSON/YAML document."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield f"{path}.{k}", str(k), None
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _walk(v, f"{path}[{i}]")
    elif isinstance(doc, str):
        yield path, None, doc


#: keys under which a value names a person or a source: there even a number or a common word is a leak
_IDENTIFYING_KEYS = re.compile(r"(identit|person|people|subject|who|source|file|path|group|session|sequence)",
                               re.IGNORECASE)


def find_leaks(release_dir: str | Path, private: set[str]) -> list[str]:
    """Places in a release where a private string (an identity, a source file name) occurs so that it
    can identify someone.

    A *distinctive* private string (not a number, not one or two characters, not a common word or one of
    the release's splits and labels) is a leak wherever it occurs as a word: file names, string columns,
    Parquet metadata, the manifest and the dataset card. A *weak* one (CelebA's identities are integers;
    ``1`` … ``10``, ``test`` or ``mix`` occur in any release) is a leak only where it is a whole value: a
    string cell of a non-public column, a string value in the manifest, the card's YAML or a Parquet
    metadata document under a key that names a person or a source, or a file or folder name; never a
    word of prose or a number in a table of figures."""
    release_dir = Path(release_dir)
    words = {w for w in private if w}
    if not words:
        return []
    public = _release_vocabulary(release_dir)
    strong = {w for w in words if not _weak(w, public)}
    weak = words - strong
    pattern = (re.compile(r"(?<![A-Za-z0-9])(" + "|".join(re.escape(w) for w in sorted(strong, key=len, reverse=True))
                          + r")(?![A-Za-z0-9])") if strong else None)

    def search(text: str) -> str | None:
        m = pattern.search(text) if pattern is not None else None
        return m.group(1) if m else None

    def structured(doc, where: str, found: list[str]) -> None:
        for path, key, value in _walk(doc):
            for v in (key, value):
                if v is None:
                    continue
                if (hit := search(v)) is not None:
                    found.append(f"{where} {path}: '{hit}'")
                elif v.strip() in weak and value is not None and _IDENTIFYING_KEYS.search(path.rsplit(".", 1)[-1]):
                    found.append(f"{where} {path}: '{v.strip()}'")

    found: list[str] = []
    for f in sorted(release_dir.rglob("*")):
        if f.is_dir():
            continue
        rel = f.relative_to(release_dir).as_posix()
        stems = {part.rsplit(".", 1)[0] for part in rel.split("/")} | set(rel.split("/"))
        named = {w for w in stems & weak if w.lower() not in public}  # 'data/test/...' is the split's folder
        if (hit := search(rel)) is not None or (hit := next(iter(sorted(named)), None)) is not None:
            found.append(f"file name {rel}: '{hit}'")
        if f.suffix == ".parquet":
            _scan_parquet(f, rel, search, weak, structured, found)
        elif f.suffix in (".json", ".txt", ".md"):
            _scan_text(f, rel, search, structured, found)
    return found


def _scan_text(f: Path, rel: str, search, structured, found: list[str]) -> None:
    """A text file: the manifest as a document (but its declared fields), the card's front matter as one
    (but its declared block) and its body as prose, any other file as prose."""
    text = f.read_text(errors="replace")
    if rel == MANIFEST:
        doc = json.loads(text)
        structured({k: v for k, v in doc.items() if k not in DECLARED_FIELDS}, rel, found)
        return
    if rel == CARD:
        text = _DECLARED_BLOCK.sub("", text)
        front, body = _front_matter(text)
        if front is not None:
            structured(front, f"{rel} front matter", found)
        text = body
    if (hit := search(text)) is not None:
        found.append(f"{rel}: '{hit}'")


def _front_matter(text: str):
    """The card's YAML front matter (parsed) and its body; (None, text) without one."""
    import yaml

    if not text.startswith("---\n"):
        return None, text
    head, sep, body = text[4:].partition("\n---")
    if not sep:
        return None, text
    try:
        return yaml.safe_load(head), body
    except yaml.YAMLError:
        return None, text


def _release_vocabulary(release_dir: Path) -> set[str]:
    """The release's own words: its split names and labels (public by construction)."""
    vocab = {s.lower() for s in SPLITS} | {"validation"}
    for f in sorted(release_dir.rglob("*.parquet")):
        t = pq.read_table(f, columns=[c for c in pq.read_schema(f).names if c in _PUBLIC_COLUMNS])
        for name in t.column_names:
            col = t.column(name)
            if pa.types.is_dictionary(col.type):
                col = col.cast(pa.string())
            if pa.types.is_string(col.type):  # a ClassLabel (integers) names its labels in the metadata below
                vocab |= {str(v).lower() for v in col.unique().to_pylist() if v is not None}
        meta = pq.read_metadata(f).metadata or {}
        raw = meta.get(b"huggingface")
        if raw:
            try:
                feats = json.loads(raw).get("info", {}).get("features", {})
                names = (feats.get("label") or {}).get("names") or []
                vocab |= {str(n).lower() for n in names}
            except (ValueError, AttributeError):
                pass
    return vocab


def _scan_parquet(f: Path, rel: str, search, weak: set[str], structured, found: list[str]) -> None:
    """A Parquet file: its metadata documents (but the schema's and the contract's), its string columns'
    values and its image paths."""
    md = pq.read_metadata(f)
    for k, v in (md.metadata or {}).items():
        if k == b"ARROW:schema" or k in _CONTRACT_METADATA:
            continue
        key, value = k.decode(errors="replace"), v.decode(errors="replace")
        try:
            doc = json.loads(value)
        except ValueError:
            doc = value
        structured({key: doc}, f"{rel} metadata", found)
    t = pq.read_table(f)
    for name in t.column_names:
        col = t.column(name)
        if pa.types.is_dictionary(col.type):
            col = col.cast(pa.string())
        if pa.types.is_string(col.type):
            for v in col.unique().to_pylist():
                if v is None:
                    continue
                if (hit := search(v)) is not None or (name not in _PUBLIC_COLUMNS and v.strip() in weak
                                                      and (hit := v.strip())):
                    found.append(f"{rel} column {name}: '{hit}'")
                    break
        if pa.types.is_struct(col.type):
            paths = col.combine_chunks().field("path")
            if paths.null_count != len(paths):
                found.append(f"{rel} column {name}.path is not empty")


def publish_release(anonymized_dir: str | Path, root: str | Path, dataset: str, *, method: str, manifest: dict,
                    private: set[str], private_dir: str | Path, originals_dir: str | Path,
                    policy: ReleasePolicy | None = None, run_margin: float = 1.0,
                    audit: dict[str, float] | None = None, license: str | None = None,
                    source: dict | None = None) -> ReleaseResult:
    """Publish ``anonymized_dir`` as ``<root>/<dataset>/<version>/`` with ``manifest.json``.

    ``manifest`` holds what the release may say about itself (method, settings, audit) and the run's
    internal pointers (run ids, code commit): those (:data:`INTERNAL_FIELDS`, and any field holding an
    absolute path) go to the release's private record (:func:`release_record`), the rest to the public
    manifest with the deid version; it must not hold digests of private data. ``source`` tells the
    card what the pipeline knows of the source dataset (``description``, ``synthetic``); its counts of
    people, images and labels are read from ``originals_dir``. ``private`` are strings that must not appear
    anywhere in the release (identities, source file names): if they do, nothing is published.
    ``private_dir`` (under the work directory, never published) keeps the secret key and the index
    that lets a rerun find its version; ``originals_dir`` is the ingested ``images`` table every
    output is compared with. ``policy`` (the release owner's floors; when None, the one
    :func:`deid.release_policy.release_policy` finds) is applied
    to ``audit`` (the method's audit metrics; the margin is the stricter of ``run_margin`` and the
    policy's) and to every image, before anything is written.
    Concurrent publishers serialise on a lock; a version that exists is reused, never rewritten.
    ``license`` (else ``manifest["license"]``, else ``unknown``) goes to the manifest and the card.
    """
    from data_contracts import digest_table

    policy = policy or release_policy()
    if audit is not None and (reasons := privacy_floor(policy, audit, run_margin)):
        raise ReleaseRefused("; ".join(reasons))
    private_dir = Path(private_dir)
    digest = digest_table(anonymized_dir)
    # The key names the data and the settings, not the run: run ids and audit timings vary.
    license = license or manifest.get("license") or "unknown"
    spec = {"dataset": dataset, "method": method, "license": license,
            "manifest": {k: v for k, v in manifest.items() if k not in _RUN_SPECIFIC}}
    key = _content_key(private_dir, digest, spec)
    public, internal = _internal(manifest)
    with FileLock(str(private_dir / ".release.lock")):
        index = _read_index(private_dir)
        version = index.get(key)
        if version and (Path(root) / dataset / version / MANIFEST).exists():
            final = Path(root) / dataset / version
            rows = json.loads((final / MANIFEST).read_text())["rows"]
            _note_run(private_dir, dataset, version, final, originals_dir, internal, reused=True)
            return ReleaseResult(final, version, True, rows)
        if version is None:
            version = "v-" + secrets.token_hex(6)
            # Recorded before publishing, so an interrupted run publishes the same version when rerun.
            _write_index(private_dir, {**index, key: version})
        final = Path(root) / dataset / version
        scrubbed, labels = _releasable_table(anonymized_dir, originals_dir, policy)
        facts = _source_facts(originals_dir, labels, source, dataset)
        with atomic_dir(final) as tmp:
            _write_release(tmp, scrubbed, labels, dataset=dataset, version=version, method=method, license=license,
                           public=public, policy=policy, audit=audit, facts=facts, private=private)
        _note_run(private_dir, dataset, version, final, originals_dir, internal, reused=False)
        return ReleaseResult(final, version, False, scrubbed.num_rows)


def _releasable_table(anonymized_dir: str | Path, originals_dir: str | Path, policy: ReleasePolicy
                      ) -> tuple[pa.Table, list[str] | None]:
    """The outputs checked for near copies of their inputs, scrubbed (:func:`_scrub`), and their labels."""
    table = read_table(anonymized_dir, ANONYMIZED_SCHEMA)
    _check_near_copies(table, originals_dir, policy)
    labels = table_labels(anonymized_dir)
    if labels is None and table.column("label").null_count < table.num_rows:
        labels = sorted(v for v in table.column("label").unique().to_pylist() if v is not None)
    return _scrub(table), labels


def _write_release(tmp: Path, scrubbed: pa.Table, labels: list[str] | None, *, dataset: str, version: str,
                   method: str, license: str, public: dict, policy: ReleasePolicy, audit: dict[str, float] | None,
                   facts: dict, private: set[str]) -> None:
    """The release's files in ``tmp``: each split's Parquet, the manifest and the card; a
    :class:`LeakError` when any of them holds a private string."""
    for s in SPLITS:
        part = scrubbed.filter(pa.compute.equal(scrubbed.column("split"), s))
        if part.num_rows:
            with TableWriter(tmp / "data" / s, RELEASE_SCHEMA, prefix="part", labels=labels) as w:
                w.write(part)
    parquet = sorted(tmp.rglob("*.parquet"))
    nbytes = {s: _arrow_bytes(sorted((tmp / "data" / s).glob("*.parquet"))) for s in SPLITS
              if (tmp / "data" / s).is_dir()}
    files = {p.relative_to(tmp).as_posix(): _sha256_file(p) for p in parquet}
    doc = {"dataset": dataset, "version": version, "method": method, "rows": scrubbed.num_rows,
           "rows_by_split": {s: int(pa.compute.sum(pa.compute.equal(scrubbed.column("split"), s)).as_py() or 0)
                             for s in SPLITS},
           **public, "deid_version": __version__, "license": license, "labels": labels,
           "release_policy": policy.record(), "files": files, "notice": NOTICE}
    (tmp / MANIFEST).write_text(json.dumps(doc, indent=2, sort_keys=True, default=str))
    (tmp / CARD).write_text(dataset_card(
        dataset=dataset, method=method, params=public.get("method_params") or {}, license=license,
        rows_by_split=doc["rows_by_split"], labels=labels, audit=audit if audit is not None
        else public.get("audit"), verdict=public.get("verdict"), policy=policy.model_dump(),
        version=version, bytes_by_split=nbytes, download_size=sum(p.stat().st_size for p in parquet),
        source=facts, preprocess=public.get("preprocess")))
    leaks = find_leaks(tmp, private)
    if leaks:
        raise LeakError(f"release of '{dataset}' would leak private data: {leaks[:5]}")


class NotARelease(DeidError):
    """A folder that is not a published release, or not as it was published; the message says why."""


@dataclass
class ReleaseCheck:
    """A release that passed :func:`check_release`: what it is and every file it holds (relative path,
    bytes), the manifest and the card first."""

    path: Path
    dataset: str
    version: str
    files: list[tuple[str, int]]
    scanned: int


def check_release(release_dir: str | Path, private_dir: str | Path) -> ReleaseCheck:
    """What a release folder must pass before it leaves the machine: it has a manifest and a card, holds
    exactly the files the manifest lists (no link, nothing added) with their checksums, and the leak
    scan finds none of its input's identities or source file names, read from the input table its
    private record (under ``private_dir``) names. Raises :class:`NotARelease` or :class:`LeakError`."""
    d = Path(release_dir)
    if not d.is_dir():
        raise NotARelease(f"{d} is not a folder")
    missing = [n for n in (MANIFEST, CARD) if not (d / n).is_file()]
    if missing:
        raise NotARelease(f"{d} is not a deid release: it has no {' and no '.join(missing)}")
    try:
        doc = json.loads((d / MANIFEST).read_text())
        listed, dataset, version = dict(doc["files"]), str(doc["dataset"]), str(doc["version"])
    except (ValueError, KeyError, TypeError) as exc:
        raise NotARelease(f"{d / MANIFEST} is not a deid release manifest ({type(exc).__name__}: {exc})") from None
    links = sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_symlink())
    if links:
        raise NotARelease(f"{d} holds symbolic links: {links[:5]}")
    on_disk = {p.relative_to(d).as_posix(): p.stat().st_size for p in d.rglob("*") if p.is_file()}
    extra = sorted(set(on_disk) - set(listed) - {MANIFEST, CARD})
    if extra:
        raise NotARelease(f"{d} holds files its manifest does not list: {extra[:5]}")
    for rel, digest in sorted(listed.items()):
        if rel not in on_disk:
            raise NotARelease(f"{d}: {rel}, listed in the manifest, is missing")
        if _sha256_file(d / rel) != digest:
            raise NotARelease(f"{d}: {rel} does not match the manifest's checksum")
    record = release_record(private_dir, dataset, version)
    if record is None:
        raise NotARelease(f"no private record of release {dataset} {version} under {private_dir}: the leak scan "
                          "needs the input it was made from (give the work directory of the run that published it)")
    originals = Path(record["originals_dir"])
    if not originals.is_dir():
        raise NotARelease(f"the input of release {dataset} {version} ({originals}) is gone: the leak scan needs it")
    private = private_strings(originals)
    leaks = find_leaks(d, private)
    if leaks:
        raise LeakError(f"release {dataset} {version} holds private data of its input: {leaks[:5]}")
    files = [(n, on_disk[n]) for n in (CARD, MANIFEST)] + sorted((k, v) for k, v in on_disk.items()
                                                                if k not in (CARD, MANIFEST))
    return ReleaseCheck(d, dataset, version, files, len(private))
