"""Join every run of a grid into one table (CSV + Parquet), summarise it over seeds, log the runs to MLflow.

`python -m statemix.aggregate --grid G --parquet P --csv C --metrics M --scaling S [--no-track]`

One row per run: its identity in the grid (task instance, arch, variant, width, seed, studies), the
selected-epoch and last-epoch metrics from metrics.json, and its provenance. With tracking on, each run is
logged through statemix.track (idempotent: runs already in the store, e.g. logged live during training,
are found, not duplicated), and the table records its MLflow experiment and run id.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from statemix import grids
from statemix.io import atomic_write_bytes, atomic_write_json, atomic_write_text

MAD_TASKS = ("in-context-recall", "fuzzy-in-context-recall", "noisy-in-context-recall",
             "selective-copying", "compression", "memorization")
METRICS = ("test_acc", "test_acc_micro", "test_loss", "test_ppl", "train_acc", "train_loss")
GROUP = ["task", "task_name", "arch", "variant", "width"]


def _row(grid: grids.Grid, key: str, run: grids.Run, track) -> dict:
    folder = Path(key)
    path = folder / "metrics.json"
    if not path.exists():
        raise ValueError(f"run {key}: {path} is missing; run `snakemake` (or the train rule) first")
    text = path.read_text()
    m = json.loads(text)
    last = m.get("last") or {}
    prov = m.get("provenance") or {}
    row = {"grid": grid.name, "task": run.task, "task_name": run.task_name, "arch": run.arch,
           "variant": run.variant, "width": run.width, "seed": run.seed, "studies": ",".join(run.studies),
           "sections": ",".join(sorted({grid.spec["studies"][st]["section"] for st in run.studies})),
           "status": m["status"], "error": m.get("error"), "diverged": bool(m.get("diverged")),
           "params_total": m.get("params_total"),
           "params_mixer_layer": m.get("params_mixer_layer"), "state_size": m.get("state_size"),
           "selected_epoch": m.get("selected_epoch"), "epochs": m.get("epochs"), "stopped": m.get("stopped"),
           **{k: m.get(k) for k in METRICS}, **{f"last_{k}": last.get(k) for k in METRICS},
           "steps": m.get("steps"), "steps_per_s": m.get("steps_per_s"), "wall_time_s": m.get("wall_time_s"),
           "peak_memory_bytes": m.get("peak_memory_bytes"), "device": m.get("device"),
           "precision": m.get("precision"), "hardware": prov.get("hardware"), "git_commit": prov.get("git_commit"),
           "git_dirty": prov.get("git_dirty"), "code_id": prov.get("code_id"),
           "dataset_sha256": prov.get("dataset_sha256"), "experiment": m.get("experiment"),
           "mlflow_run_id": None, "path": key}
    if m["status"] != "ok":
        row.update({k: np.nan for k in METRICS})
    if track is not None:
        from statemix import config as config_mod

        cfg = config_mod.from_dict(yaml.safe_load((folder / "config.yaml").read_text()), str(folder / "config.yaml"))
        history = folder / "history.csv"
        row["mlflow_run_id"], _ = track.log_run(folder, cfg, text, history.read_text() if history.exists() else "")
    return row


def collect(grid: grids.Grid, track_runs: bool = True, finished_only: bool = False, keys=None) -> pd.DataFrame:
    """The run table of a grid (or of its runs `keys`); every run must be complete (metrics.json written), or
    with `finished_only` the runs that are (the report lists the others as not run)."""
    track = None
    if track_runs:
        from statemix import track
    rows = [_row(grid, key, run, track) for key, run in sorted(grid.runs.items())
            if (keys is None or key in keys) and (not finished_only or (Path(key) / "metrics.json").is_file())]
    if not rows:
        raise ValueError(f"grid {grid.name!r}: no run has finished (no metrics.json under results/{grid.name})")
    return pd.DataFrame(rows)


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of each (task, arch, variant, width). A diverged run counts at its best epoch
    before the NaN (MAD's checkpoint); a failed run (NaN in its first epoch) has no result and is counted apart."""
    ok = table.assign(ok=table["status"].eq("ok"))
    agg = ok.groupby(GROUP, sort=True).agg(
        state_size=("state_size", "first"), params_total=("params_total", "first"),
        params_mixer_layer=("params_mixer_layer", "first"), seeds=("seed", "count"), failed=("ok", lambda s: int((~s).sum())),
        diverged=("diverged", "sum"),
        acc_mean=("test_acc", "mean"), acc_std=("test_acc", "std"), acc_micro_mean=("test_acc_micro", "mean"),
        last_acc_mean=("last_test_acc", "mean"), epochs_mean=("epochs", "mean"),
        studies=("studies", "first"), sections=("sections", "first"))
    agg["acc_std"] = agg["acc_std"].fillna(0.0).where(agg["seeds"] - agg["failed"] > 1, np.nan)
    return agg.reset_index()


def with_planned(summary: pd.DataFrame, grid: grids.Grid) -> pd.DataFrame:
    """`summary` plus `planned`: the runs the grid has for each cell, so a cell whose seeds have not all finished
    is known as such (statemix.claims will not compare it)."""
    keys = [[getattr(r, k) for k in GROUP] for r in grid.runs.values()]
    planned = pd.DataFrame(keys, columns=GROUP).value_counts().rename("planned").reset_index()
    return summary.merge(planned, on=GROUP, how="left")


def best_width_scores(summary: pd.DataFrame) -> pd.DataFrame:
    """Per arch (base variant): mean over the six MAD tasks of the best width's mean accuracy.

    Not MAD's score: MAD averages each task over its sweep of settings (tasks.md §1.1), and the grids run only
    the baseline setting of each task."""
    base = summary[summary["variant"].eq(grids.BASE_VARIANT) & summary["task_name"].isin(MAD_TASKS)]
    best = base.groupby(["arch", "task"])["acc_mean"].max().unstack("task")
    present = [t for t in MAD_TASKS if t in best.columns]
    out = best[present].copy()
    out["tasks"] = out[present].notna().sum(axis=1)
    out["best_width_acc"] = out[present].mean(axis=1).where(out["tasks"].eq(len(MAD_TASKS)))
    return out.reset_index().sort_values("best_width_acc", ascending=False, na_position="last")


def headline(table: pd.DataFrame, summary: pd.DataFrame) -> dict:
    """The DVC metrics file: run counts and the mean best-width accuracy over the MAD tasks per architecture."""
    scores = best_width_scores(summary)
    return {"runs": int(len(table)), "failed": int(table["status"].ne("ok").sum()),
            "diverged": int(table["diverged"].sum()),
            "best_width_acc": {r.arch: (None if pd.isna(r.best_width_acc) else round(float(r.best_width_acc), 4))
                          for r in scores.itertuples()}}


def _parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m statemix.aggregate", description=__doc__.splitlines()[0])
    p.add_argument("--grid", required=True, help="grid name or params/grids/<name>.yaml")
    p.add_argument("--parquet", required=True)
    p.add_argument("--csv", required=True)
    p.add_argument("--metrics", required=True, help="headline metrics JSON (DVC metrics)")
    p.add_argument("--scaling", required=True, help="accuracy vs state size / params CSV (DVC plots)")
    p.add_argument("--no-track", action="store_true", help="do not log the runs to MLflow")
    p.add_argument("--finished-only", action="store_true", help="table only the runs that have finished")
    args = p.parse_args(argv)
    try:
        grid = grids.load(args.grid, check_names=False)
        table = collect(grid, track_runs=not args.no_track, finished_only=args.finished_only)
    except ValueError as err:
        print(f"statemix.aggregate: error: {err}", file=sys.stderr)
        return 2
    summary = summarise(table)
    atomic_write_bytes(args.parquet, _parquet_bytes(table))
    atomic_write_text(args.csv, table.to_csv(index=False))
    atomic_write_text(args.scaling, summary.to_csv(index=False))
    atomic_write_json(args.metrics, headline(table, summary))
    print(f"{len(table)} runs ({int(table['status'].ne('ok').sum())} failed) -> {args.parquet}, {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
