"""The benches that write into docs/ replace their own sections and keep the others'."""

from __future__ import annotations

from bench.bench_release import growth
from bench.common import kept_sections, write_section


def test_a_section_is_replaced_between_its_markers_and_others_are_kept(tmp_path):
    doc = tmp_path / "PERFORMANCE.md"
    doc.write_text("# head\n\n<!-- bench_transform: begin -->\nDask\n<!-- bench_transform: end -->\n")
    write_section(doc, "bench_release ferg-full", "first")
    write_section(doc, "bench_release ferg-full", "second")
    text = doc.read_text()
    assert "second" in text and "first" not in text and text.count("bench_release ferg-full: begin") == 1
    kept = kept_sections(doc)
    assert "Dask" in kept and "second" in kept and "# head" not in kept


def test_growth_scales_per_image_costs_and_spreads_only_what_runs_on_workers():
    tm = {"stages_s": {"ingest": 36.0, "audit": 360.0},
          "methods": {"m": {"fit_seconds": 600.0, "rows": 3600, "images_per_s": 100.0}}}
    text = growth({"peak_process_mb": 2048}, tm, 3600)
    row = next(line for line in text.splitlines() if line.startswith("| 1,000,000 | 8 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # 1M images: ingest 10 ms/img over 8 workers, transform 10 ms/img over 8, audit 100 ms/img in one process
    assert cells[2:6] == ["0.3", "0.3", "27.8", "27.8"]  # no per-row seconds: the audit is not split
    assert cells[6] == f"{0.3472 + 0.3472 + 27.7778 + 600 / 3600:.1f}"
    # Per-row seconds: the reference row 60 s, two method rows of 120 s, 60 s of fixed work. Split by
    # method, a part is the reference, the fixed work and its rows: at most 2 parts however many workers.
    tm["methods"] = {"original": {"audit_seconds": 60.0}, "a": {**tm["methods"]["m"], "audit_seconds": 120.0},
                     "b": {"audit_seconds": 120.0}}
    text = growth({"peak_process_mb": 2048}, tm, 3600)
    split = {int(line.split("|")[2]): [c.strip() for c in line.strip("|").split("|")][4:6]
             for line in text.splitlines() if line.startswith("| 1,000,000 |")}
    assert split[1] == ["27.8", "27.8"] and split[8] == split[32] == ["27.8", f"{240 / 3600 * 1e6 / 3600:.1f}"]


def test_proxy_mix_bench_takes_variants_with_parameters_and_tabulates_each_unseen_attribute():
    import pytest

    from bench.bench_proxy_mix import audit_overrides, render, variant_params

    assert variant_params("no-warp:min_steps=800,alpha=1.5") == {"warp": False, "min_steps": 800, "alpha": 1.5}
    with pytest.raises(SystemExit, match="unknown variant"):
        variant_params("no-such-variant")
    assert audit_overrides(["cnn_epochs=1", "cnn_width=16"]) == {"cnn_epochs": 1, "cnn_width": 16}
    with pytest.raises(SystemExit, match="--audit takes key=value"):
        audit_overrides(["no_such_field=1"])
    base = {"dataset": "d", "seed": 0, "reasons": ""}
    rows = [{**base, "method": "original", "verdict": "FAIL", "attr_light_acc_best": 0.9, "attr_light_chance": 0.3,
             "attr_pose_acc_best": 0.3, "attr_pose_chance": 0.3},
            {**base, "method": "proxy-mix/full", "verdict": "PASS", "attr_light_acc_best": 0.75,
             "attr_light_chance": 0.3, "attr_pose_acc_best": 0.5, "attr_pose_chance": 0.3}]
    text = render(rows, [])
    # light keeps (0.75 - 0.3) / (0.9 - 0.3); pose is not above chance on the originals, so it has no share
    assert "| d | proxy-mix/full | 0 | 0.750 | — |" in text


def test_side_by_side_bench_reports_each_runs_ratio_against_the_run_alone_and_the_target():
    from bench.bench_side_by_side import render

    m = {"load_start": "0.1 / 0.1 / 0.1", "load_after_alone": "1.0 / 0.5 / 0.2", "load_end": "2.0 / 1.0 / 0.5",
         "alone": {"wall_s": 180.0, "first_line_s": 0.8, "exit": 4},
         "pair": [{"wall_s": 360.0, "first_line_s": 1.1, "exit": 4, "ratio": 2.0},
                  {"wall_s": 414.0, "first_line_s": 1.2, "exit": 4, "ratio": 2.3}]}
    text = render(m, "bench/bench_side_by_side.py")
    assert "| side by side, run 2 | 6.90 | 1.2 | 4 | **2.30×** |" in text
    assert "took 2.30× the run alone" in text and "misses it" in text
    m["pair"][1]["ratio"] = 2.1
    assert "meets it" in render(m, "bench/bench_side_by_side.py")
