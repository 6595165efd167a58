"""Publishing a release: the de-identified images and utility labels only, shuffled, with fresh
ids, a manifest with checksums, written atomically under a lock.

Nothing identity-bearing leaves: no identity column, no source path or file name, no original
pixels, no input row ids. :func:`find_leaks` scans a release for given private strings and
:func:`publish_release` refuses to finish when it finds any.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq

from data_contracts import ANONYMIZED_SCHEMA, RELEASE_SCHEMA, SPLITS, TableWriter, atomic_dir, read_table
from deid.errors import DeidError

__all__ = ["ReleaseResult", "publish_release", "release_version", "find_leaks", "LeakError", "MANIFEST"]

MANIFEST = "manifest.json"
_RUN_SPECIFIC = ("mlflow_run_id", "audit")


class LeakError(DeidError):
    """A release would carry private data; the message says what and where."""


@dataclass
class ReleaseResult:
    path: Path
    version: str
    reused: bool
    rows: int


def release_version(anonymized_digest: str, spec: dict) -> str:
    """Content-derived version: the same data and settings give the same version."""
    h = hashlib.sha256(anonymized_digest.encode() + json.dumps(spec, sort_keys=True, default=str).encode())
    return "v-" + h.hexdigest()[:12]


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _scrub(table: pa.Table, version: str, seed: int) -> pa.Table:
    n = table.num_rows
    key = int.from_bytes(hashlib.sha256(f"{version}|{seed}".encode()).digest()[:8], "little")
    order = np.random.default_rng(key).permutation(n)
    t = table.take(pa.array(order))
    ids = [hashlib.sha256(f"{version}|{i}".encode()).hexdigest()[:16] for i in range(n)]
    images = t.column("image").combine_chunks()
    image = pa.StructArray.from_arrays([images.field("bytes"), pa.nulls(n, pa.string())], ["bytes", "path"])
    return pa.table({
        "release_id": pa.array(ids, pa.string()), "split": t.column("split"), "expression": t.column("expression"),
        "image": image, "height": t.column("height"), "width": t.column("width"), "channels": t.column("channels"),
    })


def find_leaks(release_dir: str | Path, private: set[str]) -> list[str]:
    """Places in a release (string columns, Parquet metadata, manifest) where a private string occurs as a word."""
    release_dir = Path(release_dir)
    words = {w for w in private if w}
    if not words:
        return []
    pattern = re.compile(r"(?<![A-Za-z0-9])(" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + r")(?![A-Za-z0-9])")
    found = []
    for f in sorted(release_dir.rglob("*")):
        if f.is_dir():
            continue
        rel = f.relative_to(release_dir).as_posix()
        if m := pattern.search(rel):
            found.append(f"file name {rel}: '{m.group(1)}'")
        if f.suffix == ".parquet":
            md = pq.read_metadata(f)
            meta = {**(md.metadata or {})}
            for k, v in meta.items():
                if k == b"ARROW:schema":
                    continue
                if m := pattern.search(k.decode(errors="replace") + " " + v.decode(errors="replace")):
                    found.append(f"{rel} metadata: '{m.group(1)}'")
            t = pq.read_table(f)
            for name in t.column_names:
                col = t.column(name)
                if pa.types.is_string(col.type):
                    for v in col.unique().to_pylist():
                        if v is not None and (m := pattern.search(v)):
                            found.append(f"{rel} column {name}: '{m.group(1)}'")
                            break
                if pa.types.is_struct(col.type):
                    paths = col.combine_chunks().field("path")
                    if paths.null_count != len(paths):
                        found.append(f"{rel} column {name}.path is not empty")
        elif f.suffix in (".json", ".txt", ".md"):
            if m := pattern.search(f.read_text(errors="replace")):
                found.append(f"{rel}: '{m.group(1)}'")
    return found


def publish_release(anonymized_dir: str | Path, root: str | Path, dataset: str, *, method: str, manifest: dict,
                    private: set[str], seed: int = 0) -> ReleaseResult:
    """Publish ``anonymized_dir`` as ``<root>/<dataset>/<version>/`` with ``manifest.json``.

    ``manifest`` holds what the release may say about itself (method, settings, audit, digests,
    run id); it must not hold paths. ``private`` are strings that must not appear anywhere in
    the release (identities, source file names): if they do, nothing is published.
    Concurrent publishers serialise on a lock; a version that exists is reused, never rewritten.
    """
    from data_contracts import digest_table

    digest = digest_table(anonymized_dir)
    # The version names the data and the settings, not the run: run ids and audit timings vary.
    spec = {"method": method, "manifest": {k: v for k, v in manifest.items() if k not in _RUN_SPECIFIC}}
    version = release_version(digest, spec)
    final = Path(root) / dataset / version
    with _locked(Path(root) / dataset / ".lock"):
        if (final / MANIFEST).exists():
            rows = json.loads((final / MANIFEST).read_text())["rows"]
            return ReleaseResult(final, version, True, rows)
        table = read_table(anonymized_dir, ANONYMIZED_SCHEMA)
        scrubbed = _scrub(table, version, seed)
        with atomic_dir(final) as tmp:
            for s in SPLITS:
                part = scrubbed.filter(pa.compute.equal(scrubbed.column("split"), s))
                if part.num_rows:
                    with TableWriter(tmp / "data" / s, RELEASE_SCHEMA, prefix="part") as w:
                        w.write(part)
            files = {p.relative_to(tmp).as_posix(): _sha256_file(p) for p in sorted(tmp.rglob("*.parquet"))}
            doc = {"dataset": dataset, "version": version, "method": method, "rows": scrubbed.num_rows,
                   "rows_by_split": {s: int(pa.compute.sum(pa.compute.equal(scrubbed.column("split"), s)).as_py() or 0)
                                     for s in SPLITS},
                   "anonymized_digest": digest, **manifest, "files": files,
                   "notice": "De-identified images and utility labels only; no identities, source names or original pixels."}
            (tmp / MANIFEST).write_text(json.dumps(doc, indent=2, sort_keys=True, default=str))
            leaks = find_leaks(tmp, private)
            if leaks:
                raise LeakError(f"release of '{dataset}' would leak private data: {leaks[:5]}")
        return ReleaseResult(final, version, False, scrubbed.num_rows)
