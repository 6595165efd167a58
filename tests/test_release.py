"""Publishing: scrubbed, randomly ordered, fresh random ids, checksummed, idempotent, serialised,
leak-checked, and refused when the release policy's floors are not met."""

from __future__ import annotations

import hashlib
import json
import threading

import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy.stats import binom, spearmanr

from data_contracts import ANONYMIZED_SCHEMA, IMAGES_SCHEMA, RELEASE_SCHEMA, SPLITS, digest_table, read_table
from deid.errors import ConfigError
from deid.methods import get_method
from deid.pipeline import anonymize_table
from deid.release import LeakError, ReleaseRefused, find_leaks, publish_release
from deid.release_policy import PACKAGE_POLICY, POLICY_ENV, ReleasePolicy, load_release_policy, release_policy


def _anonymize(name: str, ferg_images, tmp_path_factory):
    out = tmp_path_factory.mktemp("anon") / name
    anonymize_table(get_method(name).fit(np.zeros((1, 1, 32, 32), np.float32)), ferg_images, out)
    return out


@pytest.fixture(scope="module")
def anonymized(ferg_images, tmp_path_factory):
    return _anonymize("pixelate", ferg_images, tmp_path_factory)


def _private(ferg_images):
    t = read_table(ferg_images, IMAGES_SCHEMA, columns=["identity", "source_path", "image_id"])
    names = {p.rsplit("/", 1)[-1] for p in t.column("source_path").to_pylist()}
    return set(t.column("identity").to_pylist()) | names | set(t.column("image_id").to_pylist())


def _publish(anonymized, ferg_images, root, private_dir, **kw):
    kw.setdefault("method", "pixelate")
    kw.setdefault("manifest", {})
    kw.setdefault("private", set())
    return publish_release(anonymized, root, "ferg", private_dir=private_dir, originals_dir=ferg_images, **kw)


def test_release_holds_no_private_data(anonymized, ferg_images, tmp_path):
    r = _publish(anonymized, ferg_images, tmp_path / "rel", tmp_path / "private", manifest={"note": "x"},
                 private=_private(ferg_images))
    t = read_table(r.path / "data", RELEASE_SCHEMA)
    assert t.num_rows == r.rows > 0
    assert set(t.column_names) == {"release_id", "split", "label", "image", "height", "width", "channels"}
    assert t.column("image").combine_chunks().field("path").null_count == t.num_rows
    assert find_leaks(r.path, _private(ferg_images)) == []
    manifest = json.loads((r.path / "manifest.json").read_text())
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((r.path / rel).read_bytes()).hexdigest() == digest
    assert not (tmp_path / "rel").joinpath("ferg", r.version, "release.key").exists()


@pytest.mark.reliability(section="1. Release unlinkable", case="manifest carries a digest of the private table (input_digest, anonymized_digest)",
                         before="both in manifest.json", after="no digest of private data anywhere in the release")
def test_manifest_holds_no_digest_of_private_data(anonymized, ferg_images, tmp_path):
    r = _publish(anonymized, ferg_images, tmp_path / "rel", tmp_path / "private")
    text = "".join(p.read_text(errors="replace") for p in r.path.rglob("*.json"))
    for secret in (digest_table(ferg_images), digest_table(anonymized)):
        assert secret not in text
    for p in r.path.rglob("*.parquet"):
        meta = pq.read_metadata(p).metadata or {}
        assert not any(digest_table(anonymized).encode() in v for v in meta.values())


def test_rows_are_shuffled_with_fresh_ids(anonymized, ferg_images, tmp_path):
    src = read_table(anonymized, ANONYMIZED_SCHEMA)
    r = _publish(anonymized, ferg_images, tmp_path / "rel", tmp_path / "private")
    rel = read_table(r.path / "data", RELEASE_SCHEMA)
    assert not set(rel.column("release_id").to_pylist()) & set(src.column("image_id").to_pylist())
    assert len(set(rel.column("release_id").to_pylist())) == rel.num_rows
    train_src = [b for b, s in zip(src.column("image").combine_chunks().field("bytes").to_pylist(),
                                   src.column("split").to_pylist()) if s == "train"]
    train_rel = [b for b, s in zip(rel.column("image").combine_chunks().field("bytes").to_pylist(),
                                   rel.column("split").to_pylist()) if s == "train"]
    assert sorted(train_src) == sorted(train_rel) and train_src != train_rel


@pytest.mark.reliability(section="1. Release unlinkable", case="rerun of the same config on the same data; three concurrent publishers",
                         before="same version (derived from the data)", after="same version, found through the private index; one copy")
def test_same_input_reuses_the_version_and_concurrent_runs_do_not_interleave(anonymized, ferg_images, tmp_path):
    results = []

    def go():
        results.append(_publish(anonymized, ferg_images, tmp_path / "rel", tmp_path / "private", manifest={"a": 1}))

    threads = [threading.Thread(target=go) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.version for r in results}) == 1
    assert sorted(r.reused for r in results) == [False, True, True]
    assert len([p for p in (tmp_path / "rel" / "ferg").iterdir() if not p.name.startswith(".")]) == 1
    other = _publish(anonymized, ferg_images, tmp_path / "rel", tmp_path / "private", manifest={"a": 2})
    assert other.version != results[0].version


@pytest.mark.reliability(section="1. Release unlinkable", case="version, row order and ids are functions of the data (seeded by the version)",
                         before="the same data always gave the same version, order and ids", after="two private work dirs give unrelated versions, orders and ids")
def test_version_order_and_ids_are_not_functions_of_the_data(anonymized, ferg_images, tmp_path):
    a = _publish(anonymized, ferg_images, tmp_path / "rel", tmp_path / "private-a")
    b = _publish(anonymized, ferg_images, tmp_path / "rel", tmp_path / "private-b")
    assert a.version != b.version and not a.reused and not b.reused
    ta, tb = (read_table(r.path / "data", RELEASE_SCHEMA) for r in (a, b))
    assert not set(ta.column("release_id").to_pylist()) & set(tb.column("release_id").to_pylist())
    assert ta.column("image").to_pylist() != tb.column("image").to_pylist()


def _released(release_dir):
    """The released rows split by split, each in file order: [(split, table)]."""
    return [(s, read_table(release_dir / "data" / s, RELEASE_SCHEMA)) for s in SPLITS
            if (release_dir / "data" / s).exists()]


def _attack(release_dir, public: list[tuple[str, str]]):
    """What a reader of the release and of the source dataset's public file list can try.

    ``public`` is (identity, split) of every source file in the order the rows entered the
    pipeline: the dataset's sorted file list, grouped by the split rule, both public. Strategies:
    map the i-th released row of a split (in file order, or in release_id order, or through a
    permutation re-derived from published fields as an earlier scheme made it) to the i-th source
    file of that split. Yields (strategy, guessed identity per released row, splits in order).
    """
    manifest = json.loads((release_dir / "manifest.json").read_text())
    parts = _released(release_dir)
    by_split = {s: [i for i, (_, sp) in enumerate(public) if sp == s] for s in SPLITS}
    n = sum(t.num_rows for _, t in parts)
    yield "file order", [public[by_split[s][i % len(by_split[s])]][0] for s, t in parts for i in range(t.num_rows)]
    guess = []
    for s, t in parts:
        g = [None] * t.num_rows
        for rank, row in enumerate(np.argsort(t.column("release_id").to_pylist())):
            g[row] = public[by_split[s][rank % len(by_split[s])]][0]
        guess += g
    yield "release_id order", guess
    version = manifest["version"]
    for seed_text in (f"{version}|0", f"{version}|{manifest.get('seed', 0)}", version):
        key = int.from_bytes(hashlib.sha256(seed_text.encode()).digest()[:8], "little")
        order = np.random.default_rng(key).permutation(n)  # shuffled row j came from source row order[j]
        guess = []
        for s, t in parts:
            src_rows = [order[j] for j in range(n) if public[order[j]][1] == s]
            guess += [public[src_rows[i % len(src_rows)]][0] if src_rows else None for i in range(t.num_rows)]
        yield f"permutation from sha256({seed_text!r})", guess
        # and ids named by position: release_id = sha256(version|j) for shuffled row j
        pos = {hashlib.sha256(f"{version}|{j}".encode()).hexdigest()[:16]: j for j in range(n)}
        ids = [i for _, t in parts for i in t.column("release_id").to_pylist()]
        yield f"ids re-derived from {seed_text!r}", [public[order[pos[i]]][0] if i in pos else None for i in ids]


@pytest.mark.reliability(section="1. Release unlinkable", case="reader with the release and the public file list restores the source order",
                         before="213/213 JAFFE images named (identity and source file)", after="no strategy beats chance (binomial bound, p < 1e-4)")
def test_an_attacker_with_the_public_file_list_does_no_better_than_chance(anonymized, ferg_images, tmp_path):
    r = _publish(anonymized, ferg_images, tmp_path / "rel", tmp_path / "private")
    src = read_table(ferg_images, IMAGES_SCHEMA, columns=["image_id", "identity"])
    anon = read_table(anonymized, ANONYMIZED_SCHEMA, columns=["image_id", "split", "image"])
    ident_of = dict(zip(src.column("image_id").to_pylist(), src.column("identity").to_pylist()))
    anon_ids = anon.column("image_id").to_pylist()
    public = [(ident_of[i], s) for i, s in zip(anon_ids, anon.column("split").to_pylist())]
    blobs = anon.column("image").combine_chunks().field("bytes").to_pylist()
    row_of = {b: k for k, b in enumerate(blobs)}
    released = [b for _, t in _released(r.path) for b in t.column("image").combine_chunks().field("bytes").to_pylist()]
    truth = [public[row_of[b]][0] for b in released]
    n = len(truth)
    chance = max(truth.count(k) for k in set(truth)) / n
    bound = binom.isf(1e-4, n, chance) / n  # an honest guesser exceeds this once in 10,000
    results = {name: float(np.mean([g == t for g, t in zip(guess, truth)])) for name, guess in _attack(r.path, public)}
    assert len(results) >= 5 and all(acc <= bound for acc in results.values()), (results, chance, bound)
    # Nor does the position of a row in the release say where it stood in the source.
    rho = spearmanr(np.arange(n), [row_of[b] for b in released])[0]
    assert abs(rho) < 4.0 / np.sqrt(n - 1)


@pytest.mark.reliability(section="3. Gates a run cannot loosen", case="run config with attacker_margin 1.0 releases method none",
                         before="213/213 images byte-identical to the ingested originals, manifest 'passed'",
                         after="refused: outputs are copies of their inputs; nothing published")
def test_unchanged_output_is_refused_whatever_the_run_config_says(ferg_images, tmp_path_factory, tmp_path):
    none = _anonymize("none", ferg_images, tmp_path_factory)
    with pytest.raises(ReleaseRefused, match="pixel-identical"):
        _publish(none, ferg_images, tmp_path / "rel", tmp_path / "private", method="none", run_margin=1.0)
    assert not (tmp_path / "rel" / "ferg").exists() or not any((tmp_path / "rel" / "ferg").rglob("manifest.json"))


@pytest.mark.reliability(section="3. Gates a run cannot loosen", case="blurred output (SSIM < 0.95) released",
                         before="published when the run's gates allowed it", after="refused: perceptual hash equals the input's")
def test_near_copies_are_refused(ferg_images, tmp_path_factory, tmp_path):
    blur = _anonymize("blur", ferg_images, tmp_path_factory)
    with pytest.raises(ReleaseRefused, match="perceptual hash"):
        _publish(blur, ferg_images, tmp_path / "rel", tmp_path / "private", method="blur")


@pytest.mark.reliability(section="3. Gates a run cannot loosen", case="worst attacker 100% with run gate attacker_margin 1.0",
                         before="published", after="refused by the release policy's margin (stricter of run and policy)")
def test_the_policy_margin_binds_a_loose_run_gate(anonymized, ferg_images, tmp_path):
    audit = {"identity_acc_worst": 1.0, "identity_chance": 0.25}
    with pytest.raises(ReleaseRefused, match="release policy: worst attacker"):
        _publish(anonymized, ferg_images, tmp_path / "rel", tmp_path / "private", run_margin=1.0, audit=audit)
    ok = {"identity_acc_worst": 0.26, "identity_chance": 0.25, "identity_acc_worst_hi": 0.27, "n_test": 5000.0}
    assert _publish(anonymized, ferg_images, tmp_path / "rel", tmp_path / "private", run_margin=1.0, audit=ok).rows
    small_test = {"identity_acc_worst": 0.25, "identity_chance": 0.25, "identity_acc_worst_hi": 0.41, "n_test": 34.0}
    with pytest.raises(ReleaseRefused, match="34 test images cannot tell chance"):  # chance on 34 images certifies nothing
        _publish(anonymized, ferg_images, tmp_path / "rel", tmp_path / "private", run_margin=1.0, audit=small_test)
    with pytest.raises(ReleaseRefused):  # a run may tighten the margin below the policy's
        _publish(anonymized, ferg_images, tmp_path / "rel", tmp_path / "private", run_margin=0.0, audit=ok)


@pytest.mark.reliability(section="3. Gates a run cannot loosen", case="release policy file loosens the floors (margin 0.5, SSIM 0.99)",
                         before="no policy file: the run config's gates were the only gates", after="refused at load with the field named")
def test_policy_file_cannot_go_past_the_hard_limits(tmp_path):
    p = tmp_path / "release.yaml"
    p.write_text("max_attacker_margin: 0.5\n")
    with pytest.raises(ConfigError, match="max_attacker_margin"):
        load_release_policy(p)
    p.write_text("max_ssim: 0.99\n")
    with pytest.raises(ConfigError, match="max_ssim"):
        load_release_policy(p)
    p.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_release_policy(p)
    p.write_text("max_attacker_margin: 0.02\nmax_ssim: 0.8\n")
    assert load_release_policy(p).max_attacker_margin == 0.02


@pytest.mark.reliability(section="3. Gates a run cannot loosen", case="a policy/release.yaml in the folder a run starts in or its project",
                         before="read from the current folder: a local file raised the margin from 0.05 to the hard limit",
                         after="never read: the owner's DEID_RELEASE_POLICY or the package's; values, source and digest in the manifest")
def test_the_policy_comes_from_the_owner_or_the_package_never_from_the_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(POLICY_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "release.yaml").write_text("max_attacker_margin: 0.10\nmin_tstr_retention: 0.0\n")
    package = release_policy()
    assert package.source == "package default" and package.digest() == load_release_policy(PACKAGE_POLICY).digest()
    assert package.max_attacker_margin == 0.05 and package.min_tstr_retention == 0.9
    owner = tmp_path / "owner.yaml"
    owner.write_text("max_attacker_margin: 0.02\n")
    monkeypatch.setenv(POLICY_ENV, str(owner))
    mine = release_policy()
    assert mine.max_attacker_margin == 0.02 and mine.source == f"{POLICY_ENV}={owner}"
    assert mine.digest() != package.digest() and mine.record()["digest"] == mine.digest()
    monkeypatch.setenv(POLICY_ENV, str(tmp_path / "missing.yaml"))  # named but absent: an error, not the defaults
    with pytest.raises(ConfigError, match="missing.yaml"):
        release_policy()


def test_the_manifest_names_the_policy_it_met(anonymized, ferg_images, tmp_path, monkeypatch):
    monkeypatch.delenv(POLICY_ENV, raising=False)
    r = _publish(anonymized, ferg_images, tmp_path / "rel", tmp_path / "private")
    rec = json.loads((r.path / "manifest.json").read_text())["release_policy"]
    assert rec == release_policy().record() and rec["source"] == "package default"
    assert rec["digest"].startswith("sha256:") and len(rec["digest"]) == 7 + 64


@pytest.mark.reliability(section="3. Gates a run cannot loosen", case="substitution's own target_identity (named by the config) in the manifest",
                         before="LeakError on every run (then retried twice)", after="published; the same name anywhere else is still a leak")
def test_a_template_identity_named_by_the_config_is_not_a_leak(anonymized, ferg_images, tmp_path):
    r = _publish(anonymized, ferg_images, tmp_path / "rel", tmp_path / "private",
                 manifest={"method_params": {"target_identity": "aia"}}, private={"aia"})
    assert json.loads((r.path / "manifest.json").read_text())["method_params"]["target_identity"] == "aia"
    with pytest.raises(LeakError, match="aia"):
        _publish(anonymized, ferg_images, tmp_path / "rel2", tmp_path / "private2",
                 manifest={"method_params": {"target_identity": "aia"}, "who": "aia"}, private={"aia"})


def test_leak_stops_the_release(anonymized, ferg_images, tmp_path):
    with pytest.raises(LeakError, match="aia"):
        _publish(anonymized, ferg_images, tmp_path / "rel", tmp_path / "private", manifest={"who": "aia"},
                 private={"aia"})
    assert not (tmp_path / "rel" / "ferg").exists() or not any(
        p.name.startswith("v-") for p in (tmp_path / "rel" / "ferg").iterdir())


def test_leak_scan_finds_columns_and_metadata(tmp_path):
    import pyarrow as pa

    pq.write_table(pa.table({"name": ["Jane_Doe"]}).replace_schema_metadata({"src": "lfw/Jane_Doe_0001.jpg"}),
                   tmp_path / "x.parquet")
    found = find_leaks(tmp_path, {"Jane_Doe", "Jane_Doe_0001.jpg"})
    assert any("column name" in f for f in found) and any("metadata" in f for f in found)


def test_the_shipped_policy_file_is_valid_and_no_looser_than_the_defaults():
    from pathlib import Path

    shipped = load_release_policy(PACKAGE_POLICY)
    default = ReleasePolicy()
    assert shipped.max_attacker_margin <= default.max_attacker_margin and shipped.max_ssim <= default.max_ssim
    assert shipped.min_phash_distance >= default.min_phash_distance


def _card(path):
    text = (path / "README.md").read_text()
    assert text.startswith("---\n")
    return text


def test_the_release_has_a_dataset_card_that_lists_the_audit(anonymized, ferg_images, tmp_path):
    audit = {"identity_acc_worst": 0.26, "identity_acc_worst_lo": 0.25, "identity_acc_worst_hi": 0.27,
             "identity_chance": 0.25, "utility_acc_best": 0.8, "utility_acc_best_lo": 0.75,
             "utility_acc_best_hi": 0.85, "utility_chance": 0.5, "n_test": 5000.0}
    verdict = {"status": "PASS", "gates": {"attacker_margin": 0.05, "min_utility_retention": 0.9,
                                           "min_utility_above_chance": 0.05, "min_k": None, "extra": []}}
    r = _publish(anonymized, ferg_images, tmp_path / "rel", tmp_path / "private", run_margin=1.0, audit=audit,
                 manifest={"method_params": {"cell": 4}, "verdict": verdict}, license="cc-by-4.0",
                 private=_private(ferg_images))
    text = _card(r.path)
    try:
        from huggingface_hub import DatasetCard
    except ImportError:  # the YAML front matter alone
        import yaml

        data = yaml.safe_load(text.split("---\n")[1])
    else:
        data = DatasetCard(text).data.to_dict()
    assert data["license"] == "cc-by-4.0"
    assert data["deid"]["method"] == "pixelate" and data["deid"]["verdict"] == "PASS"
    worst = data["deid"]["audit"]["identity_acc_worst"]
    assert (worst["low"], worst["value"], worst["high"]) == (0.25, 0.26, 0.27)
    assert data["method_params"] == {"cell": 4} and data["deid"]["gates"]["attacker_margin"] == 0.05
    rows = json.loads((r.path / "manifest.json").read_text())["rows_by_split"]
    assert {s["name"]: s["num_examples"] for s in data["dataset_info"]["splits"]} == {
        {"val": "validation"}.get(k, k): v for k, v in rows.items() if v}
    names = next(f for f in data["dataset_info"]["features"] if f["name"] == "label")["dtype"]["class_label"]
    assert sorted(names["names"].values()) == sorted(set(read_table(anonymized, ANONYMIZED_SCHEMA)
                                                         .column("label").to_pylist()))
    body = text.split("---\n", 2)[2]
    assert "Privacy notice" in body and "identity, worst attacker" in body and "25.0% – 27.0%" in body
    # nothing in it names the input: no identity, file name, image id, path or digest
    assert find_leaks(r.path, _private(ferg_images) | {str(ferg_images), digest_table(ferg_images),
                                                     digest_table(anonymized)}) == []


def test_the_card_is_leak_scanned_but_for_the_declared_parameters(anonymized, ferg_images, tmp_path):
    r = _publish(anonymized, ferg_images, tmp_path / "rel", tmp_path / "private",
                 manifest={"method_params": {"target_identity": "aia"}}, private={"aia"})
    assert "aia" in _card(r.path)  # the config named it; it is not the input's
    assert find_leaks(r.path, {"aia"}) == []
    assert any(f.startswith("README.md") for f in find_leaks(r.path, {"pixelate"}))  # the rest of it is scanned


def test_a_release_reads_as_a_hugging_face_dataset_and_in_pandas_and_duckdb(anonymized, ferg_images, tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "datasets"))
    from other_readers import count_with_duckdb, load_with_datasets, read_with_pandas

    r = _publish(anonymized, ferg_images, tmp_path / "rel", tmp_path / "private")
    assert len(read_with_pandas(r.path / "data")) == r.rows == count_with_duckdb(r.path / "data")
    by_dir = load_with_datasets(r.path / "data", tmp_path / "cache")
    datasets = pytest.importorskip("datasets")
    by_card = datasets.load_dataset(str(r.path), cache_dir=str(tmp_path / "cache2"))  # the card's configs
    assert {k: len(v) for k, v in by_card.items()} == {k: len(v) for k, v in by_dir.items()}
    assert sum(len(v) for v in by_card.values()) == r.rows
    # the anonymized table the release came from reads the same way
    assert len(read_with_pandas(anonymized)) == count_with_duckdb(anonymized) == r.rows
    load_with_datasets(anonymized, tmp_path / "cache3")


WEAK = {str(i) for i in range(1, 13)} | {"a", "x", "test", "image", "mix", "neutral"}


@pytest.mark.reliability(section='1. Release unlinkable', case='identities that are numbers, one letter or common words (CelebA: integers)',
                         before="a passing release refused: '4' found in README.md, '2' in Parquet metadata, 'test', 'image', 'mix' in the demo's",
                         after='weak strings are leaks only as whole values in structured fields; the release publishes')
def test_numeric_and_common_word_identities_do_not_block_a_clean_release(anonymized, ferg_images, tmp_path):
    audit = {"identity_acc_worst": 0.26, "identity_acc_worst_lo": 0.2, "identity_acc_worst_hi": 0.29,
             "identity_chance": 0.25, "utility_acc_best": 0.8, "utility_acc_best_lo": 0.75,
             "utility_acc_best_hi": 0.85, "utility_chance": 0.5, "n_test": 5000.0, "k_anonymity": 1.0}
    r = _publish(anonymized, ferg_images, tmp_path / "rel", tmp_path / "private", audit=audit,
                 manifest={"method_params": {"k": 3}, "verdict": {"status": "PASS", "gates": {"attacker_margin": 0.05}}},
                 private=WEAK)
    assert find_leaks(r.path, WEAK) == []


@pytest.mark.reliability(section='1. Release unlinkable', case='a numeric or common-word identity written where it identifies',
                         before='(the substring scan caught these, and every digit anywhere)',
                         after='caught: a string cell, a manifest value, a value under an identifying key, a card front-matter value')
def test_weak_identities_are_still_caught_where_they_identify(anonymized, ferg_images, tmp_path):
    import pyarrow as pa

    with pytest.raises(LeakError, match="'7'"):
        _publish(anonymized, ferg_images, tmp_path / "rel", tmp_path / "private", manifest={"who": "7"}, private=WEAK)
    d = tmp_path / "scan"
    d.mkdir()
    pq.write_table(pa.table({"subject": ["3", "9"]}), d / "x.parquet")
    (d / "manifest.json").write_text(json.dumps({"source": {"person": "test"}, "note": "mix"}))
    found = find_leaks(d, WEAK)
    assert any("column subject" in f for f in found)
    assert any("person" in f and "'test'" in f for f in found)  # a common word under an identifying key
    assert not any("note" in f for f in found)  # 'mix' as the value of a note: the release's prose
    strong = find_leaks(d, {"Jane_Doe"})
    assert strong == []
    (d / "README.md").write_text("---\nsubjects: ['11']\n---\nEleven people, 11 of them smiling.\n")
    found = find_leaks(d, WEAK)
    assert any("front matter" in f and "'11'" in f for f in found)
    assert not any(f.startswith("README.md: ") for f in found)  # the number in prose is not an identity


@pytest.mark.reliability(section='1. Release unlinkable', case="a label with a newline ('x\\n# INJECTED HEADING') or a backtick in the dataset card",
                         before='written unescaped: the newline made a heading, the backtick closed the code span',
                         after='each label one line in a code span that its own backticks cannot close')
def test_labels_cannot_inject_markdown_into_the_card():
    from deid.release import dataset_card, md_code

    assert md_code("a`b") == "``a`b``" and md_code("x\n# INJECTED HEADING") == "`x # INJECTED HEADING`"
    card = dataset_card(dataset="d", method="blur", params={}, license="cc0-1.0", rows_by_split={"train": 2},
                        labels=["x\n# INJECTED HEADING", "a`b"], audit=None, verdict=None, policy={})
    body = card.split("---\n", 2)[2]
    assert not any(line.startswith("# INJECTED") for line in body.splitlines())
    assert "``a`b``" in body
