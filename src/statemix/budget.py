"""Compute budget of a grid: worst-case optimizer steps per study, and the wall time they take.

`python -m statemix.budget GRID --steps-per-s S --concurrency C` prints a markdown table. Steps are an upper
bound (max_epochs x batches per epoch; early stopping only shortens runs); S is the steps/s of one training
while C of them share the device (benchmarks/bench_train.py measures S for one training alone).
"""

from __future__ import annotations

import argparse
import sys

from statemix import config, grids
from statemix.tasks import TASKS


def run_steps(grid: grids.Grid, run: grids.Run) -> int:
    """Upper bound on a run's optimizer steps: max_epochs x batches per epoch."""
    cfg = config.load(overrides=run.overrides)
    ds = grid.datasets[f"data/{grid.name}/{run.task}/s{run.seed}"]
    n = int(ds.split_params["train"].get("num_examples", TASKS[ds.task].num_examples["train"]))
    return cfg.train.max_epochs * -(-n // cfg.train.batch_size)


def estimate(grid: grids.Grid, steps_per_s: float, concurrency: int) -> str:
    """Runs and worst-case steps per study (each run counted in its first study), and hours at the given rate."""
    rows, total = [], 0
    for name in grid.spec["studies"]:
        mine = [r for r in grid.runs.values() if r.studies[0] == name]
        steps = sum(run_steps(grid, r) for r in mine)
        total += steps
        rows.append(f"| {name} | {len(mine)} | {steps:,} | {steps / steps_per_s / concurrency / 3600:.2f} |")
    hours = total / steps_per_s / concurrency / 3600
    return "\n".join([f"grid {grid.name}: {len(grid.runs)} runs at {steps_per_s:g} steps/s per training, "
                      f"{concurrency} trainings at once", "", "| study | runs | max steps | hours |",
                      "|---|---|---|---|", *rows, f"| total | {len(grid.runs)} | {total:,} | {hours:.2f} |"])


def study_tokens(grid: grids.Grid, study: str, steps_per_s: float, concurrency: int) -> str:
    """One study's token budget (steps x batch x seq_len per run) and the minutes it takes at the given rate."""
    mine = [r for r in grid.runs.values() if study in r.studies]
    if not mine:
        raise ValueError(f"--study {study!r}: no runs; allowed: {sorted(grid.spec['studies'])}")
    rows, steps_all, tokens_all = [], 0, 0
    for run in mine:
        cfg = config.load(overrides=run.overrides)
        ds = grid.datasets[f"data/{grid.name}/{run.task}/s{run.seed}"]
        seq_len = int(ds.params.get("seq_len", TASKS[ds.task].defaults.get("seq_len", 0)))
        steps = run_steps(grid, run)
        steps_all, tokens_all = steps_all + steps, tokens_all + steps * cfg.train.batch_size * seq_len
        rows.append((steps, cfg.train.batch_size, seq_len))
    per_run = sorted(set(rows))
    return "\n".join([f"study {study}: {len(mine)} runs; per run (steps x batch x seq_len): "
                      + ", ".join(f"{s:,} x {b} x {t} = {s * b * t / 1e6:.2f}M tokens" for s, b, t in per_run),
                      f"total {steps_all:,} steps, {tokens_all / 1e6:.1f}M tokens; at {steps_per_s:g} steps/s per "
                      f"training, {concurrency} at once: {steps_all / steps_per_s / concurrency / 60:.1f} min"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m statemix.budget", description=__doc__.splitlines()[0])
    p.add_argument("grid", help="paper | cpu | smoke | path to a grid YAML")
    p.add_argument("--steps-per-s", type=float, required=True, help="training steps/s of one run")
    p.add_argument("--concurrency", type=int, required=True, help="trainings running at once")
    p.add_argument("--study", help="only this study, with its token budget")
    args = p.parse_args(argv)
    for key in ("steps_per_s", "concurrency"):
        if getattr(args, key) <= 0:
            print(f"statemix.budget: error: --{key.replace('_', '-')}={getattr(args, key)}; must be > 0", file=sys.stderr)
            return 2
    try:
        grid = grids.load(args.grid)
    except ValueError as err:
        print(f"statemix.budget: error: {err}", file=sys.stderr)
        return 2
    try:
        print(study_tokens(grid, args.study, args.steps_per_s, args.concurrency) if args.study
              else estimate(grid, args.steps_per_s, args.concurrency))
    except ValueError as err:
        print(f"statemix.budget: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
