"""Typed config: every name is checked before any work, and errors name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deid.config import load_config, validate_config
from deid.errors import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    cfg = load_config(path)
    assert cfg.dataset.name in path.stem and cfg.all_methods()


def _base(**kw):
    d = {"name": "t", "dataset": {"name": "ferg"}}
    d.update(kw)
    return d


@pytest.mark.parametrize("data, message", [
    (_base(dataset={"name": "ferg2"}), r"dataset.name: .*unknown dataset 'ferg2' \(did you mean 'ferg'\?\); allowed"),
    (_base(dataset={"name": "jaffe"}), "source 'builtin' generates a FERG-like set"),
    (_base(methods=[{"name": "blur", "params": {"radius": 2}}]), "no parameter.*radius.*allowed: \\['sigma'\\]"),
    (_base(methods=[{"name": "blur"}, {"name": "blur", "params": {"sigma": 5}}]), "appear twice"),
    (_base(release={"enabled": True}), "release.method must name"),
    (_base(release={"enabled": True, "method": "ksame-pixel"}), "not among the run's methods"),
    (_base(gates={"extra": [{"metric": "div", "min": 0.5}]}), "face metrics, not measured"),
    (_base(gates={"attacker_margin": 2}), "gates.attacker_margin"),
    (_base(audit={"attackers": ["svm"]}), "audit.attackers.0"),
    (_base(colour=True), r"colour: unknown key; allowed: \['name', 'dataset', 'methods'"),
    (_base(audit={"cnn_epoch": 5}), r"audit.cnn_epoch: unknown key \(did you mean 'cnn_epochs'\?\); allowed: \[.*'cnn_width'"),
    (_base(gates={"extra": [{"metric": "ssim", "maximum": 0.9}]}),
     r"gates.extra.0.maximum: unknown key \(did you mean 'max'\?\); allowed: \['metric', 'max', 'min'\]"),
    (_base(dataset={"name": "ferg", "synthetic": {"n_character": 4}}), r"dataset.synthetic.n_character: .*'n_characters'"),
    (_base(methods=[{"name": "blur", "param": {"sigma": 2}}]), r"methods.0.param: unknown key \(did you mean 'params'\?\)"),
    (_base(methods=[{"name": "blurr"}]), r"unknown method 'blurr' \(did you mean 'blur'\?\); registered methods: \["),
    (_base(methods=[{"name": "blur", "params": {"sigmaa": 2}}]), r"no parameter.*sigmaa.*\(did you mean 'sigma'\?\); allowed"),
    (_base(dataset={"name": "manifest", "source": "m.csv", "loader_options": {"path_colum": "file"}}),
     r"dataset: loader_options: loader option 'path_colum' \(did you mean 'path_column'\?\) is not an option of the "
     r"'manifest' loader; it takes: \['attribute_columns'"),
    (_base(dataset={"name": "jaffe", "source": "j", "loader_options": {"group_pattern": "(S"}}),
     r"dataset: loader_options: loader option group_pattern: '\(S' is not a regular expression"),
    (_base(dataset={"name": "ferg", "preprocess": {"faces": {"upsample_first": 2}}}),
     r"^config: dataset.preprocess.faces: upsample_first \(2\) is above upsample \(1\), the most the detector tries"),
    (_base(dataset={"name": "ferg", "preprocess": {"faces": {"upsample_first": -1}}}),
     r"dataset.preprocess.faces.upsample_first: Input should be greater than or equal to 0"),
])
def test_invalid_configs_name_the_field(data, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(data)


def test_yaml_is_loaded_safely(tmp_path):
    p = tmp_path / "evil.yaml"
    p.write_text("name: !!python/object/apply:os.system ['echo pwned']\ndataset: {name: ferg}\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


def test_each_problem_is_one_line_naming_the_file_and_the_field(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: t\ndataset: {name: ferg}\nbatch_size: 0\naudit: {cnn_epochs: many}\ncolor: red\n")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    lines = str(info.value).splitlines()
    assert len(lines) == 3 and all(line.startswith(f"{p}: ") for line in lines), lines
    assert sorted(line.split(": ")[1] for line in lines) == ["audit.cnn_epochs", "batch_size", "color"]
    p.write_text("name: t\ndataset: {name: ferg\nmethods: []\n")
    with pytest.raises(ConfigError, match=r"not valid YAML: line \d+, column \d+: ") as info:
        load_config(p)
    assert len(str(info.value).splitlines()) == 1


def test_overrides_use_dotted_keys(tmp_path):
    cfg = load_config(CONFIGS[0], {"audit.cnn_epochs": 2, "methods": [{"name": "ksame-select", "params": {"k": 3}}]})
    assert cfg.audit.cnn_epochs == 2 and [m.key for m in cfg.all_methods()][-1] == "ksame-select"
    cfg = load_config(CONFIGS[0], {"methods": [{"name": "blur"}], "methods.0.params.sigma": 5.0, "dask.address": None})
    assert cfg.methods[0].params == {"sigma": 5.0} and cfg.dask is not None and cfg.dask.address is None
    with pytest.raises(ConfigError, match="--set name.first: 'name' is a value, not a section"):
        load_config(CONFIGS[0], {"name.first": "x"})
    with pytest.raises(ConfigError, match="--set methods.3.name: 'methods' has 1 item\\(s\\), numbered from 0; no item '3'"):
        load_config(CONFIGS[0], {"methods": [{"name": "blur"}], "methods.3.name": "blur"})


# -- former method names ----------------------------------------------------------------------------
def test_former_method_names_are_read_as_the_current_ones_with_a_note(caplog):
    cfg = validate_config(_base(methods=[{"name": "latent_shift", "params": {"target": "none"}}, {"name": "ksame_net"}],
                                release={"enabled": True, "method": "ksame_net"}))
    assert [m.name for m in cfg.methods] == ["latent-shift", "ksame-net"]
    assert [m.key for m in cfg.methods] == ["latent-shift", "ksame-net"] and cfg.release.method == "ksame-net"
    from deid.methods.registry import _noted

    _noted.clear()  # the note is written once per name and process
    caplog.clear()
    validate_config(_base(methods=[{"name": "latent_shift"}]))
    assert [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()] == \
        ["method name 'latent_shift' is deprecated; use 'latent-shift'"]
    assert all(r.levelname == "WARNING" for r in caplog.records if "deprecated" in r.getMessage())


# -- what can be checked without data or servers ----------------------------------------------------
def test_check_run_checks_the_dataset_path_and_the_work_dir_and_writes_nothing(tmp_path):
    from deid.config import check_run

    ws = check_run(validate_config(_base(work_dir="w")), tmp_path)
    assert ws.work == tmp_path / "w" and ws.release is None and list(tmp_path.iterdir()) == []
    jaffe = _base(dataset={"name": "jaffe", "source": "data/jaffe"}, work_dir="w")
    with pytest.raises(ConfigError, match=f"^dataset.source: {tmp_path / 'data/jaffe'} does not exist \\(dataset 'jaffe'\\)$"):
        check_run(validate_config(jaffe), tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "jaffe").write_text("not a folder")
    with pytest.raises(ConfigError, match="dataset.source: .* is not a directory"):
        check_run(validate_config(jaffe), tmp_path)
    # a loader that reads one file (a manifest) takes a file as its source
    manifest = _base(dataset={"name": "manifest", "source": "data/jaffe"}, work_dir="w")
    assert check_run(validate_config(manifest), tmp_path).work == tmp_path / "w"
    (tmp_path / "data" / "jaffe").unlink()
    (tmp_path / "data" / "jaffe").mkdir()
    assert check_run(validate_config(jaffe), tmp_path).work == tmp_path / "w"
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "someone's thesis.tex").write_text("x")
    with pytest.raises(ConfigError, match="work_dir: .* is not empty and was not created by deid"):
        check_run(validate_config(jaffe), tmp_path)
    with pytest.raises(ConfigError, match="work_dir: /etc is a system directory"):
        check_run(validate_config(_base(work_dir="/etc")), tmp_path)


def test_loading_and_checking_configs_imports_no_torch_sklearn_prefect_or_mlflow():
    import json
    import subprocess
    import sys

    code = ("import json, sys\n"
            "from deid.config import check_run, load_config\n"
            "for p in sys.argv[1:]:\n"
            "    cfg = load_config(p, {'methods.0.params.k': 3} if 'ferg' in p else None)\n"
            "    try:\n"
            "        check_run(cfg)\n"
            "    except Exception:\n"
            "        pass  # a missing dataset path here: the import cost is what is measured\n"
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'sklearn', 'scipy', 'prefect', 'mlflow'})))\n")
    r = subprocess.run([sys.executable, "-c", code, *map(str, CONFIGS)], capture_output=True, text=True, timeout=120,
                       cwd=str(CONFIGS[0].parents[1]))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []


def test_every_method_module_imports_without_torch_or_sklearn():
    """``deid methods`` lists every method's parameters: each module imports torch inside its functions."""
    import json
    import subprocess
    import sys

    from deid.methods.registry import METHOD_MODULES

    code = ("import importlib, json, sys\n"
            "heavy = {}\n"
            "for m in sys.argv[1:]:\n"
            "    importlib.import_module('deid.methods.' + m)\n"
            "    heavy[m] = sorted({k.split('.')[0] for k in sys.modules} & {'torch', 'sklearn', 'prefect', 'mlflow'})\n"
            "print(json.dumps(heavy))\n")
    r = subprocess.run([sys.executable, "-c", code, *METHOD_MODULES], capture_output=True, text=True, timeout=120,
                       cwd=str(CONFIGS[0].parents[1]))
    assert r.returncode == 0, r.stderr
    heavy = json.loads(r.stdout)
    assert {m: h for m, h in heavy.items() if h} == {}, \
        "these method modules import heavy libraries at module level; import them inside the functions that use them"


# -- method parameters: typed and constrained where each method declares them ------------------
@pytest.mark.reliability(section='5. Config types checked before any work', case="blur sigma 'abc' or -5, k 'six' or 2.5, block 0, ...",
                         before='passed validation, died in fit with a raw traceback after ingest and a retry',
                         after='ConfigError at load naming the parameter')
@pytest.mark.parametrize("method, params, message", [
    ("blur", {"sigma": "abc"}, r"methods\.0: method 'blur': sigma: Input should be a valid number \(got 'abc'\)"),
    ("blur", {"sigma": -5}, r"sigma: Input should be greater than 0 \(got -5\)"),
    ("blur", {"sigma": float("nan")}, "sigma: Input should be a finite number"),
    ("pixelate", {"block": 0}, r"block: Input should be greater than or equal to 1 \(got 0\)"),
    ("pixelate", {"block": 2.0}, "block: Input should be a valid integer"),
    ("blackout", {"value": 1.5}, "value: Input should be less than or equal to 1"),
    ("ksame-select", {"k": "six"}, r"k: Input should be a valid integer \(got 'six'\)"),
    ("ksame-select", {"k": 2.5}, r"k: Input should be a valid integer \(got 2.5\)"),
    ("ksame-pixel", {"k": 1}, "k: Input should be greater than or equal to 2"),
    ("ksame-pixel", {"k": True}, "k: Input should be a valid integer"),
    ("ksame-select", {"space": "colour"}, "space: Input should be 'pixel' or 'eigen'"),
    ("latent-shift", {"target": "centre"}, "target: Input should be 'kmeans', "),
    ("latent-shift", {"alpha": 1.2}, "alpha: Input should be less than or equal to 1"),
    ("latent-shift", {"hidden": "wide"}, "hidden must look like '1024-768-512'"),
    ("latent-shift", {"architecture": "conv", "image_size": 48}, "needs image_size a power of two"),
    ("fadenet", {"epochs": 0}, "epochs: Input should be greater than or equal to 1"),
    ("fadenet", {"val_fraction": 1.0}, "val_fraction: Input should be less than 1"),
    ("fadenet", {"augment": "yes"}, "augment: Input should be a valid boolean"),
    ("fadenet", {"random_state": -1}, "random_state: Input should be greater than or equal to 0"),
    ("fadenet", {"device": "gpu0"}, "device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu0'"),
    ("mi-adversarial", {"substitute": True}, "substitute=True needs target_identity"),
    ("ksame-net", {"image_size": 24}, "image_size: must be a power of two, got 24"),
    ("substitution", {}, "substitution: target_identity must name"),
])
def test_method_params_are_typed_and_constrained(method, params, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(_base(methods=[{"name": method, "params": params}]))


@pytest.mark.parametrize("method, params", [
    ("blur", {"sigma": 3}),  # an int where a float is declared is a number all the same
    ("ksame-select", {"k": 6, "space": "eigen"}),
    ("latent-shift", {"architecture": "conv", "target": "grid_neighbour", "image_size": 32}),
    ("mi-adversarial", {"lam": 0.0, "target_identity": "@0", "substitute": True, "device": "cuda:1"}),
])
def test_valid_method_params_pass_unchanged(method, params):
    cfg = validate_config(_base(methods=[{"name": method, "params": dict(params)}]))
    assert cfg.methods[0].params == params


def test_every_method_declares_parameters_its_defaults_satisfy():
    from deid.methods import available_methods, method_class

    for name in available_methods():
        cls = method_class(name)
        declared = cls.param_model().model_fields
        assert list(declared) == cls.param_names(), name
        for p, f in declared.items():
            assert f.annotation is not None and f.annotation is not Any, f"{name}.{p} has no type"
        cls.validate_params(getattr(cls, "test_params", {}))
        if name != "substitution":  # it has no default target identity
            assert set(cls.validate_params({})) == set(cls.param_names())


# -- path components, devices, schedule, audit splits ---------------------------------------------
@pytest.mark.reliability(section='5. Config types checked before any work', case="device gpu or cuda:x, schedule '61 * * * *', audit.test_split: nonexistent",
                         before='accepted',
                         after='refused at config load')
@pytest.mark.reliability(section='2. Paths from config are validated', case="method label '/srv/data/victim' or '../../../x', run name '../escape'",
                         before='used as a folder name: a run deleted and overwrote folders outside work_dir',
                         after='refused at config load: not a plain name')
@pytest.mark.parametrize("data, message", [
    (_base(methods=[{"name": "blur", "label": "/srv/data/victim"}]),
     "methods.0.label: '/srv/data/victim' is not a plain name"),
    (_base(methods=[{"name": "blur", "label": "../../../x"}]), "methods.0.label: '../../../x' is not a plain name"),
    (_base(methods=[{"name": "blur", "label": "a/b"}]), "methods.0.label: 'a/b' is not a plain name"),
    (_base(name="../escape"), "name: '../escape' is not a plain name"),
    (_base(name="run..1"), "name: 'run..1' is not a plain name"),
    (_base(name="x" * 65), "name: 'x{65}' is not a plain name"),
    (_base(device="gpu"), "device: device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'"),
    (_base(device="cuda:x"), "device: device must be"),
    (_base(audit={"device": "cuda:-1"}), "audit.device: device must be"),
    (_base(schedule="61 * * * *"), "schedule: '61 \\* \\* \\* \\*' is not a cron expression"),
    (_base(schedule="every monday"), "schedule: 'every monday' is not a cron expression"),
    (_base(audit={"test_split": "nonexistent"}), "audit.test_split: 'nonexistent' is not a split; splits are \\['train', 'val', 'test'\\]"),
    (_base(audit={"train_splits": ["train", "holdout"]}), "audit.train_splits: 'holdout' is not a split"),
    (_base(audit={"train_splits": ["train", "test"]}), "test_split 'test' is also among train_splits"),
])
def test_paths_devices_schedule_and_splits_are_checked_at_load(data, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(data)


def test_plain_names_devices_and_schedules_that_are_valid_load():
    cfg = validate_config(_base(name="ferg-run_2.b", device="cuda:0", schedule="0 3 * * 1",
                                methods=[{"name": "blur", "label": "blur-strong", "params": {"sigma": 6.0}}],
                                audit={"device": "cpu", "test_split": "val", "train_splits": ["train"]}))
    assert cfg.methods[0].key == "blur-strong" and cfg.audit.test_split == "val"
    assert validate_config(_base(schedule="@daily")).schedule == "@daily"


@pytest.mark.reliability(section='5. Config types checked before any work', case='device: cuda:99',
                         before='accepted',
                         after='refused in preflight, before any work')
def test_a_gpu_this_machine_lacks_is_refused_before_any_work():
    import torch

    from deid.config import check_devices

    check_devices(validate_config(_base(device="cpu")))  # nothing asked of CUDA: no check
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for field in ({"device": f"cuda:{n}"}, {"audit": {"device": f"cuda:{n}"}},
                  {"methods": [{"name": "fadenet", "params": {"device": f"cuda:{n}"}}]}):
        with pytest.raises(ConfigError, match=f"'cuda:{n}' was asked for but this machine has"):
            check_devices(validate_config(_base(**field)))
