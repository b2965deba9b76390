"""aggregate + report on hand-made run folders whose numbers are known, so every statistic can be checked."""

import json

import pandas as pd
import pytest
import yaml

from statemix import aggregate, grids, report

MAD = list(aggregate.MAD_TASKS)
SPEC = {
    "name": "toy", "description": "hand-made results", "seeds": [0, 1], "report": {"thresholds": [0.5, 0.8, 0.95]},
    "tasks": {**{t: {"task": t} for t in MAD}, "S3": {"task": "permutation", "params": {"group": "S3"}}},
    "variants": {"softmax": {"model": {"norm": "softmax"}}, "relu": {"model": {"norm": "relu"}}},
    "studies": {
        "main": {"section": "main", "description": "d", "tasks": [*MAD, "S3"], "archs": ["lru", "bdlru-m2"],
                 "widths": [8, 16]},
        "order": {"section": "order", "description": "d", "tasks": ["compression"], "archs": ["hlru-m1", "hlru-m2"],
                  "widths": [8]},
        "norm": {"section": "norm", "description": "d", "tasks": ["in-context-recall"], "archs": ["hlru-m2"],
                 "widths": [8], "variants": ["softmax", "relu"]},
    },
}


def accuracy(run) -> float:
    """The made-up accuracy of a run: a known function of its identity."""
    base = {"lru": 0.4, "bdlru-m2": 0.6, "hlru-m1": 0.3, "hlru-m2": 0.5}[run.arch]
    base += 0.2 * (run.width == 16) + 0.1 * run.seed + (0.01 * MAD.index(run.task) if run.task in MAD else 0.0)
    return base - 0.4 * (run.variant == "relu")


@pytest.fixture
def toy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    grid = grids.load(str(path), check_names=False)
    for key, run in grid.runs.items():
        failed = run.task == "S3" and run.arch == "lru" and run.width == 16 and run.seed == 1
        diverged = run.variant == "relu" and run.seed == 1
        acc = accuracy(run)
        error = "loss became NaN" if failed else "train loss became NaN/inf in epoch 4" if diverged else None
        metrics = {"status": "failed" if failed else "ok", "error": error,
                   "diverged": error if diverged else None,
                   "params_total": 1000 * run.width + (7 if run.arch == "bdlru-m2" else 0),
                   "params_mixer_layer": 10 * run.width, "state_size": 2 * run.width, "selected_epoch": 3,
                   "epochs": 5, "test_acc": acc, "test_acc_micro": acc, "test_loss": 1.0, "test_ppl": 2.7,
                   "last": {"test_acc": acc - 0.05}, "experiment": "statemix-toy", "device": "cpu",
                   "precision": "fp32", "provenance": {"hardware": "toy cpu", "git_commit": "abc123",
                                                       "dataset_sha256": f"sha-{run.task}-{run.seed}"}}
        (tmp_path / key).mkdir(parents=True)
        (tmp_path / key / "metrics.json").write_text(json.dumps(metrics))
    return grid


def test_table_summary_and_scores(toy):
    table = aggregate.collect(toy, track_runs=False)
    assert len(table) == len(toy.runs) == 2 * (7 * 2 * 2) + 2 * 2 + 2 * 2
    summary = aggregate.summarise(table).set_index(["task", "arch", "variant", "width"])
    row = summary.loc[("in-context-recall", "lru", "base", 16)]
    assert row["acc_mean"] == pytest.approx(0.65)
    assert row["acc_std"] == pytest.approx(pd.Series([0.6, 0.7]).std())
    failed = summary.loc[("S3", "lru", "base", 16)]
    assert failed["failed"] == 1 and failed["acc_mean"] == pytest.approx(0.6) and pd.isna(failed["acc_std"])
    scores = aggregate.best_width_scores(aggregate.summarise(table)).set_index("arch")
    expected = sum(0.6 + 0.2 + 0.05 + 0.01 * i for i in range(6)) / 6
    assert scores.loc["bdlru-m2", "best_width_acc"] == pytest.approx(expected)
    assert pd.isna(scores.loc["hlru-m1", "best_width_acc"])
    head = aggregate.headline(table, aggregate.summarise(table))
    assert head["failed"] == 1 and head["diverged"] == 1


def test_diverged_run_counts_in_the_mean(toy):
    """A diverged run is reported at its best epoch and averaged in (MAD's way), unlike a failed one."""
    table = aggregate.collect(toy, track_runs=False)
    row = aggregate.summarise(table).set_index(["task", "arch", "variant", "width"]).loc[
        ("in-context-recall", "hlru-m2", "relu", 8)]
    assert row["diverged"] == 1 and row["failed"] == 0
    assert row["acc_mean"] == pytest.approx((0.1 + 0.2) / 2) and row["acc_std"] == pytest.approx(0.0707, abs=1e-4)


def test_report_numbers(toy, tmp_path):
    table = aggregate.collect(toy, track_runs=False)
    text = report.build(toy, table, tmp_path / "figures")
    assert "| lru | base | 16 | 32 | 16,000 | 0.650 ± 0.071 |" in text
    assert "| bdlru-m2 | 8,007 | 16,007 | not reached | 0.890 |" in text
    assert "| bdlru-m2 | 0.850 ± 0.071 |" in text
    assert "| in-context-recall | hlru-m2 | relu | 0.150 ± 0.071 | 1/2 | 0/2 |" in text
    assert "(1 diverged, 1 failed)" in text and "## Diverged runs" in text
    assert "hlru-m2/relu/w8/s1 | 3 | 0.200 | train loss became NaN/inf in epoch 4 |" in text
    assert "up to 200 epochs, cosine schedule to 1e-06 over 200 epochs" in text and "init `fork`" in text
    assert "S3/lru/base/w16/s1 | loss became NaN |" in text
    assert "`sha-S3-0`" not in text and "sha-S3-0" in text
    assert {p.name for p in (tmp_path / "figures").iterdir()} == {
        "accuracy_vs_params.png", "accuracy_vs_state.png", "order.png", "norm.png"}


def test_missing_run_names_the_folder(toy, tmp_path):
    victim = next(iter(toy.runs))
    (tmp_path / victim / "metrics.json").unlink()
    with pytest.raises(ValueError, match=victim):
        aggregate.collect(toy, track_runs=False)


def test_report_says_which_runs_ran_on_other_hardware(toy, tmp_path):
    table = aggregate.collect(toy, track_runs=False)
    assert "toy cpu: 64 run(s) (all runs on the same hardware)" in report.hardware_note(table)
    moved = table.index[:3]
    table.loc[moved, "hardware"] = "other cpu x4"
    note = report.hardware_note(table)
    assert "toy cpu: 61 run(s); other cpu x4: 3 run(s)" in note and "differences across hardware are expected" in note
    for r in table.loc[moved].itertuples():
        assert f"{r.task}/{r.arch}/{r.variant}/w{r.width}/s{r.seed}" in note.split("Runs not on toy cpu")[1]
    assert note.split("Runs not on toy cpu")[1].count("/s") == 3
