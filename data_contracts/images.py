"""The image-table contract: what one row of an ingested or de-identified dataset is.

One row per image. The image itself is a ``struct<bytes: binary, path: string>`` holding PNG
bytes, the layout the Hugging Face ``Image`` feature uses; ``attributes`` is a list of
``{name, value}`` records. Every file carries Hugging Face ``datasets`` features in its schema
metadata (``Image`` for the image, ``ClassLabel`` for a categorical utility label), so
``datasets.load_dataset("parquet", data_dir=...)``, DuckDB and ``pandas.read_parquet`` read a
table directory as it is, without this package. Split folders are named ``train``, ``val`` and
``test`` (not ``split=train``), so no reader sees the ``split`` column twice.

The schemas below are what the library sees. On disk every column is nullable (``datasets``
matches features to fields only then; nulls are still refused on every write) and, when a
writer is given the table's label names, ``label`` is stored as the ``ClassLabel`` index
(``int64``) and read back as the name: :func:`storage_schema`, :func:`table_labels`.

Private columns (``identity``, ``source_path``, ``source_sha256`` and ``image.path``) never
reach a release: :data:`RELEASE_SCHEMA` is the scrubbed form.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from data_contracts.atomic import atomic_dir, atomic_file

__all__ = [
    "ContractError",
    "IMAGES_SCHEMA",
    "QUARANTINE_SCHEMA",
    "RELEASE_SCHEMA",
    "ANONYMIZED_SCHEMA",
    "SCHEMA_VERSION",
    "PRIVATE_COLUMNS",
    "SPLITS",
    "validate_table",
    "TableWriter",
    "write_table",
    "read_table",
    "iter_batches",
    "count_rows",
    "table_files",
    "atomic_dir",
    "atomic_file",
    "digest_table",
    "storage_schema",
    "hf_features",
    "file_labels",
    "table_labels",
    "UTILITY_COLUMN",
]

# 2: attributes as a list of {name, value} records (was a map), Hugging Face features in the
# schema metadata, the utility label optionally stored as a ClassLabel index.
SCHEMA_VERSION = "4"  # 3: the private ``group`` column (a recording, a session) of every image;
# 4: the utility label's column is ``label`` (was ``expression``: it holds whatever the dataset labels, e.g.
# CelebA's ``Smiling``); an older table is refused with "re-run ingestion", and a run re-ingests its data
# The column holding the utility label, whatever the dataset calls its labels.
UTILITY_COLUMN = "label"
SPLITS = ("train", "val", "test")
PRIVATE_COLUMNS = ("identity", "group", "source_path", "source_sha256")

_IMAGE_STRUCT = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])
_ATTRIBUTES = pa.list_(pa.struct([pa.field("name", pa.string()), pa.field("value", pa.float32())]))


def _with_meta(schema: pa.Schema, name: str) -> pa.Schema:
    return schema.with_metadata(
        {b"deid.schema": name.encode(), b"deid.schema_version": SCHEMA_VERSION.encode()}
    )


# Every column any table uses, defined once; each schema is an ordered selection of them.
_FIELDS = {f.name: f for f in [
    pa.field("image_id", pa.string(), nullable=False),
    pa.field("release_id", pa.string(), nullable=False),
    pa.field("dataset", pa.string(), nullable=False),
    pa.field("split", pa.string(), nullable=False),
    pa.field("identity", pa.string(), nullable=False),
    pa.field("label", pa.string(), nullable=True),
    pa.field("attributes", _ATTRIBUTES, nullable=True),
    pa.field("group", pa.string(), nullable=True),  # frames of one recording or session: never split apart
    pa.field("method", pa.string(), nullable=False),
    pa.field("image", _IMAGE_STRUCT, nullable=False),
    pa.field("height", pa.int32(), nullable=False),
    pa.field("width", pa.int32(), nullable=False),
    pa.field("channels", pa.int32(), nullable=False),
    pa.field("source_path", pa.string(), nullable=False),
    pa.field("source_sha256", pa.string(), nullable=False),
    pa.field("stage", pa.string(), nullable=False),
    pa.field("reason", pa.string(), nullable=False),
]}


def _schema(name: str, columns: str, nullable: tuple[str, ...] = ()) -> pa.Schema:
    fields = [_FIELDS[c].with_nullable(True) if c in nullable else _FIELDS[c] for c in columns.split()]
    return _with_meta(pa.schema(fields), name)


_PIXELS = "image height width channels"
IMAGES_SCHEMA = _schema("images", f"image_id dataset split identity label attributes group {_PIXELS} source_path "
                                  "source_sha256")
# A de-identified table keeps the link to its source row (``image_id``) for the audit; the
# release step drops it together with every other private column.
ANONYMIZED_SCHEMA = _schema("anonymized", f"image_id dataset split identity label method {_PIXELS}")
RELEASE_SCHEMA = _schema("release", f"release_id split label {_PIXELS}")
QUARANTINE_SCHEMA = _schema("quarantine", "dataset source_path stage reason source_sha256", nullable=("source_sha256",))

_BY_NAME = {
    "images": IMAGES_SCHEMA,
    "anonymized": ANONYMIZED_SCHEMA,
    "release": RELEASE_SCHEMA,
    "quarantine": QUARANTINE_SCHEMA,
}


class ContractError(ValueError):
    """A table does not match its declared schema; the message says which column and why."""


_HF_VALUE = {pa.string(): "string", pa.int32(): "int32", pa.int64(): "int64", pa.float32(): "float32",
             pa.binary(): "binary"}


def _hf_feature(field: pa.Field, labels: Sequence[str] | None) -> dict | list:
    """The Hugging Face ``datasets`` feature (as its JSON form) of one contract column."""
    if field.name == UTILITY_COLUMN and labels is not None:
        return {"names": list(labels), "_type": "ClassLabel"}
    if field.type.equals(_IMAGE_STRUCT):
        return {"_type": "Image"}
    if field.type.equals(_ATTRIBUTES):  # a list of records: the shorthand every datasets version reads
        return [{"name": {"dtype": "string", "_type": "Value"}, "value": {"dtype": "float32", "_type": "Value"}}]
    return {"dtype": _HF_VALUE[field.type], "_type": "Value"}


def _check_labels(labels: Sequence[str] | None) -> list[str] | None:
    if labels is None:
        return None
    labels = list(labels)
    if not labels or not all(isinstance(x, str) and x for x in labels):
        raise ContractError(f"label names must be non-empty strings, got {labels[:10]}")
    if len(set(labels)) != len(labels):
        raise ContractError(f"label names repeat: {sorted({x for x in labels if labels.count(x) > 1})}")
    return labels


def hf_features(schema: pa.Schema, labels: Sequence[str] | None = None) -> dict:
    """The ``datasets`` features of a contract schema, as stored under the ``huggingface`` metadata key."""
    return {f.name: _hf_feature(f, labels) for f in schema}


def storage_schema(schema: pa.Schema, labels: Sequence[str] | None = None) -> pa.Schema:
    """The schema a table's files hold: every field nullable, ``label`` an ``int64`` ClassLabel
    index when ``labels`` are given, and the features for ``datasets`` in the metadata."""
    labels = _check_labels(labels)
    fields = []
    for f in schema:
        if f.name == UTILITY_COLUMN and labels is not None:
            f = f.with_type(pa.int64())
        fields.append(f.with_nullable(True))
    features = {"info": {"features": hf_features(schema, labels)}}
    meta = {**(schema.metadata or {}), b"huggingface": json.dumps(features).encode()}
    return pa.schema(fields, metadata=meta)


def file_labels(path: str | Path) -> list[str] | None:
    """The ClassLabel names a table file stores its utility label against, or ``None`` (stored as text)."""
    return _labels_of(pq.read_schema(path))


def _labels_of(schema: pa.Schema) -> list[str] | None:
    raw = (schema.metadata or {}).get(b"huggingface")
    if not raw:
        return None
    try:
        feat = json.loads(raw)["info"]["features"].get(UTILITY_COLUMN)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return list(feat["names"]) if isinstance(feat, dict) and feat.get("_type") == "ClassLabel" else None


def table_labels(path: str | Path) -> list[str] | None:
    """The utility label names of a table directory (from its first file), or ``None``."""
    files = table_files(path)
    return file_labels(files[0]) if files else None


def _check_schema(actual: pa.Schema, expected: pa.Schema, where: str, labels: list[str] | None = None) -> None:
    names_a, names_e = actual.names, expected.names
    if names_a != names_e:
        missing = [n for n in names_e if n not in names_a]
        extra = [n for n in names_a if n not in names_e]
        raise ContractError(
            f"{where}: columns differ from the '{_schema_name(expected)}' contract "
            f"(missing {missing}, unexpected {extra}, expected order {names_e})"
        )
    for fa, fe in zip(actual, expected):
        if labels is not None and fe.name == UTILITY_COLUMN and fa.type.equals(pa.int64()):
            continue  # stored as the index into the file's ClassLabel names
        if not fa.type.equals(fe.type):
            raise ContractError(f"{where}: column '{fe.name}' has type {fa.type}, contract says {fe.type}")


def _schema_name(schema: pa.Schema) -> str:
    return (schema.metadata or {}).get(b"deid.schema", b"?").decode()


def validate_table(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast ``table`` to ``schema`` and check it; return the conforming table.

    Raises :class:`ContractError` naming the first offending column: wrong or missing columns,
    nulls in non-nullable columns, an unknown split, image bytes that are not PNG.
    """
    name = _schema_name(schema)
    if table.schema.names != schema.names:
        _check_schema(table.schema, schema, f"table for '{name}'")
    try:
        table = table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, ValueError) as exc:
        raise ContractError(f"table for '{name}' cannot be cast to the contract: {exc}") from exc
    for field in schema:
        col = table.column(field.name)
        if not field.nullable and col.null_count:
            raise ContractError(f"column '{field.name}' of '{name}' has {col.null_count} nulls; it may not")
    if "split" in schema.names and table.num_rows:
        bad = set(table.column("split").unique().to_pylist()) - set(SPLITS)
        if bad:
            raise ContractError(f"column 'split' of '{name}' has values {sorted(bad)}; allowed {list(SPLITS)}")
    if "image" in schema.names and table.num_rows:
        images = table.column("image").combine_chunks()
        data = images.field("bytes")
        if data.null_count:
            raise ContractError(f"column 'image.bytes' of '{name}' has nulls")
        for i, b in enumerate(data.to_pylist()):
            if not b.startswith(b"\x89PNG\r\n\x1a\n"):
                raise ContractError(f"row {i} of '{name}': image.bytes is not a PNG")
    for col in ("height", "width", "channels"):
        if col in schema.names and table.num_rows:
            import pyarrow.compute as pc

            if pc.min(table.column(col)).as_py() <= 0:
                raise ContractError(f"column '{col}' of '{name}' must be positive")
    return table


def table_files(path: str | Path) -> list[Path]:
    """The Parquet files of a table directory (or the file itself), in a stable order."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise ContractError(f"no table at {p}: the directory does not exist")
    return sorted(q for q in p.rglob("*.parquet") if not any(part.startswith(".") for part in q.relative_to(p).parts))


def _check_file(f: Path, schema: pa.Schema) -> list[str] | None:
    """Check a file's kind, version and columns; return its ClassLabel names (``None``: labels as text)."""
    actual = pq.read_schema(f)
    meta = actual.metadata or {}
    expected_name = _schema_name(schema)
    got_name = meta.get(b"deid.schema", b"").decode()
    got_version = meta.get(b"deid.schema_version", b"").decode()
    if got_name != expected_name:
        raise ContractError(f"{f}: holds a '{got_name or 'unknown'}' table, expected '{expected_name}'")
    if got_version != SCHEMA_VERSION:
        raise ContractError(
            f"{f}: schema version {got_version or 'missing'}, this code reads version {SCHEMA_VERSION}; "
            "re-run ingestion to rewrite it"
        )
    labels = _labels_of(actual)
    _check_schema(actual, schema, str(f), labels)
    return labels


def _decode_labels(t: pa.Table, labels: list[str] | None, where: Path) -> pa.Table:
    """ClassLabel indices back to the label names the library works with."""
    if labels is None or UTILITY_COLUMN not in t.column_names:
        return t
    i = t.column_names.index(UTILITY_COLUMN)
    codes = t.column(i).combine_chunks() if t.num_rows else pa.array([], pa.int64())
    if not pa.types.is_integer(codes.type):
        return t
    import pyarrow.compute as pc

    if len(codes) and codes.null_count < len(codes):
        lo, hi = pc.min(codes).as_py(), pc.max(codes).as_py()
        if lo < 0 or hi >= len(labels):
            raise ContractError(f"{where}: column '{UTILITY_COLUMN}' holds index {hi if hi >= len(labels) else lo}, "
                                f"outside its {len(labels)} label names")
    names = pa.array(labels, pa.string()).take(codes)
    return t.set_column(i, pa.field(UTILITY_COLUMN, pa.string()), names)


def iter_batches(
    path: str | Path,
    schema: pa.Schema,
    *,
    columns: list[str] | None = None,
    splits: tuple[str, ...] | None = None,
    batch_size: int | None = None,
) -> Iterator[pa.Table]:
    """Stream a table directory by row group (memory stays flat), checking schema and version."""
    target = schema if columns is None else pa.schema([schema.field(c) for c in columns], metadata=schema.metadata)
    for f in table_files(path):
        labels = _check_file(f, schema)
        pf = pq.ParquetFile(f)
        for rg in range(pf.num_row_groups):
            t = _decode_labels(pf.read_row_group(rg, columns=columns), labels, f).cast(target)
            if splits is not None:
                import pyarrow.compute as pc

                if columns is not None and "split" not in columns:
                    mask_t = pf.read_row_group(rg, columns=["split"])
                    mask = pc.is_in(mask_t.column("split"), pa.array(list(splits)))
                else:
                    mask = pc.is_in(t.column("split"), pa.array(list(splits)))
                t = t.filter(mask)
            if batch_size is None:
                if t.num_rows:
                    yield t
            else:
                for off in range(0, t.num_rows, batch_size):
                    yield t.slice(off, batch_size)


def read_table(
    path: str | Path,
    schema: pa.Schema,
    *,
    columns: list[str] | None = None,
    splits: tuple[str, ...] | None = None,
) -> pa.Table:
    """Read a whole table, checked against ``schema``. Use :func:`iter_batches` for big tables."""
    parts = list(iter_batches(path, schema, columns=columns, splits=splits))
    if not parts:
        target = schema if columns is None else pa.schema([schema.field(c) for c in columns])
        return target.empty_table()
    return pa.concat_tables(parts)


def count_rows(path: str | Path) -> int:
    return sum(pq.ParquetFile(f).metadata.num_rows for f in table_files(path))


class TableWriter:
    """Append validated batches to ``<dir>/<name>`` Parquet files with fixed row-group size.

    Files roll over every ``rows_per_file`` rows, so a big dataset becomes several parts that
    can be streamed and processed in parallel. Writes are deterministic: the same batches give
    byte-identical files. With ``labels`` (the utility label's names, in ClassLabel order) the
    ``label`` column is stored as their index, a Hugging Face ``ClassLabel``; a value not
    among them is a :class:`ContractError`. Without, it is stored as text. A writer that got no
    row writes one schema-only file, unless ``write_empty`` is false: a split folder with no rows
    is better absent, since ``datasets`` refuses a split without data.
    """

    def __init__(self, directory: str | Path, schema: pa.Schema, *, prefix: str = "part",
                 row_group_size: int = 512, rows_per_file: int = 65536, labels: Sequence[str] | None = None,
                 write_empty: bool = True):
        self.directory = Path(directory)
        self.write_empty = write_empty
        self.schema = schema
        self.labels = _check_labels(labels) if UTILITY_COLUMN in schema.names else None
        self.storage = storage_schema(schema, self.labels)
        self.prefix = prefix
        self.row_group_size = row_group_size
        self.rows_per_file = rows_per_file
        self._writer: pq.ParquetWriter | None = None
        self._file_index = 0
        self._rows_in_file = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.rows_written = 0

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{self.prefix}-{self._file_index:05d}.parquet"
        self._writer = pq.ParquetWriter(path, self.storage, compression="zstd", write_statistics=True)
        self._rows_in_file = 0

    def _encode(self, table: pa.Table) -> pa.Table:
        if self.labels is not None:
            import pyarrow.compute as pc

            i = table.column_names.index(UTILITY_COLUMN)
            col = table.column(i)
            codes = pc.index_in(col, value_set=pa.array(self.labels, pa.string()))
            if codes.null_count != col.null_count:
                bad = pc.filter(col, pc.and_(pc.is_null(codes), pc.is_valid(col)))[0].as_py()
                raise ContractError(f"column '{UTILITY_COLUMN}': label {bad!r} is not among the table's "
                                    f"labels {self.labels[:20]}")
            table = table.set_column(i, UTILITY_COLUMN, pc.cast(codes, pa.int64()))
        return table.cast(self.storage)

    def write(self, table: pa.Table) -> None:
        table = validate_table(table, self.schema)
        if table.num_rows == 0:
            return
        table = self._encode(table)
        self._pending.append(table)
        self._pending_rows += table.num_rows
        while self._pending_rows >= self.row_group_size:
            self._flush(self.row_group_size)

    def _flush(self, n: int) -> None:
        merged = pa.concat_tables(self._pending)
        head, rest = merged.slice(0, n), merged.slice(n)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows
        if self._writer is None:
            self._open()
        self._writer.write_table(head, row_group_size=self.row_group_size)
        self._rows_in_file += head.num_rows
        self.rows_written += head.num_rows
        if self._rows_in_file >= self.rows_per_file:
            self._writer.close()
            self._writer = None
            self._file_index += 1

    def close(self) -> None:
        if self._pending_rows:
            self._flush(self._pending_rows)
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self.rows_written == 0 and self._file_index == 0 and self.write_empty:
            # An empty table is still a table: one file holding the schema and no row group (readers
            # that size their batches by the first row group, as ``datasets`` does, then read nothing).
            self.directory.mkdir(parents=True, exist_ok=True)
            pq.ParquetWriter(self.directory / f"{self.prefix}-00000.parquet", self.storage).close()

    def __enter__(self) -> "TableWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif self._writer is not None:
            self._writer.close()


def write_table(table: pa.Table, directory: str | Path, schema: pa.Schema, **kw) -> Path:
    """Validate and write ``table`` atomically as the table directory ``directory``."""
    with atomic_dir(directory) as tmp:
        with TableWriter(tmp, schema, **kw) as w:
            w.write(table)
    return Path(directory)


def digest_table(path: str | Path) -> str:
    """A content digest of a table directory: sha256 over its files' bytes, in order (16 hex)."""
    h = hashlib.sha256()
    for f in table_files(path):
        h.update(f.relative_to(Path(path)).as_posix().encode() if Path(path).is_dir() else b"")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def schema_by_name(name: str) -> pa.Schema:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ContractError(f"unknown table kind '{name}'; known: {sorted(_BY_NAME)}") from None

