"""Ingest a dataset from its on-disk layout into the Parquet image contract.

``scan`` (the dataset's loader) → content hashes → label-conflict check → split assignment →
header check / decode / preprocess / PNG-encode in worker processes → validated,
row-group-streamed Parquet, written atomically. Every input file ends as exactly one written row
or one quarantine row with its reason, and a file that breaks its decoder never stops the batch;
every other entry the scan saw is counted by the rule that skipped it. :class:`IngestSummary`
carries both reconciliations: ``input = written + quarantined`` and ``seen = input + skipped``.

Reuse is keyed on the files' content (sha256), not on their size and modification time.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
import warnings
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import pyarrow as pa
from pydantic import BaseModel

from data_contracts import (IMAGES_SCHEMA, QUARANTINE_SCHEMA, SCHEMA_VERSION, SPLITS, TableWriter, atomic_dir,
                            digest_table)
from deid import __version__
from deid.datasets import SourceItem, get_loader
from deid.datasets.base import GROUP_PATTERN, apply_group_pattern, compile_group_pattern
from deid.errors import DatasetLayoutError, DeidError, ImageDecodeError
from deid.faces import apply_exif_orientation
from deid.faces_dask import DaskConfig
from deid.imageio import ImageRefusedError, check_header, decode_image, encode_png
from deid.preprocessing import PreprocessConfig, preprocess_image
from deid.splits import (
    NEAR_DUPLICATE_BITS,
    SplitConfig,
    NearDuplicates,
    SplitLeakWarning,
    assign_splits,
    image_hash64,
    near_duplicates_across_splits,
)

__all__ = ["IngestSummary", "ingest_dataset", "process_file", "load_summary", "utility_label_names", "SplitLeak",
           "split_leak"]

SUMMARY_FILE = "summary.json"


class IngestSummary(BaseModel):
    """What one ingest did. ``input = written + quarantined``; ``seen = input + sum(skipped)``.

    ``input`` counts the files the loader offered as images (each is written or quarantined);
    ``seen`` counts every entry the scan looked at, and ``skipped`` the ones it left out on
    purpose, by rule (hidden files, documentation, FIFOs, folders named like images, ...).
    ``identities`` and ``utility_labels`` describe the written rows only. ``notes`` counts
    written rows that were changed on the way in (e.g. page 1 kept of a multi-page file).
    ``seen`` is ``None`` in summaries written before it existed.
    ``near_duplicates_across_splits`` counts (train or val, test) pairs of written images of one
    identity whose perceptual hashes differ in at most 2 bits, and ``notes`` how many test images
    have such a copy; ``None`` in summaries written before the check existed. ``groups`` counts the
    groups (a recording or session kept in one split) the loader or ``group_pattern`` gave the written
    rows, ``None`` when they have none: with groups, a near-duplicate across splits is a look-alike from
    another group, not a frame of the same one (:func:`split_leak`).
    """

    dataset: str
    source: str
    input: int
    written: int
    quarantined: int
    by_split: dict[str, int]
    quarantine_reasons: dict[str, int]
    identities: int
    utility_labels: list[str]
    digest: str
    fingerprint: str
    seconds: float
    images_per_s: float
    reused: bool = False
    faces: dict[str, int] = {}  # face-stage events (detected, cached, kept largest, ...) when align="dlib"
    seen: int | None = None
    skipped: dict[str, int] = {}
    notes: dict[str, int] = {}
    near_duplicates_across_splits: int | None = None
    groups: int | None = None  # distinct groups (recordings, sessions) among the written rows; None: no groups

    def reconciles(self) -> bool:
        ok = self.input == self.written + self.quarantined
        if self.seen is not None:
            ok = ok and self.seen == self.input + sum(self.skipped.values())
        return ok


@dataclass(frozen=True)
class Processed:
    sha256: str
    png: bytes
    height: int
    width: int
    channels: int
    face_events: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # what was changed on the way in, counted in IngestSummary.notes
    phash: int = 0  # perceptual hash of the written image (deid.splits.image_hash64)


NOTE_FIRST_PAGE = "kept page 1 of a multi-page file"
NOTE_NEAR_DUPLICATE = (f"test images with a near-duplicate of the same identity in train/val "
                       f"(perceptual hash within {NEAR_DUPLICATE_BITS} bits)")
NOTE_NEAR_DUPLICATE_CAPPED = "near-duplicate search stopped at its work cap (the counts are lower bounds)"


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def process_file(path: str | tuple[str, bytes], cfg: PreprocessConfig) -> Processed | str:
    """Read, hash, check, decode, preprocess and encode one file; a string is the quarantine reason.

    ``path`` may also be ``(name, bytes)``: an image that a table input holds in memory.

    The header is checked against ``cfg.max_pixels``, ``cfg.min_side`` and ``cfg.multipage``
    before any pixel is decoded; refusals read ``too many pixels: ...``, ``too small: ...`` or
    ``multi-page: ...``. Any exception of a decoder or of preprocessing becomes a reason naming
    the file, so one file never stops a batch.
    """
    if isinstance(path, tuple):  # (name, bytes): an image held in a table, not a file
        name, data = path
        if len(data) > cfg.max_file_bytes:
            return f"too large: {name}: {len(data):,} bytes > max_file_bytes {cfg.max_file_bytes:,}"
    else:
        name = os.path.basename(path)
        try:
            st = os.stat(path)
            if not stat.S_ISREG(st.st_mode):  # a FIFO would block the read forever
                return "unreadable: not a regular file"
            if st.st_size > cfg.max_file_bytes:  # decided from the size alone: a 40 GB sparse file is never read
                return f"too large: {name}: {st.st_size:,} bytes > max_file_bytes {cfg.max_file_bytes:,}"
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            return f"unreadable: {exc.strerror or exc}"
        except MemoryError:
            return f"unreadable: {name}: out of memory reading the file"
    sha = hashlib.sha256(data).hexdigest()
    face_events: list[str] = []
    notes: list[str] = []
    try:
        header = check_header(data, where=name, max_pixels=cfg.max_pixels, min_side=cfg.min_side,
                              multipage=cfg.multipage)
        if header.frames > 1:
            notes.append(NOTE_FIRST_PAGE)
        img = decode_image(data, where=name)
        h, w = img.shape[:2]
        if h * w > cfg.max_pixels or min(h, w) < cfg.min_side:  # the decoder read another size than the header
            raise ImageRefusedError(f"{'too small' if min(h, w) < cfg.min_side else 'too many pixels'}: {name}: "
                                    f"decoded {w}×{h}, the header said {header.width}×{header.height}")
        if cfg.faces.exif:  # photos stored sideways with an EXIF orientation tag are turned upright
            img = apply_exif_orientation(img, data)
        if cfg.align != "none":
            from deid.faces import align_face  # in-the-wild photos only

            img = align_face(img, data_sha256=sha, cfg=cfg, where=name, events=face_events)
        out = preprocess_image(img, cfg)
    except ImageRefusedError as exc:
        return str(exc)
    except (ImageDecodeError, DeidError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - whatever a decoder raises stays with its file
        return f"{type(exc).__name__}: {name}: {_one_line(exc)}"
    h, w = out.shape[:2]
    return Processed(sha, encode_png(out), h, w, 1 if out.ndim == 2 else out.shape[2], tuple(face_events),
                     tuple(notes), image_hash64(out))


def _process_chunk(args: tuple[list[str], dict]) -> list[Processed | str]:
    paths, cfg_dict = args
    cfg = PreprocessConfig(**cfg_dict)
    return [process_file(p, cfg) for p in paths]


def _sha256_file(path: Path, limit: int | None = None) -> str | None:
    """The file's sha256, or ``None`` when it is not a regular file, cannot be read or is over ``limit``
    bytes (the decode step quarantines it by its size)."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode) or (limit is not None and st.st_size > limit):
            return None
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        return None


def _sha256_item(it: SourceItem, limit: int | None = None) -> str | None:
    return hashlib.sha256(it.data).hexdigest() if it.data is not None else _sha256_file(it.path, limit)


def _content_hashes(items: list[SourceItem], workers: int, limit: int | None = None) -> list[str | None]:
    """sha256 of every item's bytes (threads: hashing and reading release the GIL); files over ``limit``
    bytes are not read. Each thread takes 256 items at a time: one future per file cost more than hashing a
    small one (a thread pool's ``map`` has no ``chunksize``)."""
    if workers <= 1 or len(items) < 256:
        return [_sha256_item(it, limit) for it in items]
    with ThreadPoolExecutor(min(workers, 8)) as pool:
        parts = pool.map(lambda part: [_sha256_item(it, limit) for it in part], _chunks(items, 256))
        return [sha for part in parts for sha in part]


def _job_input(it: SourceItem) -> str | tuple[str, bytes]:
    return (it.relpath.rsplit("/", 1)[-1], it.data) if it.data is not None else str(it.path)


def _fingerprint(dataset: str, items: list[SourceItem], hashes: list[str | None], rejected,
                 skipped: dict[str, int], preprocess: PreprocessConfig, split: SplitConfig, options: dict) -> str:
    """Everything the output depends on: settings, and each file's path, labels and content hash."""
    h = hashlib.sha256()
    h.update(json.dumps({"dataset": dataset, "preprocess": preprocess.model_dump(), "split": split.model_dump(),
                         "options": options, "version": __version__, "skipped": skipped,
                         "schema_version": SCHEMA_VERSION},
                        sort_keys=True, default=str).encode())
    for it, sha in zip(items, hashes):
        group = f"|{it.group}" if it.group is not None else ""
        h.update(f"{it.relpath}|{sha or 'unreadable'}|{it.identity}|{it.label}|{it.split}{group}\n".encode())
        if it.attributes:
            h.update(json.dumps(it.attributes, sort_keys=True).encode())
    for r in rejected:
        h.update(f"R|{r.relpath}|{r.reason}\n".encode())
    return h.hexdigest()[:20]


def _label_conflicts(items: list[SourceItem], hashes: list[str | None]) -> dict[int, str]:
    """Items whose bytes also sit under another identity: ``{index: quarantine reason}``.

    Every copy is quarantined, since no copy's label can be trusted over the others'.
    Copies under one identity are plain duplicates and are left to the dedupe step.
    """
    by_sha: dict[str, list[int]] = defaultdict(list)
    for i, sha in enumerate(hashes):
        if sha is not None:
            by_sha[sha].append(i)
    out: dict[int, str] = {}
    for idx in by_sha.values():
        n_ids = len({items[i].identity for i in idx})
        if n_ids < 2:
            continue
        for i in idx:
            others = [items[j].relpath for j in idx if j != i]
            more = f" and {len(others) - 3} more" if len(others) > 3 else ""
            out[i] = (f"label conflict: the same bytes are filed under {n_ids} identities "
                      f"(also {', '.join(others[:3])}{more})")
    return out


def _utility_from_attribute(items: list[SourceItem], rejected: list, attr: str, dataset: str):
    from dataclasses import replace

    from deid.datasets.base import Rejected

    known = {k for it in items for k in (it.attributes or {})}
    if attr not in known:
        raise DatasetLayoutError(f"{dataset}: no image has attribute '{attr}'; known attributes: {sorted(known)[:50]}")
    kept = []
    for it in items:
        v = (it.attributes or {}).get(attr)
        if v is None:
            rejected.append(Rejected(it.relpath, f"no '{attr}' attribute for the utility label"))
        else:
            kept.append(replace(it, label=attr if v > 0 else f"not {attr}"))
    return kept, rejected


def utility_label_names(items: list[SourceItem], declared: list[str] | None = None) -> list[str] | None:
    """The utility label's names in ClassLabel order: the loader's declared vocabulary (a config's
    ``labels``), else every label the items carry, sorted; ``None`` when no item has one."""
    if declared:
        return list(declared)
    found = sorted({it.label for it in items if it.label is not None})
    return found or None


def load_summary(out_dir: str | Path) -> IngestSummary | None:
    f = Path(out_dir) / SUMMARY_FILE
    if not f.exists():
        return None
    return IngestSummary.model_validate_json(f.read_text())


def _chunks(seq: list, n: int):
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


@dataclass
class _Scanned:
    """What the loader's scan offered: the items to decode, the entries it rejected, the entries it
    skipped by rule, the utility label's declared names, and the options the output depends on."""

    items: list[SourceItem]
    rejected: list
    skipped: dict[str, int]
    declared_labels: list[str] | None
    options: dict

    @property
    def n_input(self) -> int:
        return len(self.items) + len(self.rejected)

    @property
    def n_seen(self) -> int:
        return self.n_input + sum(self.skipped.values())


def _scan(dataset: str, root: Path, loader_options: dict | None, utility_attribute: str | None) -> _Scanned:
    """The loader's scan of ``root``, with the group pattern and the utility attribute applied."""
    loader = get_loader(dataset)
    options = dict(loader_options or {})
    loader.check_options(options)
    group_pattern = options.get(GROUP_PATTERN)
    if group_pattern is not None:
        compile_group_pattern(group_pattern)
    scan = loader.scan(root, **{k: v for k, v in options.items() if k != GROUP_PATTERN})
    items, rejected = scan.items, scan.rejected
    if group_pattern is not None:
        items = apply_group_pattern(items, group_pattern)
    skipped = dict(sorted(getattr(scan, "skipped", {}).items()))
    declared = getattr(scan, "labels", None)
    if utility_attribute:
        items, rejected = _utility_from_attribute(items, list(rejected), utility_attribute, dataset)
        options["utility_attribute"] = utility_attribute
        declared = None
    out = _Scanned(items, rejected, skipped, declared, options)
    if out.n_input == 0:
        raise DatasetLayoutError(f"{dataset}: no files found under {root} (skipped: {skipped or 'nothing'})")
    return out


def _quarantine_row(dataset: str, relpath: str, stage: str, reason: str, sha: str | None) -> dict:
    return {"dataset": dataset, "source_path": relpath, "stage": stage, "reason": reason, "source_sha256": sha}


def _screen(dataset: str, scanned: _Scanned, hashes: list[str | None]) -> tuple[list[SourceItem], list[str | None],
                                                                                list[dict]]:
    """The items left to decode and their hashes once label conflicts are out, and the quarantine rows so far
    (the scan's rejections, then every copy of a label conflict)."""
    items = scanned.items
    rows = [_quarantine_row(dataset, r.relpath, "scan", r.reason, None) for r in scanned.rejected]
    conflicts = _label_conflicts(items, hashes)
    rows += [_quarantine_row(dataset, items[i].relpath, "dedupe", conflicts[i], hashes[i]) for i in sorted(conflicts)]
    if not conflicts:
        return items, hashes, rows
    keep = [i for i in range(len(items)) if i not in conflicts]
    return [items[i] for i in keep], [hashes[i] for i in keep], rows


def _warm() -> None:
    """A worker's first task: importing this module (to unpickle it) is the worker's start-up."""


class _Workers:
    """Where the decode chunks run: in this process, in a pool of spawned processes, or on Dask.

    :meth:`start` may be called early, so that the processes import their modules while this one hashes the
    files; :meth:`map` starts them if nobody did, and :meth:`close` stops them.
    """

    def __init__(self, workers: int, preprocess: PreprocessConfig, dask: DaskConfig | None):
        self.workers = workers
        self.align = preprocess.align
        self.dask = dask
        self._pool: ProcessPoolExecutor | None = None

    @property
    def use_dask(self) -> bool:
        return self.dask is not None or (self.align == "dlib" and self.workers > 1)

    def start(self) -> None:
        if self._pool is None and not self.use_dask and self.workers > 1:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"))
            for _ in range(self.workers):
                self._pool.submit(_warm)

    def map(self, jobs: list):
        """Each job's results, in the jobs' order."""
        if self.use_dask:
            from deid.faces_dask import dask_map

            yield from dask_map(_process_chunk, jobs, self.dask or DaskConfig(n_workers=self.workers))
        elif self.workers <= 1:
            self.close()
            for j in jobs:
                yield _process_chunk(j)
        else:
            self.start()
            yield from self._pool.map(_process_chunk, jobs)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


class _Rows:
    """The rows an ingest writes: each decoded file becomes an image row of its split, or a quarantine row
    (decode failure, changed since it was hashed, duplicate of an earlier file); counts for the summary.

    Image rows are handed to the split's writer in batches of :data:`_WRITE_BATCH`; the writer cuts its own
    fixed-size row groups, so the files do not depend on the batches.
    """

    def __init__(self, dataset: str, tmp: Path, label_names: list[str] | None, quarantine: list[dict]):
        self.dataset = dataset
        self.quarantine = quarantine
        # one folder per split that has rows (train, val, test): ``datasets`` reads them as its splits
        self.writers = {s: TableWriter(tmp / "images" / s, IMAGES_SCHEMA, labels=label_names, write_empty=False)
                        for s in SPLITS}
        self.pending: dict[str, list[dict]] = {s: [] for s in SPLITS}
        self.first_of: dict[str, str] = {}  # sha256 → the relpath written for it
        self.by_split: Counter[str] = Counter()
        self.identities: set[str] = set()
        self.labels: set[str] = set()
        self.groups: set[str] = set()
        self.faces: Counter[str] = Counter()
        self.notes: Counter[str] = Counter()
        self.phashes: list[tuple[int, str, str]] = []  # (perceptual hash, split, identity) per written row

    def add(self, it: SourceItem, split: str, sha: str | None, out: Processed | str) -> None:
        if isinstance(out, str):
            return self._refuse(it, "decode", out, sha)
        if out.sha256 != sha:  # rewritten between the hash pass and the decode
            return self._refuse(it, "decode", "changed during ingest: the bytes decoded differ from the bytes "
                                              "hashed at the start", out.sha256)
        if out.sha256 in self.first_of:
            return self._refuse(it, "dedupe", f"duplicate of {self.first_of[out.sha256]}", out.sha256)
        self.first_of[out.sha256] = it.relpath
        self.faces.update(out.face_events)
        self.notes.update(out.notes)
        self.identities.add(it.identity)
        if it.label is not None:
            self.labels.add(it.label)
        if it.group is not None:
            self.groups.add(str(it.group))
        self.pending[split].append({
            "image_id": out.sha256[:16], "dataset": self.dataset, "split": split, "identity": it.identity,
            "label": it.label,
            "attributes": [{"name": k, "value": v} for k, v in it.attributes.items()] if it.attributes else None,
            "group": None if it.group is None else str(it.group),
            "image": {"bytes": out.png, "path": it.relpath},
            "height": out.height, "width": out.width, "channels": out.channels,
            "source_path": it.relpath, "source_sha256": out.sha256,
        })
        self.by_split[split] += 1
        self.phashes.append((out.phash, split, it.identity))

    def _refuse(self, it: SourceItem, stage: str, reason: str, sha: str | None) -> None:
        self.quarantine.append(_quarantine_row(self.dataset, it.relpath, stage, reason, sha))

    def flush(self, *, final: bool = False) -> None:
        for s, rows in self.pending.items():
            if rows and (final or len(rows) >= _WRITE_BATCH):
                self.writers[s].write(pa.Table.from_pylist(rows, schema=IMAGES_SCHEMA))
                self.pending[s] = []
        if final:
            for w in self.writers.values():
                w.close()

    @property
    def written(self) -> int:
        return sum(self.by_split.values())


_WRITE_BATCH = 512


def _decode_and_write(dataset: str, items: list[SourceItem], hashes: list[str | None], splits: list[str],
                      jobs: list, workers: _Workers, rows: _Rows, progress: bool) -> None:
    """Every item decoded (in ``workers``) and added to ``rows``, in the items' order."""
    from tqdm.auto import tqdm

    pos = 0
    with tqdm(total=len(items), desc=f"ingest {dataset}", unit="img", disable=not progress) as bar:
        for res in workers.map(jobs):
            for out in res:
                rows.add(items[pos], splits[pos], hashes[pos], out)
                pos += 1
            rows.flush()
            bar.update(len(res))
    rows.flush(final=True)


def _write_quarantine(tmp: Path, rows: list[dict]) -> Counter[str]:
    """The quarantine table, and its rows counted by stage and the reason's first words."""
    with TableWriter(tmp / "quarantine", QUARANTINE_SCHEMA) as qw:
        if rows:
            qw.write(pa.Table.from_pylist(rows, schema=QUARANTINE_SCHEMA))
    return Counter(q["stage"] + ": " + q["reason"].split(":")[0] for q in rows)


def _near_duplicates(rows: _Rows) -> NearDuplicates:
    """Near-duplicates across splits among the written rows (indexed by hash blocks, not all pairs), noted."""
    near = near_duplicates_across_splits([h for h, _, _ in rows.phashes], [s for _, s, _ in rows.phashes],
                                         [i for _, _, i in rows.phashes])
    if near.test_items:
        rows.notes[NOTE_NEAR_DUPLICATE] = near.test_items
    if not near.complete:
        rows.notes[NOTE_NEAR_DUPLICATE_CAPPED] = 1
    return near


def _summary(dataset: str, root: Path, scanned: _Scanned, rows: _Rows, reasons: Counter[str], near: NearDuplicates,
             n_decoded: int, digest: str, fingerprint: str, seconds: float) -> IngestSummary:
    return IngestSummary(
        dataset=dataset, source=root.name, input=scanned.n_input, written=rows.written,
        quarantined=len(rows.quarantine), by_split={s: rows.by_split.get(s, 0) for s in SPLITS},
        quarantine_reasons=dict(sorted(reasons.items())), identities=len(rows.identities),
        utility_labels=sorted(rows.labels), digest=digest, fingerprint=fingerprint, seconds=round(seconds, 3),
        images_per_s=round(n_decoded / seconds, 1) if seconds > 0 else 0.0, faces=dict(sorted(rows.faces.items())),
        seen=scanned.n_seen, skipped=scanned.skipped, notes=dict(sorted(rows.notes.items())),
        near_duplicates_across_splits=near.pairs, groups=len(rows.groups) or None,
    )


def ingest_dataset(
    dataset: str,
    root: str | Path,
    out_dir: str | Path,
    *,
    preprocess: PreprocessConfig = PreprocessConfig(),
    split: SplitConfig = SplitConfig(),
    workers: int | None = None,
    chunk: int = 64,
    progress: bool = False,
    loader_options: dict | None = None,
    dask: DaskConfig | None = None,
    utility_attribute: str | None = None,
) -> IngestSummary:
    """Ingest ``root`` (in ``dataset``'s layout) into ``out_dir/images`` and ``out_dir/quarantine``.

    Rerunning with the same files (compared by sha256 of their bytes, so a rewrite that keeps
    size and modification time is seen) and settings reuses the existing output (``reused=True``)
    and rewrites nothing; a changed input or setting rebuilds the whole directory atomically, with
    byte-identical Parquet for identical input. Identical bytes filed under two identities are a
    label conflict: every copy is quarantined. With ``preprocess.align == "dlib"`` and more than
    one worker (or a ``dask`` config, e.g. a scheduler address), the chunks run on a Dask cluster.
    ``utility_attribute`` (e.g. CelebA's ``Smiling``) makes a binary attribute the utility label:
    ``<attr>`` when its score is positive, ``not <attr>`` otherwise; images without it are quarantined.
    """
    t0 = time.perf_counter()
    root, out_dir = Path(root), Path(out_dir)
    workers = workers if workers is not None else (os.cpu_count() or 1)
    scanned = _scan(dataset, root, loader_options, utility_attribute)
    pool = _Workers(workers, preprocess, dask)
    try:
        if len(scanned.items) >= 4 * chunk and load_summary(out_dir) is None:  # nothing to reuse: the workers
            pool.start()  # start while the files are hashed
        return _ingest(dataset, root, out_dir, scanned, preprocess, split, pool, chunk, progress, t0)
    finally:
        pool.close()


def _ingest(dataset: str, root: Path, out_dir: Path, scanned: _Scanned, preprocess: PreprocessConfig,
            split: SplitConfig, pool: _Workers, chunk: int, progress: bool, t0: float) -> IngestSummary:
    hashes = _content_hashes(scanned.items, pool.workers, preprocess.max_file_bytes)
    fp = _fingerprint(dataset, scanned.items, hashes, scanned.rejected, scanned.skipped, preprocess, split,
                      scanned.options)
    prev = load_summary(out_dir)
    if prev is not None and prev.fingerprint == fp and (out_dir / "images").is_dir():
        _warn_near_duplicates(prev)
        return prev.model_copy(update={"reused": True})

    items, hashes, quarantine = _screen(dataset, scanned, hashes)
    label_names = utility_label_names(items, scanned.declared_labels)
    splits = assign_splits([it.relpath for it in items], [it.identity for it in items],
                           [it.label for it in items], split, groups=[it.group for it in items])
    splits = [it.split or s for it, s in zip(items, splits)]
    if len(items) < 4 * chunk:
        pool.workers = 1
    from deid.faces import with_default_cache

    job_cfg = with_default_cache(preprocess, out_dir).model_dump()
    jobs = [([_job_input(it) for it in c], job_cfg) for c in _chunks(items, chunk)]
    with atomic_dir(out_dir) as tmp:
        rows = _Rows(dataset, tmp, label_names, quarantine)
        _decode_and_write(dataset, items, hashes, splits, jobs, pool, rows, progress)
        reasons = _write_quarantine(tmp, quarantine)
        if rows.written == 0:
            raise DatasetLayoutError(f"{dataset}: none of the {scanned.n_input} files under {root} could be "
                                     f"ingested; reasons: {dict(reasons.most_common(5))}")
        if rows.written + len(quarantine) != scanned.n_input:  # pragma: no cover - an internal invariant
            raise RuntimeError(f"reconciliation failed: {scanned.n_input} in, {rows.written} written, "
                               f"{len(quarantine)} quarantined")
        near = _near_duplicates(rows)
        summary = _summary(dataset, root, scanned, rows, reasons, near, len(items), digest_table(tmp / "images"),
                           fp, time.perf_counter() - t0)
        (tmp / SUMMARY_FILE).write_text(summary.model_dump_json(indent=2))
    _warn_near_duplicates(summary)
    return summary


@dataclass(frozen=True)
class SplitLeak:
    """What the near-duplicate check found across the splits, and what it means for the audit.

    ``leaks``: no groups were given, so a test image and its near-duplicate in train/val may be frames
    of one recording, and every audit score may be inflated (the audit is inconclusive unless the run
    accepts it with a reason). With groups, they are look-alikes from different groups of one person."""

    test_images: int
    pairs: int
    grouped: bool

    @property
    def leaks(self) -> bool:
        return not self.grouped

    def message(self, dataset: str) -> str:
        found = (f"{dataset}: {self.test_images} test images have a near-duplicate of the same identity in train/val "
                 f"({self.pairs} pairs within {NEAR_DUPLICATE_BITS} bits of perceptual hash)")
        if self.grouped:
            return (f"{found}; the configured groups keep each group in one split, so these are look-alikes "
                    f"from other groups of the same person, not frames of one recording")
        return (f"{found}. If they are frames of one recording or session, the split leaks and every audit score "
                f"is inflated: give the loader a group (loader option '{GROUP_PATTERN}', a regex on the relative "
                f"path) so each group stays in one split")


def split_leak(summary: IngestSummary) -> SplitLeak | None:
    """The near-duplicates an ingest found across its splits, or ``None`` (none, or not checked)."""
    if not summary.near_duplicates_across_splits:
        return None
    return SplitLeak(summary.notes.get(NOTE_NEAR_DUPLICATE, 0), summary.near_duplicates_across_splits,
                     summary.groups is not None)


def _warn_near_duplicates(summary: IngestSummary) -> None:
    found = split_leak(summary)
    if found is not None and found.leaks:
        warnings.warn(found.message(summary.dataset) + ".", SplitLeakWarning, stacklevel=3)
