"""The data contract: every write validates, every read checks schema and version."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_contracts import (IMAGES_SCHEMA, QUARANTINE_SCHEMA, ContractError, atomic_dir, iter_batches, read_table,
                            validate_table, write_table)
from deid.imageio import encode_png


def _row(**kw):
    r = {"image_id": "a" * 16, "dataset": "ferg", "split": "train", "identity": "aia", "label": "joy",
         "attributes": None, "image": {"bytes": encode_png(np.zeros((4, 4), np.uint8)), "path": "aia/x.png"},
         "height": 4, "width": 4, "channels": 1, "source_path": "aia/x.png", "source_sha256": "f" * 64}
    r.update(kw)
    return r


def _table(rows):
    return pa.Table.from_pylist(rows, schema=IMAGES_SCHEMA)


def test_valid_table_round_trips(tmp_path):
    t = _table([_row(), _row(image_id="b" * 16, split="test")])
    write_table(t, tmp_path / "t", IMAGES_SCHEMA)
    back = read_table(tmp_path / "t", IMAGES_SCHEMA)
    assert back.num_rows == 2 and back.schema.equals(IMAGES_SCHEMA, check_metadata=False)
    assert sum(b.num_rows for b in iter_batches(tmp_path / "t", IMAGES_SCHEMA, splits=("test",))) == 1


@pytest.mark.parametrize("bad, msg", [
    ({"split": "holdout"}, "split"),
    ({"image": {"bytes": b"GIF89a....", "path": None}}, "not a PNG"),
    ({"height": 0}, "height"),
])
def test_invalid_rows_are_refused(bad, msg):
    with pytest.raises(ContractError, match=msg):
        validate_table(_table([_row(**bad)]), IMAGES_SCHEMA)


def test_null_in_required_column_is_refused():
    t = pa.Table.from_pylist([_row()], schema=IMAGES_SCHEMA.remove_metadata())
    t = t.set_column(3, pa.field("identity", pa.string()), pa.array([None], pa.string()))
    with pytest.raises(ContractError, match="identity"):
        validate_table(t, IMAGES_SCHEMA)


def test_missing_column_is_named():
    t = _table([_row()]).drop_columns(["label"])
    with pytest.raises(ContractError, match="label"):
        validate_table(t, IMAGES_SCHEMA)


def test_read_checks_kind_and_version(tmp_path):
    write_table(_table([_row()]), tmp_path / "t", IMAGES_SCHEMA)
    with pytest.raises(ContractError, match="expected 'quarantine'"):
        read_table(tmp_path / "t", QUARANTINE_SCHEMA)
    f = next((tmp_path / "t").glob("*.parquet"))
    old = pq.read_table(f)
    meta = dict(old.schema.metadata)
    meta[b"deid.schema_version"] = b"0"
    pq.write_table(old.replace_schema_metadata(meta), f)
    with pytest.raises(ContractError, match="schema version 0"):
        read_table(tmp_path / "t", IMAGES_SCHEMA)


def test_read_of_missing_table_names_the_path(tmp_path):
    with pytest.raises(ContractError, match="does not exist"):
        read_table(tmp_path / "nope", IMAGES_SCHEMA)


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "half.parquet").write_bytes(b"x")
            raise RuntimeError("killed")
    assert not final.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.reliability(section='6. Crash and concurrency',
                         case='run killed (kill -9) while writing a cache file, a pixel array or a table',
                         before='its temporary file stayed in the work folder for good',
                         after='the next write of that path removes the temporaries of dead processes; a live '
                               "writer's are kept")
@pytest.mark.parametrize("kind", ["file", "dir", "cache"])
def test_a_dead_writers_temporaries_are_removed_by_the_next_write(tmp_path, kind):
    import subprocess
    import sys

    from data_contracts import atomic_file

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        final = tmp_path / "cache" / "pixels-x.npy"
        final.parent.mkdir()
        left = final.parent / f".{final.name}.tmp-{int(dead.stdout)}-deadbeef"
        busy = final.parent / f".{final.name}.tmp-{live.pid}-cafecafe"
        other = final.parent / f".another.npy.tmp-{int(dead.stdout)}-deadbeef"
        for p in (left, busy, other):
            p.write_bytes(b"half")
        if kind in ("file", "cache"):
            with atomic_file(final, cache=kind == "cache") as tmp:
                tmp.write_bytes(b"whole")
            assert final.read_bytes() == b"whole"
        else:
            with atomic_dir(final) as tmp:
                (tmp / "part").write_bytes(b"whole")
            assert (final / "part").read_bytes() == b"whole"
        # a cache entry's first write in a folder sweeps the dead temporaries of every entry there
        kept = [final.name, busy.name] + ([] if kind == "cache" else [other.name])
        assert sorted(p.name for p in final.parent.iterdir()) == sorted(kept)
    finally:
        live.kill()
        live.wait()


def test_atomic_file_leaves_the_old_file_on_failure(tmp_path):
    from data_contracts import atomic_file

    final = tmp_path / "f.bin"
    final.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_file(final) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert final.read_bytes() == b"old" and list(tmp_path.iterdir()) == [final]


def test_a_table_of_the_previous_version_with_its_expression_column_is_refused_with_what_to_do(tmp_path):
    write_table(_table([_row()]), tmp_path / "t", IMAGES_SCHEMA)
    f = next((tmp_path / "t").glob("*.parquet"))
    new = pq.read_table(f)
    meta = dict(new.schema.metadata)
    meta[b"deid.schema_version"] = b"3"
    old = new.rename_columns(["expression" if c == "label" else c for c in new.column_names])
    pq.write_table(old.replace_schema_metadata(meta), f)
    with pytest.raises(ContractError, match="schema version 3, this code reads version 4; re-run ingestion"):
        read_table(tmp_path / "t", IMAGES_SCHEMA)
