"""Publishing: scrubbed, shuffled, fresh ids, checksummed, idempotent, serialised, leak-checked."""

from __future__ import annotations

import json
import threading

import numpy as np
import pyarrow.parquet as pq
import pytest

from data_contracts import RELEASE_SCHEMA, read_table
from deid.methods import get_method
from deid.pipeline import anonymize_table
from deid.release import LeakError, find_leaks, publish_release


@pytest.fixture(scope="module")
def anonymized(ferg_images, tmp_path_factory):
    out = tmp_path_factory.mktemp("anon") / "blur"
    anonymize_table(get_method("blur").fit(np.zeros((1, 1, 32, 32), np.float32)), ferg_images, out)
    return out


def _private(ferg_images):
    from data_contracts import IMAGES_SCHEMA

    t = read_table(ferg_images, IMAGES_SCHEMA, columns=["identity", "source_path", "image_id"])
    names = {p.rsplit("/", 1)[-1] for p in t.column("source_path").to_pylist()}
    return set(t.column("identity").to_pylist()) | names | set(t.column("image_id").to_pylist())


def test_release_holds_no_private_data(anonymized, ferg_images, tmp_path):
    r = publish_release(anonymized, tmp_path, "ferg", method="blur", manifest={"note": "x"},
                        private=_private(ferg_images))
    t = read_table(r.path / "data", RELEASE_SCHEMA)
    assert t.num_rows == r.rows > 0
    assert set(t.column_names) == {"release_id", "split", "expression", "image", "height", "width", "channels"}
    assert t.column("image").combine_chunks().field("path").null_count == t.num_rows
    assert find_leaks(r.path, _private(ferg_images)) == []
    manifest = json.loads((r.path / "manifest.json").read_text())
    for rel, digest in manifest["files"].items():
        import hashlib

        assert hashlib.sha256((r.path / rel).read_bytes()).hexdigest() == digest


def test_rows_are_shuffled_with_fresh_ids(anonymized, ferg_images, tmp_path):
    from data_contracts import ANONYMIZED_SCHEMA

    src = read_table(anonymized, ANONYMIZED_SCHEMA)
    r = publish_release(anonymized, tmp_path, "ferg", method="blur", manifest={}, private=set())
    rel = read_table(r.path / "data", RELEASE_SCHEMA)
    assert not set(rel.column("release_id").to_pylist()) & set(src.column("image_id").to_pylist())
    train_src = [b for b, s in zip(src.column("image").combine_chunks().field("bytes").to_pylist(),
                                   src.column("split").to_pylist()) if s == "train"]
    train_rel = [b for b, s in zip(rel.column("image").combine_chunks().field("bytes").to_pylist(),
                                   rel.column("split").to_pylist()) if s == "train"]
    assert sorted(train_src) == sorted(train_rel) and train_src != train_rel


def test_same_input_reuses_the_version_and_concurrent_runs_do_not_interleave(anonymized, tmp_path):
    results = []

    def go():
        results.append(publish_release(anonymized, tmp_path, "ferg", method="blur", manifest={"a": 1}, private=set()))

    threads = [threading.Thread(target=go) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.version for r in results}) == 1
    assert sorted(r.reused for r in results) == [False, True, True]
    assert len([p for p in (tmp_path / "ferg").iterdir() if not p.name.startswith(".")]) == 1
    other = publish_release(anonymized, tmp_path, "ferg", method="blur", manifest={"a": 2}, private=set())
    assert other.version != results[0].version


def test_leak_stops_the_release(anonymized, tmp_path):
    with pytest.raises(LeakError, match="aia"):
        publish_release(anonymized, tmp_path, "ferg", method="blur", manifest={"who": "aia"}, private={"aia"})
    assert not any(p.name.startswith("v-") for p in (tmp_path / "ferg").iterdir())


def test_leak_scan_finds_columns_and_metadata(tmp_path):
    import pyarrow as pa

    pq.write_table(pa.table({"name": ["Jane_Doe"]}).replace_schema_metadata({"src": "lfw/Jane_Doe_0001.jpg"}),
                   tmp_path / "x.parquet")
    found = find_leaks(tmp_path, {"Jane_Doe", "Jane_Doe_0001.jpg"})
    assert any("column name" in f for f in found) and any("metadata" in f for f in found)
