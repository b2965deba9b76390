"""The lm study: one backbone and token budget for every run, its budget arithmetic, and its report section."""
import math

import pandas as pd

from statemix import config, grids, report_lm

MAIN_ARCHS = {"lru", "hlru-m2", "bdlru-m2", "bdlru-m4", "lstm", "mamba2", "gdn"}


def test_paper_lm_study_runs_the_main_archs_on_one_backbone_and_token_budget():
    grid = grids.load("paper")
    runs = grid.select(studies=["lm"])
    assert {r.arch for r in runs} == MAIN_ARCHS
    assert len({r.width for r in runs if r.arch == "bdlru-m2"}) >= 2
    assert len({r.overrides for r in runs}) == 1
    cfg = config.load(overrides=runs[0].overrides)
    assert cfg.model.d_model >= 256 and cfg.model.channel_mixer == "swiglu" and cfg.train.early_stop_acc == 0
    ds = grid.datasets[f"data/paper/lm/s{runs[0].seed}"]
    n, t = ds.split_params["train"]["num_examples"], ds.params["seq_len"]
    assert cfg.train.max_epochs * math.ceil(n / cfg.train.batch_size) == 1_136  # 4 x 284 steps
    assert 1_136 * cfg.train.batch_size * t == 9_306_112  # tokens per run, the same for every arch


def _table(grid, ppl):
    rows = []
    for run in grid.select(studies=["lm"]):
        rows.append({"path": run.path(grid.name), "task": run.task, "arch": run.arch, "width": run.width,
                     "seed": run.seed, "sections": "lm", "status": "ok", "state_size": run.width,
                     "params_total": 1000 * run.width, "test_ppl": ppl[(run.arch, run.width)],
                     "last_test_ppl": ppl[(run.arch, run.width)] + 0.5, "steps_per_s": 10.0,
                     "selected_epoch": 1})
    return pd.DataFrame(rows)


def test_report_section_compares_bdlru_with_lru_and_writes_figures(tmp_path):
    grid = grids.load("smoke")
    ppl = {("bdlru-m2", 8): 3.0, ("lru", 8): 4.0, ("bdlru-m2", 16): 2.5, ("lru", 16): 2.5}
    table = _table(grid, ppl)
    text = report_lm.section(grid, table, tmp_path)
    assert "bdlru-m2 3.000 is lower than lru 4.000 (one seed each: no spread)" in text
    assert "bdlru-m2 2.500 is within one std of lru 2.500" in text
    assert f"| lru | 8 | 8 | 8,000 | 4.000 | {math.log2(4):.3f} | 4.500 |" in text
    assert f"{10.0 * 16 * 16:,.0f}" in text  # tokens/s = steps/s x batch 16 x seq_len 16 (smoke)
    assert (tmp_path / "lm_ppl_vs_state.png").stat().st_size > 0
    assert (tmp_path / "lm_ppl_vs_params.png").stat().st_size > 0


def test_failed_runs_are_counted_not_averaged(tmp_path):
    grid = grids.load("smoke")
    table = _table(grid, {k: 3.0 for k in [("bdlru-m2", 8), ("lru", 8), ("bdlru-m2", 16), ("lru", 16)]})
    table.loc[table["arch"].eq("lru") & table["width"].eq(8), ["status", "test_ppl"]] = ["failed", float("nan")]
    summary = report_lm.summarise(grid, table)
    row = summary.set_index(["arch", "width"]).loc[("lru", 8)]
    assert row.failed == 1 and pd.isna(row.ppl_mean)
    assert "not comparable" in report_lm.section(grid, table, tmp_path)


def test_no_lm_study_says_so(tmp_path):
    grid = grids.load("smoke")
    table = _table(grid, {k: 3.0 for k in [("bdlru-m2", 8), ("lru", 8), ("bdlru-m2", 16), ("lru", 16)]})
    assert "No language-modelling study" in report_lm.section(grid, table.assign(sections="main"), tmp_path)


def test_cli_refuses_a_grid_without_lm(tmp_path, capsys):
    assert report_lm.main(["--grid", "cpu", "--out", str(tmp_path), "--no-track"]) == 2
    assert "no study of section lm" in capsys.readouterr().err
