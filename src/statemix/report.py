"""Build reports/<grid>/report.md and its figures from the run table; no number in it is typed by hand.

`python -m statemix.report --grid G --table reports/G/runs.parquet --out reports/G/report.md
 --figures reports/G/figures [--bench CSV ...]`

Accuracy is MAD's macro test accuracy at the reported epoch (best test perplexity), as mean ± std over seeds.
Sections follow the paper's questions; a section whose study is not in the grid says so.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

from statemix import aggregate, claims, coverage, grids, plots, report_lm
from statemix.io import atomic_write_text

FIG1_SECTIONS = ("main", "extra")


def _fmt(mean, std=None, digits=3) -> str:
    if mean is None or pd.isna(mean):
        return "–"
    return f"{mean:.{digits}f}" + ("" if std is None or pd.isna(std) else f" ± {std:.{digits}f}")


def _table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _in_section(summary: pd.DataFrame, *sections) -> pd.DataFrame:
    return summary[summary["sections"].str.split(",").map(lambda s: bool(set(s) & set(sections)))]


def _git(*cmd) -> str:
    try:
        return subprocess.run(["git", *cmd], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _best(summary: pd.DataFrame) -> pd.DataFrame:
    """Per (task, arch, variant), the width with the highest mean accuracy."""
    ok = summary.dropna(subset=["acc_mean"])
    return ok.loc[ok.groupby(["task", "arch", "variant"])["acc_mean"].idxmax()]


def section_overall(summary: pd.DataFrame) -> str:
    scores = aggregate.best_width_scores(_in_section(summary, *FIG1_SECTIONS))
    if scores.empty:
        return "No MAD task is in this grid."
    tasks = [t for t in aggregate.MAD_TASKS if t in scores.columns]
    rows = [[r["arch"], *(_fmt(r[t]) for t in tasks), _fmt(r["best_width_acc"])] for _, r in scores.iterrows()]
    return ("For each task, the best width's mean accuracy; then the mean over the six MAD tasks (– when an "
            "architecture lacks one of them). This is not MAD's score, which averages each task over a sweep of "
            "its settings; only each task's baseline setting is run here.\n\n"
            + _table(["arch", *tasks, "mean of best widths"], rows))


def section_tasks(summary: pd.DataFrame, tasks) -> str:
    out = []
    for task in tasks:
        rows = summary[summary["task"] == task]
        if rows.empty:
            continue
        body = [[r.arch, r.variant, r.width, r.state_size, f"{r.params_total:,}" if pd.notna(r.params_total) else "–",
                 _fmt(r.acc_mean, r.acc_std), _fmt(r.acc_micro_mean), _fmt(r.last_acc_mean),
                 _fmt(r.epochs_mean, digits=1), f"{r.seeds - r.failed}/{r.seeds}"]
                for r in rows.sort_values(["arch", "variant", "width"]).itertuples()]
        out.append(f"### {task}\n\n" + _table(
            ["arch", "variant", "width", "state size (whole model)", "params", "macro acc", "micro acc",
             "last-epoch acc", "epochs", "ok runs"], body))
    return "\n\n".join(out)


def section_compression(summary: pd.DataFrame, thresholds) -> str:
    rows = summary[summary["task_name"].eq("compression") & summary["variant"].eq(grids.BASE_VARIANT)]
    if rows.empty:
        return "Compression is not in this grid."
    body = []
    for arch, r in rows.groupby("arch"):
        cells = []
        for t in thresholds:
            hit = r[r["acc_mean"] >= t]
            cells.append(f"{int(hit['params_total'].min()):,}" if len(hit) else "not reached")
        body.append([arch, *cells, _fmt(r["acc_mean"].max())])
    return ("Fewest parameters (whole model) whose mean accuracy reaches each level, over the widths run.\n\n"
            + _table(["arch", *(f"acc ≥ {t}" for t in thresholds), "best acc"], body))


def section_permutation(summary: pd.DataFrame) -> str:
    best = _best(summary[summary["task_name"].eq("permutation") & summary["variant"].eq(grids.BASE_VARIANT)])
    if best.empty:
        return "No permutation task is in this grid."
    tasks = list(dict.fromkeys(best["task"]))
    cells = best.set_index(["arch", "task"])
    body = [[arch, *(_fmt(*cells.loc[(arch, t), ["acc_mean", "acc_std"]]) if (arch, t) in cells.index else "–"
                     for t in tasks)] for arch in sorted(best["arch"].unique())]
    return "Best width per architecture; mean ± std over seeds.\n\n" + _table(["arch", *tasks], body)


def section_order(summary: pd.DataFrame, figures: Path, tasks) -> str:
    rows = _in_section(summary, "order")
    rows = rows[rows["arch"].str.match(r"^(hlru|bdlru)-m\d+$")].copy()
    if rows.empty:
        return "No order study is in this grid."
    rows["family"] = rows["arch"].str.split("-").str[0].map({"hlru": "H-LRU", "bdlru": "BD-LRU"})
    rows["m"] = rows["arch"].str.extract(r"m(\d+)$")[0].astype(int)
    best = rows.loc[rows.groupby(["task", "arch"])["acc_mean"].idxmax().dropna()]
    plots.order(best, figures / "order.png", tasks)
    body = [[r.task, r.arch, r.width, r.state_size, _fmt(r.acc_mean, r.acc_std)]
            for r in best.sort_values(["task", "family", "m"]).itertuples()]
    header = ["task", "arch", "width", "state size (whole model)", "macro acc"]
    return "![order](figures/order.png)\n\n" + _table(header, body)


def section_norm(summary: pd.DataFrame, variants, figures: Path, tasks) -> str:
    rows = _in_section(summary, "norm")
    if rows.empty:
        return "No normalisation study is in this grid."
    best = rows.loc[rows.groupby(["task", "arch", "variant"])["acc_mean"].idxmax().dropna()]
    order = [v for v in variants if v in set(best["variant"])]
    plots.norm(best, order, figures / "norm.png", tasks)
    body = [[r.task, r.arch, r.variant, _fmt(r.acc_mean, r.acc_std), f"{int(r.diverged)}/{r.seeds}",
             f"{r.failed}/{r.seeds}"] for r in best.sort_values(["task", "arch"]).itertuples()]
    return ("![norm](figures/norm.png)\n\nA diverged run counts at its best epoch before the NaN, as MAD reports it."
            "\n\n" + _table(["task", "arch", "normalisation", "macro acc", "diverged runs", "failed runs"], body))


def section_throughput(bench_files, figures: Path) -> str:
    """Scan bandwidth, layer tokens/s and training steps/s from the GPU benchmark tables that exist."""
    out = []
    for f in sorted(bench_files):
        df, name = pd.read_csv(f), Path(f).stem
        if {"op", "M", "backend", "mode", "shape", "dtype", "pct_copy"} <= set(df.columns):
            big = df[df["shape"].eq(df["shape"].iloc[0]) & df["mode"].eq("fwd+bwd")]
            for dtype, rows in big.groupby("dtype"):
                png = f"{name}_{dtype}.png"
                plots.lines(rows, "M", "pct_copy", ["op", "backend"], figures / png,
                            f"{rows['shape'].iloc[0]}, {dtype}, forward + backward", "% of copy bandwidth")
                out.append(f"Scan bandwidth from `{f}`:\n\n![{png}](figures/{png})")
        elif {"layer", "dtype", "tokens_per_s"} <= set(df.columns):
            body = [[r.layer, r.dtype, f"{r.tokens_per_s:,.0f}"] for r in df.itertuples()]
            out.append(f"Whole-layer forward + backward from `{f}`:\n\n" + _table(["layer", "dtype", "tokens/s"], body))
        elif {"arch", "steps_per_s"} <= set(df.columns):
            body = [[r.arch, r.width, getattr(r, "compile", "–"), _fmt(r.steps_per_s, digits=1)] for r in df.itertuples()]
            out.append(f"Training steps/s (one run alone on the GPU) from `{f}`:\n\n"
                       + _table(["arch", "width", "compiled", "steps/s"], body))
    return "\n\n".join(out) if out else "No GPU benchmark results exist (the benchmark runs on a GPU only)."


def section_protocol(grid: grids.Grid) -> str:
    """Training protocol of the grid and the budget cuts it applies (params/grids/<grid>.yaml)."""
    from statemix import config

    run = next(iter(grid.runs.values()))
    cfg = config.load(overrides=run.overrides)
    t, m = cfg.train, cfg.model
    lines = [f"## Protocol\n\nAdamW lr {t.lr:g}, weight decay {t.weight_decay:g}, batch {t.batch_size}, up to "
             f"{t.max_epochs} epochs, {t.schedule} schedule to {t.min_lr:g} over {t.max_epochs} epochs, early stop at "
             f"test {t.accuracy} accuracy {t.early_stop_acc:g}, reported epoch: {t.select}; d_model {m.d_model}, "
             f"{m.n_layers} layers, init `{m.init}`, compression positions `{m.positions}`."]
    cuts = grid.spec.get("budget", {}).get("cuts", [])
    if cuts:
        lines.append(f"Cut to fit {grid.spec['budget'].get('gpu_hours', '?')} GPU-hours "
                     f"({len(grid.full_runs) - len(grid.runs)} of {len(grid.full_runs)} runs; "
                     f"`python -m statemix.budget {grid.name}` gives the arithmetic), in this order:\n\n"
                     + "\n".join(f"{i}. {c['why']}" for i, c in enumerate(cuts, 1)))
    return "\n\n".join(lines)


def hardware_note(table: pd.DataFrame) -> str:
    """Which hardware ran how many runs, and what that means for comparing them and rerunning them."""
    counts = table["hardware"].fillna("unknown").value_counts()
    if counts.empty:
        return "–"
    listed = "; ".join(f"{hw}: {n} run(s)" for hw, n in counts.items())
    note = (" Small numerical differences across hardware are expected: a different CPU model (vector width), "
            "thread count, GPU or driver changes the order of floating-point sums, so a rerun elsewhere matches "
            "these numbers to rounding in the losses and can flip an accuracy by a few test examples; it is "
            "bitwise equal only on the same hardware and software.")
    if len(counts) == 1:
        return f"{listed} (all runs on the same hardware).{note}"
    main = counts.index[0]
    others = table[table["hardware"].fillna("unknown") != main]
    names = ", ".join(f"{r.task}/{r.arch}/{r.variant}/w{r.width}/s{r.seed}" for r in others.itertuples())
    return (f"{listed}.{note} Runs not on {main} (compare them with care against the rest): {names} "
            f"(column `hardware` of runs.csv).")


def _code_note(table: pd.DataFrame) -> str:
    """The runs' code ids: a run made from a copied tree (a GPU machine's) can carry a stale or dirty commit."""
    ids = table["code_id"].dropna() if "code_id" in table else pd.Series(dtype=str)
    dirty = int(table["git_dirty"].fillna(False).astype(bool).sum()) if "git_dirty" in table else 0
    listed = ", ".join(f"`{c[:12]}` ({n} runs)" for c, n in ids.value_counts().items()) or "none recorded"
    return (f"{dirty} of {len(table)} runs from a tree that differed from its commit; code ids: {listed} "
            f"(`python -m statemix.provenance commits CODE_ID` names the commits with that code; column "
            f"`code_id` of runs.csv; runs from before code ids were recorded have none)")


def section_provenance(grid: grids.Grid, table: pd.DataFrame) -> str:
    commits = sorted(set(table["git_commit"].dropna()))
    head = _git("rev-parse", "HEAD")
    datasets = table.groupby(["task", "seed"])["dataset_sha256"].agg(lambda s: ",".join(sorted(set(s.dropna()))))
    lines = [f"- grid: `{grid.name}` (`{grid.file.name}`), params hash (grid file + params/default.yaml): "
             f"`{grid.params_hash()[:16]}`",
             f"- runs trained at git commit(s): {', '.join(f'`{c[:12]}`' for c in commits) or '–'}; "
             f"report built at `{head[:12] or '–'}`; {_code_note(table)}",
             f"- hardware: {hardware_note(table)}",
             f"- time: {table['wall_time_s'].sum():,.0f} s summed over the runs' own wall times (longest "
             f"{table['wall_time_s'].max():,.0f} s); {table['steps'].sum():,.0f} optimizer steps in all",
             f"- devices / precision: {', '.join(sorted(set((table['device'].fillna('?') + '/' + table['precision'].fillna('?')))))}",
             f"- MLflow experiment(s): {', '.join(f'`{e}`' for e in sorted(set(table['experiment'].dropna())))}; "
             f"{int(table['mlflow_run_id'].notna().sum())} of {len(table)} runs have an MLflow run id "
             "(column `mlflow_run_id` of runs.csv; browse with `mlflow ui`)"]
    body = [[t, s, h[:16] if h else "–"] for (t, s), h in datasets.items()]
    runs = [[r.task, r.arch, r.variant, r.width, r.seed, r.status, r.mlflow_run_id or "–"] for r in table.itertuples()]
    return ("\n".join(lines) + "\n\nDatasets (sha256 over train and test arrays, as tagged in MLflow):\n\n"
            + _table(["task", "seed", "dataset sha256"], body)
            + "\n\n<details><summary>MLflow run ids</summary>\n\n"
            + _table(["task", "arch", "variant", "width", "seed", "status", "run id"], runs) + "\n\n</details>")


def build(grid: grids.Grid, table: pd.DataFrame, figures: Path, bench_files=()) -> str:
    """The report's markdown; writes the figures into `figures` on the way."""
    figures.mkdir(parents=True, exist_ok=True)
    summary = aggregate.with_planned(aggregate.summarise(table), grid)
    fig1 = _in_section(summary, *FIG1_SECTIONS)
    fig1 = fig1[fig1["variant"].eq(grids.BASE_VARIANT)].dropna(subset=["acc_mean"])
    spec = grid.spec
    tasks = list(spec["tasks"])
    plots.scaling(fig1, "params_total", "parameters (whole model)", figures / "accuracy_vs_params.png", tasks)
    plots.scaling(fig1, "state_size", "state size (whole model)", figures / "accuracy_vs_state.png", tasks)
    failed = table[table["status"].ne("ok")]
    diverged = table[table["diverged"].fillna(False).astype(bool)] if "diverged" in table else table.iloc[:0]
    parts = [
        f"# statemix report: grid `{grid.name}`",
        spec["description"].strip(),
        f"{len(table)} runs ({len(diverged)} diverged, {len(failed)} failed), {table['seed'].nunique()} seed(s). "
        "Accuracy is MAD's macro test accuracy at the epoch with the best test perplexity, mean ± std over seeds. "
        "A run whose loss became NaN is reported at its best epoch before it, flagged diverged and counted in the "
        "means, as MAD does; a run that was NaN in its first epoch has no result and is listed as failed. "
        f"Generated by `python -m statemix.report` from `reports/{grid.name}/runs.parquet`; the per-run table is "
        "`runs.csv`.",
        section_protocol(grid),
        "## Claims\n\n" + claims.section(grid, summary, bench_files) + "\n\n" + coverage.section(grid),
        "## Not run\n\n" + claims.not_run(grid, table),
        "## Deviations from the paper's protocol\n\n" + claims.deviations(grid),
        "## Mean best-width accuracy over the MAD tasks\n\n" + section_overall(summary),
        "## Accuracy against size (the paper's Figure 1)\n\nSections " + ", ".join(FIG1_SECTIONS)
        + "; error bars are std over seeds.\n\n![accuracy vs params](figures/accuracy_vs_params.png)\n\n"
        "![accuracy vs state size](figures/accuracy_vs_state.png)",
        "## Compression: parameter efficiency\n\n" + section_compression(summary, spec["report"]["thresholds"]),
        "## Permutations S3–S5 (the paper's Table 2)\n\n" + section_permutation(summary),
        "## Order / block size\n\n" + section_order(summary, figures, tasks),
        "## Normalisation ablation (the paper's Figure 2)\n\n"
        + section_norm(summary, list(spec.get("variants", {})), figures, tasks),
        "## Language modelling\n\n" + report_lm.section(grid, table, figures),
        "## Throughput\n\n" + section_throughput(bench_files, figures),
        "## Per-task tables\n\n" + section_tasks(summary, tasks),
    ]
    if len(diverged):
        parts.append("## Diverged runs (reported at their best epoch before the NaN)\n\n" + _table(
            ["run", "reported epoch", "macro acc", "error"],
            [[r.path, r.selected_epoch, _fmt(r.test_acc), r.error] for r in diverged.itertuples()]))
    if len(failed):
        parts.append("## Failed runs\n\n" + _table(["run", "error"], [[r.path, r.error] for r in failed.itertuples()]))
    parts.append("## Provenance\n\n" + section_provenance(grid, table))
    return "\n\n".join(parts) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m statemix.report", description=__doc__.splitlines()[0])
    p.add_argument("--grid", required=True)
    p.add_argument("--table", required=True, help="reports/<grid>/runs.parquet from statemix.aggregate")
    p.add_argument("--out", required=True, help="report markdown path")
    p.add_argument("--figures", required=True, help="folder for the PNG figures")
    p.add_argument("--bench", nargs="*", default=[], help="benchmark CSV files to plot")
    args = p.parse_args(argv)
    try:
        grid = grids.load(args.grid, check_names=False)
    except ValueError as err:
        print(f"statemix.report: error: {err}", file=sys.stderr)
        return 2
    text = build(grid, pd.read_parquet(args.table), Path(args.figures), args.bench)
    atomic_write_text(args.out, text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
