"""Grid files: every committed grid validates, and a bad one fails with a message naming the key."""

import copy
import itertools

import pandas as pd
import pytest
import yaml

from statemix import grids

GRIDS = ("paper", "cpu", "smoke")


def _spec(name="smoke"):
    return yaml.safe_load((grids.GRID_DIR / f"{name}.yaml").read_text())


def _write(tmp_path, spec):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**spec, "name": "bad"}))
    return str(path)


@pytest.mark.parametrize("name", GRIDS)
def test_committed_grids_validate(name):
    grid = grids.load(name)
    assert grid.name == name and grid.runs and grid.datasets


@pytest.mark.parametrize("name", GRIDS)
def test_expansion_matches_a_plain_product(name):
    """Runs and datasets equal the union over studies of tasks x archs x variants x widths x seeds."""
    spec = _spec(name)
    runs, datasets = set(), set()
    for study in spec["studies"].values():
        for task, arch, variant, seed in itertools.product(study["tasks"], study["archs"],
                                                           study.get("variants", ["base"]), spec["seeds"]):
            datasets.add((task, seed))
            runs |= {(task, arch, variant, w, seed) for w in study.get("widths_by_arch", {}).get(arch, study["widths"])}
    grid = grids.load(name, check_names=False)
    assert {(r.task, r.arch, r.variant, r.width, r.seed) for r in grid.full_runs.values()} == runs
    assert set(grid.runs) <= set(grid.full_runs)
    assert {(d.name, d.seed) for d in grid.datasets.values()} == {(r.task, r.seed) for r in grid.runs.values()}
    assert {(d.name, d.seed) for d in grid.datasets.values()} <= datasets


def test_cuts_apply_in_order_and_drop_unused_datasets(tmp_path):
    spec = copy.deepcopy(_spec())
    spec["budget"] = {"gpu_hours": 1, "concurrency": 2, "cuts": [
        {"why": "S4 everywhere", "tasks": ["S4"]},
        {"why": "lru in main", "studies": ["main"], "archs": ["lru"]}]}
    grid = grids.load(_write(tmp_path, spec))
    left = {(r.task, r.arch, r.studies) for r in grid.runs.values()}
    assert not any(t == "S4" for t, _, _ in left)
    assert not any(a == "lru" and "main" in st for _, a, st in left)
    assert ("parity", "lru", ("extra",)) in left, "a cut names its study; lru elsewhere stays"
    assert len(grid.full_runs) - len(grid.runs) == sum(
        1 for r in grid.full_runs.values() if r.task == "S4" or (r.arch == "lru" and "main" in r.studies))
    assert not any(d.name == "S4" for d in grid.datasets.values())


@pytest.mark.parametrize("name", GRIDS)
def test_grid_sizes_are_valid_for_every_architecture(name):
    """Every run's width is a valid native size at or above the paper's smallest config (registry floors)."""
    from statemix.models import registry

    grid = grids.load(name)
    d_model = grid.spec["set"]["model"]["d_model"]
    floors = {"mamba2": 4 * d_model, "gdn": 128, "dproduct": 128, "dproduct-h4": 128, "lstm": 16}
    for run in grid.runs.values():
        assert run.width >= floors.get(run.arch, 2), (run.arch, run.width)
        registry[run.arch].build(d_model, run.width)  # constructs without error


def test_width_below_the_paper_floor_is_refused(tmp_path):
    spec = copy.deepcopy(_spec())
    spec["studies"]["extra"]["widths_by_arch"]["gdn"] = [32]
    with pytest.raises(ValueError, match="gdn.*smallest config has width 128"):
        grids.load(_write(tmp_path, spec))


@pytest.mark.parametrize("edit, words", [
    (lambda s: s["studies"]["main"].update(archz=["lru"]), ["studies.main", "archz"]),
    (lambda s: s.update(seeds=[-1]), ["seeds.0", "-1"]),
    (lambda s: s["tasks"]["S3"].update(task="permutations"), ["tasks.S3.task", "permutations"]),
    (lambda s: s["studies"]["main"].update(archs=["lru", "transformer"]), ["studies.main.archs", "transformer"]),
    (lambda s: s["set"]["train"].update(epochz=3), ["train.epochz"]),
    (lambda s: s["tasks"]["S3"]["params"].update(seq_lenn=3), ["tasks.S3", "seq_lenn"]),
    (lambda s: s["data"]["train"].update(num_examples=0), ["tasks.", "num_examples", "0"]),
    (lambda s: s["set"]["train"].update(lr="fast"), ["train.lr", "fast"]),
    (lambda s: s["studies"]["order"].update(widths=[7]), ["width 7", "not valid for arch"]),
])
def test_bad_grid_names_the_key(tmp_path, edit, words):
    spec = copy.deepcopy(_spec())
    edit(spec)
    with pytest.raises(ValueError) as err:
        grids.load(_write(tmp_path, spec))
    for word in words:
        assert word in str(err.value)


def test_overrides_merge_in_order():
    spec = copy.deepcopy(_spec())
    spec["tasks"]["S3"]["set"] = {"train": {"lr": 0.01}}
    _, runs = grids.expand(spec, "smoke")
    s3 = next(r for r in runs.values() if r.task == "S3")
    other = next(r for r in runs.values() if r.task == "S4")
    assert "train.lr=0.01" in s3.overrides and "train.lr=0.01" not in other.overrides
    assert "train.max_epochs=1" in s3.overrides


def test_select_filters_and_rejects_unknown_chunks():
    grid = grids.load("smoke", check_names=False)
    assert {r.task for r in grid.select(tasks=["S3"])} == {"S3"}
    assert all("order" in r.studies for r in grid.select(studies=["order"]))
    with pytest.raises(ValueError, match="study=nope"):
        grid.select(studies=["nope"])


def test_budget_costs_a_run_by_hand(tmp_path):
    """epochs x batches x seconds per step, with the pilot's early stop and rates, over the concurrency."""
    from statemix import budget

    pilot = tmp_path / "pilot.csv"
    pd.DataFrame([
        {"task": "S3", "task_name": "permutation", "arch": "lru", "width": 8, "seq_len": 8, "epochs": 5,
         "first_epoch_at_stop_acc": 4, "steps_per_epoch": 2, "steps_per_s": 10.0, "s_per_epoch": 0.5},
        {"task": "parity", "task_name": "parity", "arch": "lru", "width": 32, "seq_len": 8, "epochs": 5,
         "first_epoch_at_stop_acc": None, "steps_per_epoch": 2, "steps_per_s": 10.0, "s_per_epoch": 0.25},
    ]).to_csv(pilot, index=False)
    grid = grids.load("smoke", check_names=False)
    chunk = tmp_path / "chunk.csv"
    pd.DataFrame({"arch": sorted({r.arch for r in grid.full_runs.values()}), "steps_per_s": 100.0}).to_csv(chunk)
    rates = budget.Rates(pilot, tmp_path / "absent.csv", chunk)
    s3 = next(r for r in grid.runs.values() if r.task == "S3" and r.arch == "lru")
    cost = budget.run_cost(grid, s3, rates)
    # smoke: 32 examples, batch 16 -> 2 batches; max_epochs 1 caps the pilot's early stop at 4
    assert (cost["epochs"], cost["batches"], cost["s_per_step"]) == (1, 2, 0.25)
    par = next(r for r in grid.runs.values() if r.task == "parity" and r.arch == "lru")
    assert budget.run_cost(grid, par, rates)["s_per_step"] == 0.125
    other = next(r for r in grid.runs.values() if r.task == "S3" and r.arch == "bdlru-m2")
    # not in the pilot: the chunk's 100 steps/s times the pilot's median eval share, (2.5 + 1.25) / 2
    assert budget.run_cost(grid, other, rates)["s_per_step"] == pytest.approx(1.875 / 100)
    text, fits = budget.estimate(grid, rates)
    assert "| 0 | none |" in text and "fits" in text


def test_budget_prefers_the_benchmarks_rate_after_capture(tmp_path):
    """Two groups of 3 stacked runs side by side: a group-step holds the GPU 1 / (steps/s x 2); the rate after the
    first epoch (capture excluded) wins over the whole-run rate, which is used only where the table lacks it."""
    from statemix import budget

    grid = grids.load("smoke", check_names=False)
    run = next(r for r in grid.runs.values() if r.arch == "lru")
    rows = [{"arch": "lru", "width": 8, "mode": "batched", "runs": 3, "stacked_runs": 3, "steps_per_s": 10.0,
             "steady_steps_per_s": 40.0},
            {"arch": "bdlru-m2", "width": 8, "mode": "batched", "runs": 3, "stacked_runs": 3, "steps_per_s": 10.0,
             "steady_steps_per_s": 40.0},
            {"arch": "mix", "width": 0, "mode": "single", "runs": 1, "stacked_runs": 1, "steps_per_s": 1.0,
             "steady_steps_per_s": 1.0}]
    bench = tmp_path / "bench.csv"
    pd.DataFrame(rows).to_csv(bench, index=False)
    steady = budget.run_cost(grid, run, budget.Rates(tmp_path / "absent.csv", bench, None))
    assert steady["s_per_step"] == pytest.approx(1 / (40.0 * 2))
    pd.DataFrame(rows).drop(columns="steady_steps_per_s").to_csv(bench, index=False)
    whole = budget.run_cost(grid, run, budget.Rates(tmp_path / "absent.csv", bench, None))
    assert whole["s_per_step"] == pytest.approx(1 / (10.0 * 2))


def test_a_grid_name_must_be_its_own(tmp_path):
    spec = _spec()
    copied = tmp_path / "smoke.yaml"
    copied.write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError, match="params/grids/smoke.yaml.*results/smoke/"):
        grids.load(str(copied), check_names=False)
    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError, match="name='smoke' must match the file name 'mine'"):
        grids.load(str(mine), check_names=False)
    mine.write_text(yaml.safe_dump({**spec, "name": "mine"}))
    grid = grids.load(str(mine), check_names=False)
    assert grid.name == "mine" and all(k.startswith("results/mine/") for k in grid.runs)


def test_cli_checks_and_estimates_as_the_readme_says(capsys):
    from statemix import budget

    readme = (grids.ROOT / "README.md").read_text()
    assert "python -m statemix.grids check GRID" in readme and "python -m statemix.grids estimate GRID" in readme
    grid = grids.load("smoke")
    assert grids.main(["check", "smoke"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"grid smoke: ") and f"{len(grid.runs)} runs" in first
    assert grids.main(["smoke"]) == 0 and capsys.readouterr().out.splitlines()[0] == first
    code = grids.main(["estimate", "smoke"])
    out = capsys.readouterr().out
    assert code == budget.main(["smoke"]) and out == capsys.readouterr().out
    assert grids.main(["check", "nope"]) == 2 and "allowed" in capsys.readouterr().err


@pytest.mark.parametrize("name", GRIDS)
def test_every_grid_checkpoints_each_epoch(name):
    """An interrupted training loses at most one epoch (the committed grids all resume from the last one)."""
    from statemix import config

    for run in grids.load(name, check_names=False).runs.values():
        assert config.load(overrides=run.overrides).train.checkpoint_every == 1, run


def test_train_batches_by_arch_split_each_task_batch_by_architecture():
    grid = grids.load("smoke", check_names=False)
    by_task, by_arch = grids.train_batches(grid.runs.values()), grids.train_batches(grid.runs.values(), "arch")
    assert sorted(r.path("smoke") for rs in by_arch.values() for r in rs) == sorted(grid.runs)
    assert len(by_arch) == len({(r.task, r.variant, r.arch) for r in grid.runs.values()}) > len(by_task)
    for key, runs in by_arch.items():
        assert len({r.arch for r in runs}) == 1 and key.startswith(f"{runs[0].task}/{runs[0].variant}/{runs[0].arch}")
    with pytest.raises(ValueError, match="by='seed'"):
        grids.train_batches(grid.runs.values(), "seed")


@pytest.mark.parametrize("value, mode", [(True, "task"), ("true", "task"), ("task", "task"), ("arch", "arch"),
                                         (False, None), ("false", None)])
def test_batch_mode(value, mode):
    assert grids.batch_mode({"batch": value}) == mode


def test_a_bad_batch_mode_names_the_key_and_the_choices():
    with pytest.raises(ValueError, match=r"--config batch='seeds': allowed: false, true, task, arch"):
        grids.batch_mode({"batch": "seeds"})


def test_train_batches_hold_every_architecture_of_a_task_and_variant():
    """One batch per task instance x variant (overrides), every arch, width and seed of it exactly once."""
    grid = grids.load("smoke", check_names=False)
    batches = grids.train_batches(grid.runs.values())
    assert sorted(r.path("smoke") for rs in batches.values() for r in rs) == sorted(grid.runs)
    expected = {(r.task, r.variant) for r in grid.runs.values()}
    assert len(batches) == len(expected)
    for key, runs in batches.items():
        assert len({(r.task, r.variant, r.overrides) for r in runs}) == 1, key
        assert key.startswith(f"{runs[0].task}/{runs[0].variant}")
        assert runs == sorted(runs, key=lambda r: (r.arch, r.width, r.seed))
    assert any(len({r.arch for r in runs}) > 1 for runs in batches.values())
