"""The study generator on a tiny configuration: rows, reference rows, plot, numbers from the store."""

from __future__ import annotations

import re

import pytest

from deid.reporting.study import LITERATURE, Aggregate, Record, aggregate, pareto_front, paper_comparison


def test_aggregate_mean_and_std_over_seeds():
    recs = [Record("ferg", s, "blur[sigma=2]", "blur", "sigma=2", {"identity_acc_worst": v}) for s, v in
            [(0, 0.2), (1, 0.4), (2, 0.6)]]
    (a,) = aggregate(recs)["ferg"]
    assert a.n == 3
    assert a.mean["identity_acc_worst"] == pytest.approx(0.4)
    assert a.std["identity_acc_worst"] == pytest.approx((0.08 / 3) ** 0.5)


def test_pareto_front_drops_dominated_points():
    assert pareto_front([(0.2, 0.5), (0.3, 0.4), (0.5, 0.9), (0.1, 0.1)]) == [(0.1, 0.1), (0.2, 0.5), (0.5, 0.9)]


def test_literature_is_transcribed_and_labelled():
    t1 = [f for f in LITERATURE if f.table == "Table 1" and f.metric == "identity_acc_worst"]
    assert [f.printed for f in t1] == ["42.47 %", "38.25 %", "36.21 %", "32.77 %", "31.62 %"]
    assert all(f.dataset.startswith("FERG") for f in t1)
    fad = [f for f in LITERATURE if f.paper.endswith("FaDeNet") and f.setting["images"] == "deidentified"
           and f.metric == "linkage_rank1"]
    assert fad[0].value == pytest.approx(0.023)


def test_comparison_says_when_a_paper_figure_is_not_reached():
    a = Aggregate("ferg", "mi", "mi-adversarial", "lam=1.0, target_identity=@0, substitute=True", 1,
                  {"identity_acc_worst": 0.60, "utility_acc_best": 0.90}, {})
    lines = paper_comparison({"ferg": [a]})
    ident = next(ln for ln in lines if "identity_acc_worst" in ln)
    assert "does not reach" in ident and "0.175 higher" in ident  # 0.60 − 0.4247
    util = next(ln for ln in lines if "utility_acc_best" in ln)
    assert "reaches the paper" in util and "does not" not in util


@pytest.mark.slow
def test_study_generator_tiny(tmp_path):
    import mlflow

    from flows.study import StudyPlan, collect, run_study, write_results

    plan = StudyPlan("tiny", [0], [("blur", {"sigma": 2.0}), ("pixelate", {"block": 4})],
                     ferg_characters=3, ferg_per_cell=4, ferg_size=32,
                     audit={"cnn_epochs": 1, "cnn_width": 4, "linkage_repeats": 1, "pca_components": 8})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "docs"
    path = run_study(plan, ["ferg", "jaffe"], work=tmp_path / "work", out=out, tracking_uri=uri,
                     jaffe_dir=tmp_path / "no-jaffe", say=lambda m: None)
    md = path.read_text()
    assert (out / "results_frontier.png").stat().st_size > 1000
    assert "](results_frontier.png)" in md
    assert "mode: **tiny**" in md
    assert "dataset `jaffe` **skipped**" in md
    rows = {ln.split("|")[1].strip(): ln for ln in md.splitlines() if ln.startswith("| ")}
    for r in ("*chance*", "*original data*", "`blur`", "`pixelate`"):
        assert r in rows, r
    assert "Feutry et al., ICASSP 2020, Table 1" in md and "their numbers, on their datasets" in md
    assert "load average" in md and "at end:" in md

    # every number of a row is the metric MLflow holds for that run
    records, meta = collect(uri)
    blur = next(r for r in records if r.key == "blur[sigma=2.0]")
    run = mlflow.MlflowClient(uri).get_run(blur.run_id)
    cells = [c.strip() for c in rows["`blur`"].split("|")[4:-1]]
    assert cells[0] == f"{run.data.metrics['identity_acc_worst']:.3f}"
    assert cells[1] == f"{run.data.metrics['utility_acc_best']:.3f}"
    assert cells[-1] == f"{run.data.metrics['ssim']:.3f}"
    orig = rows["*original data*"]
    assert re.search(r"\| 1 \| ", orig)

    # regenerating from the store alone gives the same file
    again = write_results(uri, meta["study_id"], tmp_path / "again")
    assert again.read_text() == md


def test_warns_when_reference_classifiers_did_not_learn():
    from deid.reporting.study import reference_notes

    orig = Aggregate("ferg", "original", "original", "", 1,
                     {"identity_acc_worst": 0.9, "identity_chance": 1 / 6, "utility_acc_best": 0.6,
                      "utility_chance": 1 / 7, "utility_orig_clf_acc": 1 / 7}, {})
    notes = reference_notes([orig])
    assert len(notes) == 2 and "utility_orig_clf_acc" in notes[0]
    orig.mean["utility_orig_clf_acc"] = 0.6
    assert reference_notes([orig]) == []


def test_linkage_is_compared_above_chance():
    orig = Aggregate("ferg", "original", "original", "", 1, {"identity_chance": 1 / 6}, {})
    fad = Aggregate("ferg", "fadenet[lam=0.1]", "fadenet", "lam=0.1", 1, {"linkage_rank1": 1 / 6}, {})
    line = next(ln for ln in paper_comparison({"ferg": [orig, fad]}) if "linkage_rank1" in ln)
    assert "margin +0.000" in line and "reaches the paper's margin" in line  # at chance beats 0.023 − 1/57


def test_units_on_worker_processes_log_what_a_sequential_run_logs(tmp_path):
    from flows.study import StudyPlan, collect, run_study

    plan = StudyPlan("tiny", [0, 1], [("blur", {"sigma": 2.0})], ferg_characters=3, ferg_per_cell=4, ferg_size=24,
                     audit={"attackers": ["linear"], "cnn_epochs": 1, "cnn_width": 4, "linkage_repeats": 1,
                            "pca_components": 8})
    got = {}
    for workers in (1, 2):
        uri = f"sqlite:///{tmp_path / f'mlflow{workers}.db'}"
        run_study(plan, ["ferg"], work=tmp_path / f"work{workers}", out=tmp_path / f"docs{workers}", tracking_uri=uri,
                  jaffe_dir=tmp_path / "no-jaffe", say=lambda m: None, workers=workers)
        records, meta = collect(uri)
        assert meta["workers"] == workers and meta["status"] == "done"
        got[workers] = {(r.seed, r.key): (r.metrics["identity_acc_linear"], r.metrics["ssim"]) for r in records}
    assert {s for s, _ in got[2]} == {0, 1}
    assert got[1] == got[2]


def test_feutry_table_and_lambda_sweep_from_records(tmp_path):
    from deid.reporting.study import Record, aggregate, feutry_table, lambda_sweep, lambda_sweep_plot

    recs = [Record("ferg", 0, "original", "original", "", {"identity_chance": 1 / 6, "utility_chance": 1 / 7,
                                                           "identity_acc_worst": 1.0, "utility_acc_best": 0.9})]
    for seed in (0, 1):
        for t, v in ((0, 0.30), (3, 0.40)):
            recs.append(Record("ferg", seed, f"mi[{t}]", "mi-adversarial", f"lam=1.0, target_identity=@{t}, substitute=True",
                               {"identity_acc_worst": v + 0.02 * seed, "utility_acc_best": 0.5}))
        for lam, v in ((0.0, 0.9), (1.0, 0.6), (4.0, 0.3)):
            recs.append(Record("ferg", seed, f"mi[{lam}]", "mi-adversarial", f"lam={lam}",
                               {"identity_acc_worst": v, "utility_acc_best": 0.4}))
    rows = aggregate(recs)["ferg"]
    t = feutry_table(rows)
    line0 = next(ln for ln in t.splitlines() if ln.startswith("| @0 "))
    assert "0.310 ± 0.010" in line0 and "42.47 %" in line0 and "-0.115" in line0  # 0.310 − 0.4247
    assert "| @3 " in t and "36.21 %" in t
    sw = lambda_sweep(rows)
    assert [x for x, _ in sw] == [0.0, 1.0, 4.0] and [a.mean["identity_acc_worst"] for _, a in sw] == [0.9, 0.6, 0.3]
    assert lambda_sweep_plot({"ferg": rows}, tmp_path / "s.png").stat().st_size > 1000
    assert feutry_table([a for a in rows if "target" not in a.setting]) is None


def test_settings_that_cannot_apply_are_named_not_run(tmp_path):
    from flows.study import StudyPlan, collect, run_study

    plan = StudyPlan("tiny", [0], [("blur", {"sigma": 2.0}), ("ksame-pixel", {"k": 5})], ferg_characters=3,
                     ferg_per_cell=4, ferg_size=24,
                     audit={"attackers": ["linear"], "cnn_epochs": 1, "cnn_width": 4, "linkage_repeats": 1,
                            "pca_components": 8})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    path = run_study(plan, ["ferg"], work=tmp_path / "work", out=tmp_path / "docs", tracking_uri=uri,
                     jaffe_dir=tmp_path / "no-jaffe", say=lambda m: None)
    records, meta = collect(uri)
    assert {r.key for r in records} == {"original", "blur[sigma=2.0]", "blackout"}  # blackout: the control
    assert "`ksame-pixel[k=5]`: k = 5 > 3 identities" in path.read_text()


def test_a_failing_unit_stops_the_study_on_worker_processes(tmp_path):
    from flows.study import StudyPlan, run_study

    plan = StudyPlan("tiny", [0, 1], [("blur", {"sigma": -1.0})], ferg_characters=3, ferg_per_cell=4, ferg_size=24,
                     audit={"attackers": ["linear"], "cnn_epochs": 1, "cnn_width": 4, "linkage_repeats": 1,
                            "pca_components": 8})
    with pytest.raises(ValueError, match="sigma"):
        run_study(plan, ["ferg"], work=tmp_path / "work", out=tmp_path / "docs", tracking_uri=f"sqlite:///{tmp_path / 'm.db'}",
                  jaffe_dir=tmp_path / "no-jaffe", say=lambda m: None, workers=2)


def test_a_quick_run_quotes_the_last_measured_full_study(tmp_path):
    from flows.study import StudyPlan, run_study

    kw = dict(ferg_characters=3, ferg_per_cell=4, ferg_size=24,
              audit={"attackers": ["linear"], "cnn_epochs": 1, "cnn_width": 4, "linkage_repeats": 1, "pca_components": 8})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    common = dict(work=tmp_path / "work", tracking_uri=uri, jaffe_dir=tmp_path / "no-jaffe", say=lambda m: None)
    run_study(StudyPlan("full", [0], [("blur", {"sigma": 2.0})], **kw), ["ferg"], out=tmp_path / "full", **common)
    md = run_study(StudyPlan("quick", [0], [("blur", {"sigma": 2.0})], **kw), ["ferg"], out=tmp_path / "quick",
                   **common).read_text()
    line = next(ln for ln in md.splitlines() if "expected time of the full study" in ln)
    assert "the last full study in this store" in line and "with 1 worker process(es)" in line


def test_unstable_utility_on_the_originals_is_flagged():
    from deid.reporting.study import reference_notes

    recs = [Record("ferg", s, "original", "original", "", {"utility_acc_best": v, "utility_chance": 1 / 7,
                                                           "identity_acc_worst": 1.0, "identity_chance": 1 / 6})
            for s, v in ((0, 0.3), (1, 0.5), (2, 0.7))]
    notes = " ".join(reference_notes(aggregate(recs)["ferg"]))
    assert "did not learn reliably" in notes and "0.500 ± 0.163" in notes
    steady = [Record(r.dataset, r.seed, r.key, r.method, r.setting, {**r.metrics, "utility_acc_best": 0.9}) for r in recs]
    assert "reliably" not in " ".join(reference_notes(aggregate(steady)["ferg"]))
