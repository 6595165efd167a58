"""The release's dataset card: its snippet loads the release as printed, its YAML is what ``datasets`` and
``huggingface_hub`` read without a warning, its sections follow the Hugging Face template, and the public
manifest holds no internal pointer."""

from __future__ import annotations

import json
import logging
import os
import re
import warnings

import pytest
import yaml

from deid.release import INTERNAL_FIELDS, find_leaks, release_private_dir, release_record
from deid.release_card import FIELD_MEANINGS, NOT_TRIED, dataset_card, method_facts
from tests.test_release import _anonymize, _private, _publish

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach a hub

AUDIT = {"identity_acc_worst": 0.26, "identity_acc_worst_lo": 0.25, "identity_acc_worst_hi": 0.27,
         "identity_acc_cnn": 0.26, "identity_acc_linear": 0.22, "identity_chance": 0.25,
         "tstr": 0.8, "tstr_lo": 0.75, "tstr_hi": 0.85, "utility_chance": 0.2, "k_anonymity": 1.0,
         "k_attacker": 3.4, "n_train": 11200.0, "n_test": 2800.0}
VERDICT = {"status": "PASS", "gates": {"attacker_margin": 0.05}}


@pytest.fixture(scope="module")
def release(ferg_images, tmp_path_factory):
    """A pixelated release of the small FERG-like set, published by a run with internal pointers."""
    anonymized = _anonymize("pixelate", ferg_images, tmp_path_factory)
    work = tmp_path_factory.mktemp("work")
    r = _publish(anonymized, ferg_images, work.parent / f"{work.name}-release", release_private_dir(work),
                 audit=AUDIT, run_margin=1.0, license="cc-by-4.0", private=_private(ferg_images),
                 manifest={"method_params": {"block": 4}, "verdict": VERDICT, "mlflow_run_id": "0a1b2c3d4e5f",
                           "code_commit": "c0ffee1234567890", "prefect_flow_run_id": "5e6f-7a8b",
                           "cache_dir": str(work / "cache"), "config_name": "ferg-baselines"})
    return r, work


def _front(path):
    text = (path / "README.md").read_text()
    return yaml.safe_load(text.split("---\n")[1]), text.split("---\n", 2)[2]


def _snippet(body: str) -> str:
    code = re.search(r"```python\n(.*?)```", body, re.DOTALL)
    assert code, "the card prints no Python snippet"
    return code.group(1)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record):
        if record.levelno >= logging.WARNING:
            self.messages.append(record.getMessage())


def _run_quietly(code: str, ns: dict) -> list[str]:
    """Run ``code``; every warning and every WARNING log record of ``datasets`` or ``huggingface_hub``."""
    handler = _Records()
    loggers = [logging.getLogger(n) for n in ("datasets", "huggingface_hub")]
    for lg in loggers:
        lg.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            exec(compile(code, "README.md", "exec"), ns)  # noqa: S102 - the card's own snippet
    finally:
        for lg in loggers:
            lg.removeHandler(handler)
    return handler.messages + [str(w.message) for w in caught if w.category is not ResourceWarning]


def test_the_cards_snippet_loads_the_release_inside_and_outside_its_folder(release, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    r, _ = release
    front, body = _front(r.path)
    code = _snippet(body)
    assert re.search(r'^release = Path\("\."\)', code, re.MULTILINE)  # as printed: this folder
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    rows = json.loads((r.path / "manifest.json").read_text())["rows_by_split"]
    want = {{"val": "validation"}.get(k, k): v for k, v in rows.items() if v}
    monkeypatch.chdir(r.path)
    inside: dict = {}
    said = _run_quietly(code, inside)
    assert not [m for m in said if "malformed" in m or "splits" in m or "YAML" in m], said
    assert {k: len(v) for k, v in inside["ds"].items()} == want
    # from elsewhere: the same snippet with the folder's path
    monkeypatch.chdir(tmp_path)
    outside: dict = {}
    relative = os.path.relpath(r.path, tmp_path)
    said = _run_quietly(code.replace('Path(".")', f"Path({relative!r})", 1), outside)
    assert not [m for m in said if "malformed" in m or "splits" in m or "YAML" in m], said
    ds = outside["ds"]
    assert {k: len(v) for k, v in ds.items()} == want
    assert isinstance(ds["train"].features["label"], datasets.ClassLabel)
    assert ds["train"].features["label"].names == json.loads((r.path / "manifest.json").read_text())["labels"]
    assert ds["test"][0]["image"].size == (32, 32)
    # the card's byte counts are what `datasets` measures of each split
    card_bytes = {s["name"]: s["num_bytes"] for s in front["dataset_info"]["splits"]}
    assert card_bytes == {k: v.info.splits[k].num_bytes for k, v in ds.items()}
    assert front["dataset_info"]["dataset_size"] == sum(card_bytes.values())
    assert front["dataset_info"]["download_size"] == sum(p.stat().st_size for p in r.path.rglob("*.parquet"))


def test_the_yaml_validates_with_huggingface_hub_without_a_warning(release):
    hub = pytest.importorskip("huggingface_hub")
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs

    r, _ = release
    text = (r.path / "README.md").read_text()
    code = ("card = DatasetCard(text)\ndata = DatasetCardData(**card.data.to_dict())\n"
            "infos = DatasetInfosDict.from_dataset_card_data(card.data)\n"
            "configs = MetadataConfigs.from_dataset_card_data(card.data)\n")
    ns = {"DatasetCard": hub.DatasetCard, "DatasetCardData": hub.DatasetCardData, "text": text,
          "DatasetInfosDict": DatasetInfosDict, "MetadataConfigs": MetadataConfigs}
    assert _run_quietly(code, ns) == []
    info = ns["infos"]["default"]
    rows = json.loads((r.path / "manifest.json").read_text())["rows_by_split"]
    assert {s: info.splits[s].num_examples for s in info.splits} == {
        {"val": "validation"}.get(k, k): v for k, v in rows.items() if v}
    assert all(info.splits[s].num_bytes > 0 for s in info.splits)
    assert ns["configs"]["default"]["data_files"][0] == {"split": "train", "path": "data/train/*.parquet"}
    assert ns["data"].license == "cc-by-4.0" and ns["data"].size_categories == ["n<1K"]


def test_the_card_has_the_hugging_face_templates_sections_and_says_what_each_figure_means(release, ferg_images):
    from data_contracts import IMAGES_SCHEMA, read_table

    r, _ = release
    front, body = _front(r.path)
    headings = re.findall(r"^#{2,3} (.+)$", body, re.MULTILINE)
    template = ["Dataset Details", "Dataset Description", "Uses", "Direct Use", "Out-of-Scope Use",
                "Dataset Structure", "Dataset Creation", "Source Data", "Bias, Risks, and Limitations",
                "Recommendations", "Citation"]
    assert [h for h in headings if h in template] == template
    assert {"De-identification", "How it was audited", "Audit figures"} <= set(headings)
    # the source, as the pipeline knows it (people, images, labels of the ingested table); no word on synthetic
    src = read_table(ferg_images, IMAGES_SCHEMA, columns=["identity", "label"])
    people, labels = len(set(src.column("identity").to_pylist())), len(set(src.column("label").to_pylist()))
    assert front["deid"]["source"] == {"synthetic": None, "identities": people, "images": src.num_rows,
                                       "labels": labels}
    assert f"**People in the source:** {people}" in body
    assert "treat the source\n  as photographs of real people" in body
    # every figure of the audit table has its meaning on its row, k and the attackers' k told apart
    rows = [line for line in body.splitlines() if line.startswith("| ") and " | " in line]
    figures = {line.split(" | ")[0][2:]: line.rstrip(" |").rsplit(" | ", 1)[1] for line in rows
               if line.count(" | ") == 4 and not line.startswith("| metric")}
    assert set(figures) >= {"identity, worst attacker", "k", "k, attackers' view (1 / worst upper bound)"}
    assert all(len(m) > 10 for m in figures.values()), figures
    assert "fewest identities sharing one identical output" in figures["k"]
    assert "as the attackers see it" in figures["k, attackers' view (1 / worst upper bound)"]
    # how it was audited: the attackers that ran; what none of them tried
    assert "(`cnn`, `linear`)" in body and "a person who knows someone in the source" in body
    assert "Linkage used" not in body  # this audit recorded no linkage figure
    assert "each output is its own input, filtered" in body.lower()
    assert "no paper of its own" in body  # pixelate is a baseline
    # every released column is described
    assert all(f"| `{name}` |" in body for name in FIELD_MEANINGS)


def test_every_released_column_has_a_meaning():
    from data_contracts import RELEASE_SCHEMA

    assert set(FIELD_MEANINGS) == set(RELEASE_SCHEMA.names)


def test_proxy_methods_say_their_outputs_mix_other_real_peoples_faces_and_cite_their_paper():
    assert method_facts("proxy-morph")["kind"] == method_facts("ksame-net")["kind"] == "proxies"
    assert method_facts("blur")["kind"] == "filter" and method_facts("latent-shift")["kind"] == "generated"
    kw = dict(dataset="ferg", params={}, license="cc0-1.0", rows_by_split={"train": 3}, labels=["a"],
              audit=None, verdict=None, policy={})
    proxy = dataset_card(method="ksame-net", **kw)
    assert "Outputs are mixtures of other real people's faces" in proxy
    cite = re.search(r"## Citation\n.*?```text\n(.*?)```", proxy, re.DOTALL)
    assert cite and "Meden" in cite.group(1) and "k-Same-Net" in cite.group(1)
    blur = dataset_card(method="blur", **kw)
    assert "mixtures of other real people" not in blur and "```text" not in blur.split("## Citation")[1]
    # without an audit the card says so, and names no attacker
    assert "No audit was recorded with this release" in blur
    synthetic = dataset_card(method="blur", source={"synthetic": True, "identities": 6}, **kw)
    assert "no real person is pictured" in synthetic and "treat the source" not in synthetic


def test_an_attacker_that_ran_takes_its_limit_off_the_card(monkeypatch):
    from deid.evaluation import attacker_registry

    kw = dict(dataset="ferg", method="blur", params={}, license="cc0-1.0", rows_by_split={"train": 3},
              labels=["a"], verdict=None, policy={})
    text, by = next((t, b) for t, b in NOT_TRIED if b)
    assert text in dataset_card(audit={"identity_acc_worst": 0.3}, **kw)
    monkeypatch.setattr(attacker_registry, "available_attackers", lambda: ["cnn", *sorted(by)])
    ran = {"identity_acc_worst": 0.3, "identity_acc_cnn": 0.3, **{f"identity_acc_{a}": 0.3 for a in by}}
    card = dataset_card(audit=ran, **kw)
    assert text not in card and f"`{sorted(by)[0]}`" in card
    assert "Linkage used the original images" in dataset_card(audit={**ran, "linkage_rank1": 0.2}, **kw)


def test_config_text_on_the_card_cannot_inject_markdown():
    card = dataset_card(dataset="d", method="blur", params={"note": "x\n# INJECTED `code`"},
                        license="cc0-1.0\n## INJECTED", rows_by_split={"train": 2}, labels=["a"], audit=None,
                        verdict=None, policy={}, preprocess={"align": "none\n# INJECTED"})
    body = card.split("---\n", 2)[2]
    assert not [line for line in body.splitlines() if "INJECTED" in line and line.lstrip().startswith("#")]
    assert "`` x # INJECTED `code` ``" in body and "`cc0-1.0 ## INJECTED`" in body


def test_the_public_manifest_holds_no_internal_pointer_and_carries_the_deid_version(release, ferg_images,
                                                                                     tmp_path_factory):
    from deid import __version__

    r, work = release
    manifest = json.loads((r.path / "manifest.json").read_text())
    assert manifest["deid_version"] == __version__
    assert not set(INTERNAL_FIELDS) & set(manifest) and "cache_dir" not in manifest
    assert manifest["config_name"] == "ferg-baselines"  # a declared name, not a pointer: public
    text = "".join(p.read_text(errors="replace") for p in r.path.rglob("*") if p.suffix in (".json", ".md"))
    for pointer in ("0a1b2c3d4e5f", "c0ffee1234567890", "5e6f-7a8b", str(work)):
        assert pointer not in text
    assert find_leaks(r.path, {"0a1b2c3d4e5f", "c0ffee1234567890", "5e6f-7a8b", str(work)}) == []
    # the private side keeps them, with where the release and its input are
    record = release_record(release_private_dir(work), "ferg", r.version)
    assert record["published"]["mlflow_run_id"] == "0a1b2c3d4e5f"
    assert record["published"]["code_commit"] == "c0ffee1234567890"
    assert record["published"]["cache_dir"] == str(work / "cache")
    assert record["path"] == str(r.path.resolve()) and record["originals_dir"] == str(ferg_images.resolve())
    assert record["reruns"] == []


def test_a_rerun_that_finds_the_release_adds_its_pointers_to_the_private_record(ferg_images, tmp_path_factory,
                                                                                tmp_path):
    anonymized = _anonymize("pixelate", ferg_images, tmp_path_factory)
    private_dir = release_private_dir(tmp_path / "work")
    first = _publish(anonymized, ferg_images, tmp_path / "rel", private_dir, manifest={"mlflow_run_id": "run-1"})
    again = _publish(anonymized, ferg_images, tmp_path / "rel", private_dir, manifest={"mlflow_run_id": "run-2"})
    assert again.reused and again.version == first.version  # run ids are not part of what names a version
    record = release_record(private_dir, "ferg", first.version)
    assert record["published"]["mlflow_run_id"] == "run-1"
    assert [r["mlflow_run_id"] for r in record["reruns"]] == ["run-2"]
    assert "mlflow_run_id" not in json.loads((first.path / "manifest.json").read_text())
