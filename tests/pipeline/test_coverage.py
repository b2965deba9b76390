"""Claim coverage: which claims a grid could confirm once all its runs finish, on hand-built grids."""

from pathlib import Path

import pytest

from statemix import coverage, grids

MAD = {"in-context-recall": "in-context-recall"}
BASELINES = {"mamba2": 512, "gdn": 128, "dproduct": 128, "lstm": 16}


def hand_grid(cells, tasks=MAD, studies=None):
    """A grid whose runs are `cells` [(task, arch, variant, width, seeds, study)]."""
    spec = {"name": "hand", "report": {"thresholds": [0.5]},
            "tasks": {t: {"task": name, **({"params": {"group": t}} if name == "permutation" else {})}
                      for t, name in tasks.items()},
            "studies": studies or {"main": {"section": "main"}, "norm": {"section": "norm"}}}
    runs = {}
    for task, arch, variant, width, seeds, study in cells:
        for seed in range(seeds):
            run = grids.Run(task, arch, variant, width, seed, tasks[task], studies=(study,))
            runs[run.path("hand")] = run
    return grids.Grid("hand", Path("hand.yaml"), spec, {}, runs)


def main_cells(seeds=3, drop=(), lstm_seeds=None):
    cells = [("in-context-recall", "bdlru-m2", "base", 16, seeds, "main")]
    cells += [("in-context-recall", a, "base", w, lstm_seeds if a == "lstm" and lstm_seeds else seeds, "main")
              for a, w in BASELINES.items() if a not in drop]
    return cells


def row(grid, claim):
    return next(r for r in coverage.coverage(grid) if r[0] == claim)


def test_every_baseline_at_three_seeds_makes_c1_confirmable():
    assert row(hand_grid(main_cells()), "C1") == ["C1", "yes", "–"]


@pytest.mark.parametrize("cells, reason", [
    (main_cells(lstm_seeds=1), "few seeds: BD-LRU vs lstm on in-context-recall"),
    (main_cells(drop=("dproduct",)), "missing: BD-LRU vs DeltaProduct on in-context-recall"),
])
def test_a_one_seed_or_absent_baseline_blocks_c1(cells, reason):
    assert row(hand_grid(cells), "C1") == ["C1", "no", reason]


def test_norm_study_needs_two_seeds_per_variant():
    norms = ("softmax", "relu", "tanh")
    three = hand_grid([("in-context-recall", "bdlru-m2", v, 16, 3, "norm") for v in norms])
    one = hand_grid([("in-context-recall", "bdlru-m2", v, 16, 1, "norm") for v in norms])
    assert row(three, "C5")[1] == "yes"
    assert row(one, "C5")[1] == "no" and row(one, "C5")[2].startswith("few seeds: relu / tanh")


def test_a_claim_with_no_cell_says_so():
    assert row(hand_grid(main_cells()), "C3") == ["C3", "no", "no cell of this grid bears on it"]


def test_c4_needs_every_permutation_task_of_the_grid():
    tasks = {"S3": "permutation", "S5": "permutation"}
    cells = [(t, a, "base", w, 3, "main") for t in tasks
             for a, w in [("bdlru-m2", 32), *BASELINES.items()]]
    assert row(hand_grid(cells, tasks), "C4")[1] == "yes"
    cut = [c for c in cells if not (c[0] == "S5" and c[1] == "mamba2")]
    assert row(hand_grid(cut, tasks), "C4") == ["C4", "no", "missing: BD-LRU vs Mamba2 on S5"]


def test_the_paper_grid_coverage_is_computed_and_printed(capsys):
    assert coverage.main(["paper"]) == 0
    text = capsys.readouterr().out
    assert "| C1 |" in text and "| C5 |" in text and "can be confirmed once every run finishes" in text
