"""The release's dataset card, ``README.md``: a Hugging Face dataset card.

Its YAML front matter carries what ``datasets`` and ``huggingface_hub`` read (licence, features,
``configs`` with the data files of each split, ``dataset_info`` with each split's name, rows and
bytes) and the deid block (version, date, source, method, audit, gates, policy); its body follows
the sections of the Hugging Face dataset card template (``huggingface_hub``'s
``templates/datasetcard_template.md``): description and source, uses, structure, creation, the
de-identification and its audit (each figure with one line saying what it means), bias, risks and
limitations, citation.

Everything in it comes from the arguments (the released table's shape and labels, counts of the
source, the method and its declared parameters, the audit, the verdict and the policy) and from
the registries (the method's description and paper, each metric's meaning), so it names nothing
of the input. Text that comes from data or configuration (labels, parameters, the licence) is
written as a Markdown code span none of its characters can close (:func:`md_code`).
"""

from __future__ import annotations

import re
import sys
from datetime import datetime, timezone

from data_contracts import RELEASE_SCHEMA, SPLITS, hf_features

__all__ = ["dataset_card", "md_code", "method_facts", "HF_SPLIT_NAMES", "NOTICE", "FIELD_MEANINGS",
           "NOT_TRIED"]

# The contract's split names as Hugging Face calls them.
HF_SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}
NOTICE = ("De-identified images and utility labels only; no identities, source names or original pixels. "
          "Row order and ids are random.")
#: what each released column holds (a test checks it covers the release schema)
FIELD_MEANINGS = {
    "release_id": "a random 64-bit id (16 hex digits) drawn for this release: it names the row and nothing else",
    "split": "`train`, `val` or `test`: the split the pipeline fitted and audited with (Hugging Face calls `val` "
             "`validation`)",
    "label": "the utility label, a ClassLabel: its index, named by `features['label'].names`",
    "image": "the de-identified face, PNG bytes that `datasets` decodes to a PIL image",
    "height": "the image's height in pixels",
    "width": "the image's width in pixels",
    "channels": "1 (grey) or 3 (RGB)",
}
#: what the audit's attackers did not try, each with the attackers that would have tried it (an entry is
#: left off the card when one of them ran): the limits of what its figures say
NOT_TRIED: tuple[tuple[str, frozenset[str]], ...] = (
    ("a face recogniser trained on other photographs of the same people, from outside this dataset (the "
     "linkage test's gallery is this dataset's own originals)", frozenset()),
    ("a pretrained face recogniser as an attacker in the pool", frozenset({"dlib-descriptor"})),
    ("a state-of-the-art face recogniser (ArcFace-class models, trained on millions of faces)", frozenset()),
    ("an attacker that knows how the outputs were made (the exclusion attack on k-Same clusters)",
     frozenset({"exclusion"})),
    ("matching each output to the originals of its own published label", frozenset({"label-linkage"})),
    ("a person who knows someone in the source looking at the images", frozenset()),
    ("comparing this release with another release of the same source (another method, version or rerun): "
     "each audit sees one release", frozenset()),
    ("attacks on the method's trained model (inversion, membership inference: was a person in the source?); "
     "the model is not released", frozenset()),
    ("combining the label, split or image size with what is known about a person outside the pixels (a label "
     "only one person shows, a rare pose or accessory)", frozenset()),
)


def md_code(text) -> str:
    """``text`` as a Markdown code span on one line: newlines become spaces and the fence is one backtick
    longer than the longest run inside, so nothing in a label can close it or start a heading."""
    s = " ".join(str(text).split())
    runs = [len(r) for r in re.findall(r"`+", s)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def _first_paragraph(doc: str | None) -> str:
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def method_facts(method: str) -> dict:
    """What the method registry says of ``method``: its one-line description, its paper (the citation its
    module opens with, for methods that learn; the baselines cite none) and what an output is made of
    (``filter``: the input itself, filtered; ``proxies``: real training faces it keeps, mixed;
    ``generated``: a network trained on the source's faces). Unknown methods get empty facts."""
    from deid.methods import method_class

    try:
        cls = method_class(method)
    except Exception:  # noqa: BLE001  (a card is still written for a method this registry does not know)
        return {"description": "", "citation": "", "kind": "unknown"}
    kind = ("filter" if not cls.learns else "proxies" if cls.holds_training_images else "generated")
    citation = _first_paragraph(sys.modules[cls.__module__].__doc__) if cls.learns else ""
    return {"description": _first_paragraph(cls.__doc__), "citation": citation, "kind": kind}


def _card_dtype(feature: dict | list) -> object:
    """A ``datasets`` feature (JSON form) as a dataset card's ``dtype`` entry."""
    if isinstance(feature, list):
        return {"list": [{"name": k, "dtype": _card_dtype(v)} for k, v in feature[0].items()]}
    kind = feature.get("_type")
    if kind == "Image":
        return "image"
    if kind == "ClassLabel":
        return {"class_label": {"names": {str(i): n for i, n in enumerate(feature["names"])}}}
    return feature["dtype"]


def _audit_rows(audit: dict | None) -> list[dict]:
    from deid.reporting.columns import COLUMNS, chance_for, fmt

    rows = []
    for c in COLUMNS:
        v = (audit or {}).get(c.key)
        if v is None:
            continue
        lo, hi = audit.get(f"{c.key}_lo"), audit.get(f"{c.key}_hi")
        chance = chance_for(c.key, audit)
        rows.append({"key": c.key, "label": c.label, "value": fmt(v, c.kind), "meaning": c.meaning,
                     "interval": f"{fmt(lo, c.kind)} – {fmt(hi, c.kind)}" if lo is not None and hi is not None else "—",
                     "chance": fmt(chance, c.kind) if chance is not None else "—",
                     "raw": {"value": float(v), **({"low": float(lo), "high": float(hi)} if lo is not None
                                                   and hi is not None else {})}})
    return rows


def _attackers(audit: dict | None) -> list[str]:
    """The registered attackers whose figures the audit holds, in the registry's order."""
    from deid.evaluation.attacker_registry import available_attackers

    return [a for a in available_attackers() if f"identity_acc_{a}" in (audit or {})]


def _gate_lines(verdict: dict | None) -> tuple[str, list[str], list[dict]]:
    if not verdict:
        return "not recorded", [], []
    g = verdict.get("gates") or {}
    lines = []
    if "attacker_margin" in g:
        lines.append(f"the worst identity attacker at most the threshold calibrated for the attackers' number and the "
                     f"test size: a leak of {g['attacker_margin']:.0%} over chance fails at least 80% of the time, "
                     f"a method at chance at most 5%")
    if g.get("min_utility_retention") is not None:
        lines.append(f"utility's lower bound at least {g['min_utility_retention']:.0%} of the original data's")
    if g.get("min_utility_above_chance") is not None:
        lines.append(f"utility's lower bound at least {g['min_utility_above_chance']:.0%} above chance")
    if g.get("min_k") is not None:
        lines.append(f"k-anonymity at least {g['min_k']}")
    if g.get("max_linkage_rank1") is not None:
        lines.append(f"linkage Rank-1 at most {g['max_linkage_rank1']:.0%}")
    for e in g.get("extra") or []:
        bounds = " and ".join(f"{k} {e[k]}" for k in ("min", "max") if e.get(k) is not None)
        lines.append(f"{e.get('metric')}: {bounds}")
    checks = [{"gate": c.get("gate"), "value": f"{c.get('value', float('nan')):.3f}", "op": c.get("op"),
               "threshold": f"{c.get('threshold', float('nan')):.3f}", "ok": bool(c.get("ok"))}
              for c in verdict.get("checks") or []]
    return str(verdict.get("status", "not recorded")), lines, checks


def _policy_lines(policy: dict) -> list[dict]:
    from deid.release_policy import ReleasePolicy

    fields = ReleasePolicy.model_fields
    return [{"key": k, "value": v, "meaning": (fields[k].description if k in fields else "") or ""}
            for k, v in policy.items()]


def _size_category(n: int) -> str:
    return ("n<1K" if n < 1_000 else "1K<n<10K" if n < 10_000 else "10K<n<100K" if n < 100_000
            else "100K<n<1M" if n < 1_000_000 else "n>1M")


def dataset_card(*, dataset: str, method: str, params: dict, license: str, rows_by_split: dict[str, int],
                 labels: list[str] | None, audit: dict | None, verdict: dict | None, policy: dict,
                 date: str | None = None, version: str | None = None, bytes_by_split: dict[str, int] | None = None,
                 download_size: int | None = None, source: dict | None = None,
                 preprocess: dict | None = None) -> str:
    """The release's ``README.md``: a Hugging Face dataset card (YAML front matter, Markdown body).

    ``version``: the release's version; ``bytes_by_split``: each split's size as Arrow data (``dataset_info.splits[].num_bytes``);
    ``download_size``: the Parquet files' bytes. ``source``: what is known of the source dataset
    (``description``, ``synthetic`` True/False/None, ``identities``, ``images``, ``labels``);
    ``preprocess``: the declared preprocessing settings.
    """
    from jinja2 import Environment, PackageLoader, StrictUndefined

    from deid import __version__

    date = date or datetime.now(timezone.utc).date().isoformat()
    splits = [(s, int(rows_by_split.get(s, 0))) for s in SPLITS if rows_by_split.get(s)]
    nbytes = {s: int((bytes_by_split or {}).get(s, 0)) for s, _ in splits}
    features = hf_features(RELEASE_SCHEMA, labels)
    n = sum(r for _, r in splits)
    audit_rows = _audit_rows(audit)
    status, gate_lines, checks = _gate_lines(verdict)
    source = {"description": "", "synthetic": None, "identities": None, "images": None, "labels": None,
              **(source or {})}
    facts = method_facts(method)
    front = {**_hub_front(dataset, method, license, splits, n, nbytes, features, download_size),
             "deid": {"version": __version__, "date": date, "dataset": dataset, "release": version, "method": method,
                      "source": {k: source[k] for k in ("synthetic", "identities", "images", "labels")},
                      "verdict": status, "gates": (verdict or {}).get("gates"),
                      "audit": {r["key"]: r["raw"] for r in audit_rows},
                      "release_policy": policy}}
    env = Environment(loader=PackageLoader("deid.reporting", "templates"), autoescape=False,
                      keep_trailing_newline=True, undefined=StrictUndefined, trim_blocks=False)
    env.filters["md_code"] = md_code  # data and config text: one line, in a code span none of its backticks closes
    kinds = {k: (_card_dtype(v) if not isinstance(_card_dtype(v), dict) else next(iter(_card_dtype(v))))
             for k, v in features.items()}
    return env.get_template("dataset_card.md.j2").render(
        front_matter=_front_matter_text(front, params), pretty_name=front["pretty_name"], deid_version=__version__,
        date=date, version=version, dataset=dataset, method=method, notice=NOTICE, rows=n,
        splits=[{"name": HF_SPLIT_NAMES[s], "folder": s, "rows": r, "bytes": nbytes[s]} for s, r in splits],
        features=[{"name": k, "kind": kinds[k], "meaning": FIELD_MEANINGS.get(k, "")} for k in features],
        labels=labels, license=license, params=params, audit=audit_rows, verdict=status, gates=gate_lines,
        checks=checks, policy=_policy_lines(policy), source=source, facts=facts, attackers=_attackers(audit),
        n_train=(audit or {}).get("n_train"), n_test=(audit or {}).get("n_test"),
        linkage=any(k.startswith("linkage_") for k in audit or {}),
        not_tried=[t for t, by in NOT_TRIED if not by & set(_attackers(audit))],
        preprocess=preprocess or {})


def _hub_front(dataset: str, method: str, license: str, splits: list[tuple[str, int]], n: int,
               nbytes: dict[str, int], features: dict, download_size: int | None) -> dict:
    """The front matter Hugging Face reads: licence, name, tags, size, each split's data files, rows and bytes."""
    return {
        "license": license,
        "pretty_name": f"{dataset} (de-identified, {method})",
        "tags": ["de-identified", "faces", "privacy", "deid"],
        "task_categories": ["image-classification"],
        "size_categories": [_size_category(n)],
        "configs": [{"config_name": "default", "data_files": [
            {"split": HF_SPLIT_NAMES[s], "path": f"data/{s}/*.parquet"} for s, _ in splits]}],
        "dataset_info": {
            "features": [{"name": k, "dtype": _card_dtype(v)} for k, v in features.items()],
            "splits": [{"name": HF_SPLIT_NAMES[s], "num_bytes": nbytes[s], "num_examples": r} for s, r in splits],
            "download_size": int(download_size or 0),
            "dataset_size": sum(nbytes.values()),
        },
    }


def _front_matter_text(front: dict, params: dict) -> str:
    """The front matter as YAML, the run configuration's method parameters in a block of their own."""
    import yaml

    text = yaml.safe_dump(front, sort_keys=False, allow_unicode=True)
    text += "# declared:begin (set by the run configuration)\n"
    text += yaml.safe_dump({"method_params": dict(params)}, sort_keys=True, allow_unicode=True)
    return text + "# declared:end\n"
