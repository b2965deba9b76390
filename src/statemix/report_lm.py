"""The report's language-modelling section: perplexity against state size and parameters, and tokens/s.

`python -m statemix.report_lm --grid paper --out reports/paper/lm [--no-track]` builds the section alone from
the lm study's finished runs (runs.csv, lm.md, figures/; it says how many of the study's runs that is), for when
the rest of the grid has not run.

Reads the runs of section `lm` from the run table. Perplexity is per byte on the split the trainer evaluates
each epoch (for task `lm`, the corpus's validation part), at the epoch with the best such perplexity, as mean
± std over seeds; bits per byte = log2(perplexity). Tokens/s = steps/s x batch x seq_len of one training,
measured while the grid's other trainings shared the device. The per-epoch validation curves are in MLflow.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from statemix import aggregate, config, grids, plots
from statemix.io import atomic_write_text

BD_LRU = ("bdlru-m2", "bdlru-m4")
REFERENCES = ("lstm", "lru")


def _run_sizes(grid: grids.Grid, table: pd.DataFrame) -> pd.DataFrame:
    """Tokens per step of each run, from its resolved config and dataset params."""
    tokens = []
    for path in table["path"]:
        run = grid.runs[path]
        cfg = config.load(overrides=run.overrides)
        ds = grid.datasets[run.dataset_path(grid.name)]
        tokens.append(cfg.train.batch_size * int(ds.params.get("seq_len", 256)))
    return table.assign(tokens_per_step=tokens)


def summarise(grid: grids.Grid, table: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per (task, arch, width) of the lm runs; failed runs are counted, not averaged."""
    lm = table[table["sections"].str.split(",").map(lambda s: "lm" in s)]
    if lm.empty:
        return pd.DataFrame()
    lm = _run_sizes(grid, lm).assign(ok=lambda d: d["status"].eq("ok"))
    ok = lm.assign(test_ppl=lm["test_ppl"].where(lm["ok"]), last_test_ppl=lm["last_test_ppl"].where(lm["ok"]),
                   tokens_per_s=(lm["steps_per_s"] * lm["tokens_per_step"]).where(lm["ok"]))
    out = ok.groupby(["task", "arch", "width"], as_index=False).agg(
        state_size=("state_size", "first"), params_total=("params_total", "first"), seeds=("seed", "count"),
        failed=("ok", lambda s: int((~s).sum())), ppl_mean=("test_ppl", "mean"), ppl_std=("test_ppl", "std"),
        last_ppl_mean=("last_test_ppl", "mean"), tokens_per_s=("tokens_per_s", "mean"),
        epoch_mean=("selected_epoch", "mean"))
    out["bpb_mean"] = np.log2(out["ppl_mean"])
    return out


def compare(summary: pd.DataFrame) -> list[str]:
    """For each task and width: does BD-LRU's perplexity match or beat LSTM's and the diagonal LRU's?

    "lower" / "higher" when the means differ by more than the larger std over seeds, else "within one std"
    (with one seed there is no std, so any difference counts, and the line says so)."""
    from statemix.report import _fmt

    lines = []
    for (task, width), rows in summary.groupby(["task", "width"]):
        cells = rows.set_index("arch")
        for bd in (a for a in BD_LRU if a in cells.index):
            for ref in (a for a in REFERENCES if a in cells.index):
                a, b = cells.loc[bd], cells.loc[ref]
                if pd.isna(a.ppl_mean) or pd.isna(b.ppl_mean):
                    verdict = "not comparable (a failed run or none finished)"
                else:
                    gap, spread = a.ppl_mean - b.ppl_mean, np.nanmax([a.ppl_std, b.ppl_std, 0.0])
                    verdict = ("within one std of" if abs(gap) <= spread else
                               "lower than" if gap < 0 else "higher than")

                note = " (one seed each: no spread)" if pd.isna(a.ppl_std) and pd.isna(b.ppl_std) else ""
                lines.append(f"- {task}, state size {width} per layer: {bd} {_fmt(a.ppl_mean, a.ppl_std)} is "
                             f"{verdict} {ref} {_fmt(b.ppl_mean, b.ppl_std)}{note}")
    return lines


def section(grid: grids.Grid, table: pd.DataFrame, figures: Path) -> str:
    """Markdown for the lm runs of the grid, with two figures written into `figures`."""
    from statemix.report import _fmt, _table

    summary = summarise(grid, table)
    if summary.empty:
        return "No language-modelling study (section `lm`) is in this grid."
    parts = [__doc__.split("\n\n")[2].replace("\n", " ").strip()]
    for task, rows in summary.groupby("task"):
        for x, label, png in (("state_size", "state size (whole model)", f"{task}_ppl_vs_state.png"),
                              ("params_total", "parameters (whole model)", f"{task}_ppl_vs_params.png")):
            plots.errorbars(rows, x, "ppl_mean", "ppl_std", "arch", figures / png, label,
                            "validation perplexity per byte", f"{task}: perplexity at the selected epoch")
            parts.append(f"![{png}](figures/{png})")
        body = [[r.arch, r.width, r.state_size, f"{r.params_total:,}", _fmt(r.ppl_mean, r.ppl_std),
                 _fmt(r.bpb_mean), _fmt(r.last_ppl_mean), _fmt(r.epoch_mean, digits=1),
                 "–" if pd.isna(r.tokens_per_s) else f"{r.tokens_per_s:,.0f}", f"{r.seeds - r.failed}/{r.seeds}"]
                for r in rows.sort_values(["width", "ppl_mean"]).itertuples()]
        parts.append(f"### {task}\n\n" + _table(
            ["arch", "width", "state size (whole model)", "params", "perplexity", "bits/byte", "last-epoch ppl",
             "selected epoch", "tokens/s", "ok runs"], body))
    verdicts = compare(summary)
    parts.append("BD-LRU against LSTM and the diagonal LRU at equal state size:\n\n"
                 + ("\n".join(verdicts) if verdicts else "- no BD-LRU run with a reference run at the same width"))
    return "\n\n".join(parts)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m statemix.report_lm", description=__doc__.splitlines()[0])
    p.add_argument("--grid", required=True, help="grid name or params/grids/<name>.yaml")
    p.add_argument("--out", required=True, help="folder for runs.csv, lm.md and figures/")
    p.add_argument("--no-track", action="store_true", help="do not log the runs to MLflow")
    args = p.parse_args(argv)
    try:
        grid = grids.load(args.grid, check_names=False)
        studies = [name for name, st in grid.spec["studies"].items() if st["section"] == "lm"]
        if not studies:
            raise ValueError(f"grid {grid.name!r} has no study of section lm")
        keys = {run.path(grid.name) for run in grid.select(studies=studies)}
        table = aggregate.collect(grid, track_runs=not args.no_track, finished_only=True, keys=keys)
    except ValueError as err:
        print(f"statemix.report_lm: error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    text = section(grid, table, out / "figures")
    atomic_write_text(out / "runs.csv", table.to_csv(index=False))
    done = f"{len(table)} of the {len(keys)} runs of study {', '.join(studies)} have finished."
    atomic_write_text(out / "lm.md", f"# Language modelling: grid `{grid.name}`\n\n{done}\n\n{text}\n")
    print(f"{len(table)} lm runs -> {out / 'lm.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
