"""The study's plan and its tables: settings as run configs, aggregation, the papers' figures.

The study flow itself (the pipeline's tasks, RESULTS.md from the store) is tested in tests/flows/test_study_flow.py."""

from __future__ import annotations

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


def test_unstable_utility_on_the_originals_is_flagged():
    from deid.reporting.study import reference_notes

    recs = [Record("ferg", s, "original", "original", "", {"utility_acc_best": v, "utility_chance": 1 / 7,
                                                           "identity_acc_worst": 1.0, "identity_chance": 1 / 6})
            for s, v in ((0, 0.3), (1, 0.5), (2, 0.7))]
    notes = " ".join(reference_notes(aggregate(recs)["ferg"]))
    assert "did not learn reliably" in notes and "0.500 ± 0.163" in notes
    steady = [Record(r.dataset, r.seed, r.key, r.method, r.setting, {**r.metrics, "utility_acc_best": 0.9}) for r in recs]
    assert "reliably" not in " ".join(reference_notes(aggregate(steady)["ferg"]))


def test_every_planned_setting_is_one_run_config_method_with_its_own_folder_name(tmp_path):
    from deid.config import check_name
    from deid.run import resolve_run
    from deid.study_plan import key, method_label, plan, run_config

    for mode in ("quick", "full", "full-size"):
        p = plan(mode)
        labels = [method_label(key(n, q)) for n, q in p.methods]
        assert len(set(labels)) == len(labels) and all(check_name(x) == x for x in labels)
        cfg = run_config(p, "ferg", 2, work_dir=tmp_path, jaffe_dir=tmp_path)
        assert [m.key for m in cfg.methods] == labels and not cfg.include_baselines
        seeds = resolve_run(cfg).seeds  # the run seed is written once; split and audit derive theirs from it
        assert cfg.seed == seeds.run == seeds.split == seeds.audit == 2 and set(seeds.derived) == {"split", "audit"}
        assert seeds.synthetic == 0  # one drawn set for every seed of the study, as before
        assert cfg.dataset.synthetic.n_characters == p.ferg_characters and cfg.dataset.preprocess.size == p.ferg_size


def test_the_full_size_plan_runs_the_papers_settings_at_fergs_size(tmp_path):
    from deid.study_plan import plan, run_config

    p = plan("full-size")
    cfg = run_config(p, "ferg", 0, work_dir=tmp_path, jaffe_dir=tmp_path)
    assert 6 * 7 * cfg.dataset.synthetic.images_per_cell == 55_776 and cfg.dataset.preprocess.size == 50
    targets = sorted(q["target_identity"] for n, q in p.methods if n == "mi-adversarial" and "target_identity" in q)
    assert targets == ["@0", "@2", "@3", "@4", "@5"]  # Feutry et al.'s Table 1
    assert sorted(q["lam"] for n, q in p.methods if n == "mi-adversarial" and "target_identity" not in q) == [0, 1, 2, 4]
    assert "knn-pixels" not in cfg.audit.attackers and p.seeds == [0]
    # its folders under work/runs are not the full study's seed 0
    assert cfg.name != run_config(plan("full"), "ferg", 0, work_dir=tmp_path, jaffe_dir=tmp_path).name


def test_a_plan_setting_is_checked_like_a_config(tmp_path):
    from deid.errors import ConfigError
    from deid.study_plan import StudyPlan, run_config

    bad = StudyPlan("tiny", [0], [("blur", {"sigma": -1.0})])
    with pytest.raises(ConfigError, match=r"methods\.0.*sigma"):
        run_config(bad, "ferg", 0, work_dir=tmp_path, jaffe_dir=tmp_path)
    with pytest.raises(ValueError, match="study datasets are"):
        run_config(bad, "celeba", 0, work_dir=tmp_path, jaffe_dir=tmp_path)


def test_settings_whose_k_exceeds_the_identities_are_named_not_run(tmp_path):
    from deid.run import resolve_run
    from deid.study_plan import StudyPlan, applicable, run_config

    p = StudyPlan("tiny", [0], [("blur", {"sigma": 2.0}), ("ksame-pixel", {"k": 5}), ("ksame-pixel", {"k": 3})])
    run, skipped = applicable(resolve_run(run_config(p, "ferg", 0, work_dir=tmp_path, jaffe_dir=tmp_path)), 3)
    assert [m.key for m in run.methods] == [m.key for m in run.config.methods] == ["blur-sigma-2.0", "ksame-pixel-k-3"]
    assert skipped == ["`ksame-pixel[k=5]`: k = 5 > 3 identities"]


def test_frontier_plot_adds_a_diversity_row_and_the_table_its_columns(tmp_path):
    from PIL import Image

    from deid.reporting.study import frontier_plot, results_table

    def rec(key, method, seed, idn, util, div):
        return Record("ferg", seed, key, method, "", {"identity_acc_worst": idn, "utility_acc_best": util,
                                                     "identity_chance": 0.167, "utility_chance": 0.143,
                                                     "diversity_pixels": div, "distinct_outputs": div})

    records = [rec("original", "original", s, 1.0, 0.8, 1.0) for s in (0, 1)]
    records += [rec("ksame-select[k=6]", "ksame-select", s, 0.04, 1.0, 0.3) for s in (0, 1)]
    records += [rec("proxy-mix[k=3]", "proxy-mix", s, 0.17, 0.97, 0.6) for s in (0, 1)]
    aggs = aggregate(records)
    with_div = Image.open(frontier_plot(aggs, tmp_path / "a.png")).size
    no_div = aggregate([Record(r.dataset, r.seed, r.key, r.method, r.setting,
                               {k: v for k, v in r.metrics.items() if k not in ("diversity_pixels", "distinct_outputs")})
                        for r in records])
    without = Image.open(frontier_plot(no_div, tmp_path / "b.png")).size
    assert with_div[0] == without[0] and with_div[1] > 1.8 * without[1]  # a second row of panels
    table = results_table(aggs["ferg"])
    assert "diversity ↑" in table and "0.300 ± 0.000" in table
    assert "diversity ↑" not in results_table(no_div["ferg"])


def test_the_cost_table_sums_each_settings_fit_transform_and_audit():
    from deid.reporting.study import cost_table

    orig = Aggregate("ferg", "original", "original", "", 1, {"seconds": 120.0}, {})
    blur = Aggregate("ferg", "blur[sigma=2.0]", "blur", "sigma=2.0", 1,
                     {"transform_fit_seconds": 0.5, "transform_rows": 1000.0, "transform_images_per_s": 500.0,
                      "seconds": 60.0}, {})
    lines = cost_table([orig, blur])
    assert "| `blur[sigma=2.0]` | 0.500 | 2.0 | 500 | 60.0 |" in lines
    assert "| *the originals* | – | – | – | 120 |" in lines
    total = next(line for line in lines if line.startswith("Sum:"))
    assert "fits 0.0 min, transforms 0.0 min, audit rows 3.0 min" in total
    assert cost_table([Aggregate("ferg", "x", "x", "", 1, {"identity_acc_worst": 0.2}, {})]) == []
