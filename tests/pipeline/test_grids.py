"""Grid files: every committed grid validates, and a bad one fails with a message naming the key."""

import copy
import itertools

import pytest
import yaml

from statemix import grids

GRIDS = ("paper", "cpu", "smoke")


def _spec(name="smoke"):
    return yaml.safe_load((grids.GRID_DIR / f"{name}.yaml").read_text())


def _write(tmp_path, spec):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
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
    assert {(r.task, r.arch, r.variant, r.width, r.seed) for r in grid.runs.values()} == runs
    assert {(d.name, d.seed) for d in grid.datasets.values()} == datasets


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


def test_budget_counts_steps_by_hand():
    from statemix import budget

    grid = grids.load("paper", check_names=False)
    by_task = {r.task: budget.run_steps(grid, r) for r in grid.runs.values()}
    assert by_task["in-context-recall"] == 20 * 12_800 // 128
    assert by_task["memorization"] == 200 * 2
    table = budget.estimate(grid, steps_per_s=10.0, concurrency=2)
    total = sum(budget.run_steps(grid, r) for r in grid.runs.values())
    assert f"| total | {len(grid.runs)} | {total:,} | {total / 20 / 3600:.2f} |" in table


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
    assert capsys.readouterr().out.strip().endswith(f"{len(grid.runs)} runs")
    assert grids.main(["estimate", "smoke", "--steps-per-s", "5", "--concurrency", "2"]) == 0
    assert capsys.readouterr().out.strip() == budget.estimate(grid, 5.0, 2).strip()
    assert grids.main(["estimate", "smoke", "--concurrency", "0"]) == 2
    assert "--concurrency=0" in capsys.readouterr().err
    assert grids.main(["check", "nope"]) == 2 and "allowed" in capsys.readouterr().err


@pytest.mark.parametrize("name", GRIDS)
def test_every_grid_checkpoints_each_epoch(name):
    """An interrupted training loses at most one epoch (the committed grids all resume from the last one)."""
    from statemix import config

    for run in grids.load(name, check_names=False).runs.values():
        assert config.load(overrides=run.overrides).train.checkpoint_every == 1, run
