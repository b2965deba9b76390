"""The pilot: short learning-curve runs that size the paper grid (where architectures fail, where they saturate,
and how many epochs early stopping takes).

    python -m statemix.pilot run params/grids/pilot.yaml --jobs 20 --time-limit 200
    python -m statemix.pilot summarise params/grids/pilot.yaml --out reports/pilot

`run` generates the grid's datasets, then trains every run at once (`--jobs` at a time), each under a wall-clock
limit: a run cut by the limit keeps its per-epoch history.csv, which is all a learning curve needs. `summarise`
joins the histories into curves.csv, one row per run into summary.csv (epochs done, the first epoch at the
early-stop accuracy, steps/s) and draws curves.png. statemix.budget reads summary.csv.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from statemix import grids
from statemix.io import atomic_write_text

STOP_ACC = 0.999


def _train_command(grid: grids.Grid, run: grids.Run, python: str) -> list:
    ds = grid.datasets[run.dataset_path(grid.name)]
    sets = [a for o in run.overrides for a in ("--set", o)]
    return [python, "-m", "statemix.train", "--task", run.task_name, "--arch", run.arch, "--width", str(run.width),
            "--seed", str(run.seed), "--data", ds.path(grid.name), "--out", run.path(grid.name),
            "--set", "track.enabled=false", *sets]


def generate(grid: grids.Grid, python: str) -> None:
    for path, ds in sorted(grid.datasets.items()):
        for split, params in ds.split_params.items():
            sets = [a for k, v in params.items() for a in ("--set", f"{k}={v}")]
            subprocess.run([python, "-m", "statemix.generate", "--task", ds.task, "--split", split, "--seed",
                            str(ds.seed), "--out", f"{path}/{split}", *sets], check=True)
        print(f"pilot: generated {path}", flush=True)


def run_all(grid: grids.Grid, jobs: int, time_limit: float, python: str = sys.executable) -> None:
    """Generate the data, then every training concurrently under `timeout time_limit`; logs in logs/<grid>/."""
    generate(grid, python)
    runs = sorted(grid.runs.values(), key=lambda r: r.path(grid.name))
    start = time.time()

    def one(run: grids.Run) -> str:
        log = Path("logs") / grid.name / (run.path(grid.name).replace("/", "_") + ".log")
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as f:
            code = subprocess.run(["timeout", str(time_limit), *_train_command(grid, run, python)],
                                  stdout=f, stderr=subprocess.STDOUT).returncode
        state = {0: "done", 124: "cut at the time limit"}.get(code, f"exit {code}")
        line = f"pilot: {run.path(grid.name)}: {state} after {time.time() - start:.0f} s"
        print(line, flush=True)
        return line

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(one, runs))


def _first_at(accs: pd.Series, epochs: pd.Series, level: float):
    hit = epochs[accs >= level]
    return int(hit.iloc[0]) if len(hit) else None


def summarise(grid: grids.Grid, out: Path) -> pd.DataFrame:
    """curves.csv (every epoch of every run), summary.csv (one row per run) and curves.png under `out`."""
    curves, rows = [], []
    for run in sorted(grid.runs.values(), key=lambda r: r.path(grid.name)):
        folder = Path(run.path(grid.name))
        n, seq_len = grid.datasets[run.dataset_path(grid.name)].train_shape()
        ident = {"task": run.task, "task_name": run.task_name, "arch": run.arch, "width": run.width,
                 "variant": run.variant, "seed": run.seed, "train_examples": n, "seq_len": seq_len}
        hist = folder / "history.csv"
        if not hist.exists():
            rows.append({**ident, "epochs": 0})
            continue
        h = pd.read_csv(hist)
        curves.append(h.assign(**ident))
        best = h.loc[h["test_loss"].idxmin()]
        rows.append({**ident, "epochs": len(h), "complete": (folder / "metrics.json").exists(),
                     "first_epoch_at_stop_acc": _first_at(h["test_acc"], h["epoch"], STOP_ACC),
                     "first_epoch_at_0.9": _first_at(h["test_acc"], h["epoch"], 0.9),
                     "max_test_acc": h["test_acc"].max(), "last_test_acc": h["test_acc"].iloc[-1],
                     "best_ppl_epoch": int(best["epoch"]), "best_ppl_test_acc": best["test_acc"],
                     "steps_per_epoch": int(h["steps"].iloc[0]),
                     "steps_per_s": h["steps"].sum() / h["train_s"].sum(),
                     "s_per_epoch": (h["train_s"] + h["eval_s"]).mean()})
    out.mkdir(parents=True, exist_ok=True)
    summary = pd.DataFrame(rows)
    atomic_write_text(out / "summary.csv", summary.to_csv(index=False))
    if curves:
        table = pd.concat(curves, ignore_index=True)
        atomic_write_text(out / "curves.csv", table.to_csv(index=False))
        from statemix import plots

        plots.learning_curves(table, out / "curves.png", list(grid.spec["tasks"]))
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m statemix.pilot", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="generate the data and train every run, each under a time limit")
    r.add_argument("grid")
    r.add_argument("--jobs", type=int, default=16, help="trainings at once")
    r.add_argument("--time-limit", type=float, required=True, help="seconds per training")
    s = sub.add_parser("summarise", help="curves.csv, summary.csv and curves.png from the runs' histories")
    s.add_argument("grid")
    s.add_argument("--out", required=True)
    args = p.parse_args(argv)
    try:
        grid = grids.load(args.grid)
    except ValueError as err:
        print(f"statemix.pilot: error: {err}", file=sys.stderr)
        return 2
    if args.command == "run":
        if args.jobs < 1 or args.time_limit <= 0:
            print("statemix.pilot: error: --jobs must be >= 1 and --time-limit > 0", file=sys.stderr)
            return 2
        run_all(grid, args.jobs, args.time_limit)
    else:
        print(summarise(grid, Path(args.out)).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
