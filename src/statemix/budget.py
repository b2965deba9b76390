"""GPU-hours of a grid from measured rates and the pilot's early-stop epochs, and the cuts that make it fit.

    python -m statemix.budget paper [--pilot reports/pilot/summary.csv] [--bench CSV] [--chunk CSV]

The grid trains in batch workers (`--config batch=true`, statemix.worker): the seeds of one task x arch x
variant x width stack into one model and step together, so such a cell costs one run's steps, whatever its
seed count; an architecture that cannot stack (a module with no stacked twin: statemix.stack.unstackable)
costs each run's steps. A cell or run costs
`epochs x (train batches + eval batches / 3) x GPU-seconds per step`:
- epochs: the first epoch at early-stop accuracy that the pilot saw for the same task instance and arch at a
  width no larger than the run's (more state is assumed to learn no slower); otherwise train.max_epochs, the
  worst case the protocol allows. An evaluation step (forward only) is counted as a third of a train step.
- GPU-seconds per step, first found: (1) the throughput benchmark `reports/benchmarks/bench_grid_throughput.csv`,
  its `batched` rows: every worker ran at once, so a step of one group held the GPU for
  1 / (its steps/s x the groups that ran side by side); steps/s after the first epoch (`steady_steps_per_s`,
  CUDA-graph capture excluded) where the table has them, else over the whole run, which over-states a paper
  run's cost when the benchmark's runs are short; scaled by sequence length / 128 above MAD's 128 (the
  benchmark's task); (2) the pilot, same task and arch, (3) the pilot, same arch on another task, scaled by
  sequence length, (4) the S5 chunk of reports/benchmarks/paper_chunk_h200/runs.csv, scaled likewise; (2)-(4)
  were measured with `budget.concurrency` trainings sharing the GPU, so their seconds are divided by it.
The grid's `budget.cuts` (params/grids/<grid>.yaml) remove runs in the stated order; the table prints the
hours after each cut, and the exit status is 1 when the cut grid still exceeds `budget.gpu_hours`.
"""
from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import pandas as pd

from statemix import config, coverage, grids

REPORTS = grids.ROOT / "reports"
PILOT = REPORTS / "pilot" / "summary.csv"
BENCH = REPORTS / "benchmarks" / "bench_grid_throughput.csv"
CHUNK = REPORTS / "benchmarks" / "paper_chunk_h200" / "runs.csv"
CHUNK_SEQ_LEN = 16
BENCH_SEQ_LEN = 128
EVAL_STEP = 1 / 3
PROXY = {"hlru-m1": "lru", "bdlru-m1": "lru", "hlru-m3": "hlru-m4", "hlru-m5": "hlru-m4", "bdlru-m3": "bdlru-m4",
         "bdlru-m5": "bdlru-m4", "bdlru-m8": "bdlru-m4", "lru-complex": "lru", "dproduct": "gdn",
         "dproduct-h4": "gdn"}
"""Architectures no measurement covers take the rate of a measured one with the same kernel (or a close one)."""


def _read(path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path is not None and Path(path).exists() else None


class Rates:
    """Measured steps/s and early-stop epochs, looked up per run."""

    def __init__(self, pilot=PILOT, bench=BENCH, chunk=CHUNK):
        self.pilot, self.bench, self.chunk = _read(pilot), _read(bench), _read(chunk)
        if self.pilot is not None:
            self.pilot = self.pilot[self.pilot["epochs"] > 0]
        self.groups, self.rate = 0, "steps_per_s"
        if self.bench is not None:
            batched = self.bench[self.bench["mode"].eq("batched")]
            if "steady_steps_per_s" in batched and batched["steady_steps_per_s"].notna().any():
                self.rate = "steady_steps_per_s"
            ok = batched[batched[self.rate].notna()]
            self.bench = ok if len(ok) else None
            if self.bench is not None:
                self.groups = int((ok["runs"] / ok["stacked_runs"].fillna(1)).sum())

    @staticmethod
    def _nearest(rows: pd.DataFrame, width: int) -> pd.Series:
        return rows.iloc[(rows["width"] - width).abs().argsort().iloc[0]]

    def epochs(self, task: str, arch: str, width: int, max_epochs: int) -> tuple[int, str]:
        p = self.pilot
        if p is not None:
            hit = p[p["task"].eq(task) & p["arch"].eq(arch) & p["width"].le(width)
                    & p["first_epoch_at_stop_acc"].notna()]
            if len(hit):
                return min(int(hit["first_epoch_at_stop_acc"].max()), max_epochs), "pilot early stop"
        return max_epochs, "max_epochs"

    def seconds_per_step(self, task: str, task_name: str, seq_len: int, arch: str, width: int,
                         concurrency: int) -> tuple[float, str]:
        """GPU-seconds of one optimizer step (of a whole stack, where it stacks), and where it came from."""
        try:
            return self._seconds_per_step(task, seq_len, arch, width, concurrency)
        except ValueError:
            if arch not in PROXY:
                raise
            sps, source = self._seconds_per_step(task, seq_len, PROXY[arch], width, concurrency)
            return sps * (2.0 if arch.startswith("dproduct") else 1.0), f"proxy {PROXY[arch]}: {source}"

    def _seconds_per_step(self, task: str, seq_len: int, arch: str, width: int, conc: int) -> tuple[float, str]:
        if self.bench is not None:
            rows = self.bench[self.bench["arch"].eq(arch)]
            if len(rows):
                row = self._nearest(rows, width)
                scale = max(seq_len / BENCH_SEQ_LEN, 1.0)
                kind = "after capture" if self.rate == "steady_steps_per_s" else "capture included"
                return (scale / float(row[self.rate]) / self.groups,
                        f"benchmark (batched, {kind}, w{int(row['width'])}, {self.groups} groups side by side)")
        seconds, source = self._shared(task, seq_len, arch, width)
        return seconds / conc, source

    def _shared(self, task: str, seq_len: int, arch: str, width: int) -> tuple[float, str]:
        eval_share = 1.0
        p = self.pilot
        if p is not None and len(p):
            eval_share = float((p["s_per_epoch"] * p["steps_per_s"] / p["steps_per_epoch"]).median())
        if p is not None:
            settled = p[p["epochs"].ge(3)]
            p = settled if len(settled) else p
            same = p[p["task"].eq(task) & p["arch"].eq(arch)]
            if len(same):
                row = self._nearest(same, width)
                return float(row["s_per_epoch"] / row["steps_per_epoch"]), f"pilot {task} w{int(row['width'])}"
            other = p[p["arch"].eq(arch)]
            if len(other):
                row = other.iloc[(other["seq_len"] - seq_len).abs().argsort().iloc[0]]
                scale = seq_len / row["seq_len"]
                return (float(row["s_per_epoch"] / row["steps_per_epoch"]) * max(scale, 1.0),
                        f"pilot {row['task']} w{int(row['width'])}, x{max(scale, 1.0):.1f} for length")
        if self.chunk is not None:
            rows = self.chunk[self.chunk["arch"].eq(arch)]
            if len(rows):
                scale = max(seq_len / CHUNK_SEQ_LEN, 1.0)
                return (eval_share * scale / float(rows["steps_per_s"].mean()),
                        f"S5 chunk, x{scale:.1f} for length")
        raise ValueError(f"no measured rate for arch {arch!r}: run the pilot or the throughput benchmark")


@functools.lru_cache(maxsize=None)
def _train_config(overrides: tuple) -> config.TrainConfig:
    return config.load(overrides=overrides).train


@functools.lru_cache(maxsize=None)
def stackable(arch: str, width: int, task_name: str, overrides: tuple) -> bool:
    """Whether a batch worker stacks this cell's seeds (statemix.stack), from the model it would build."""
    from statemix import stack, train
    from statemix.tasks import TASKS

    cfg = config.load(overrides=list(overrides) + [f"model.arch={arch}", f"model.width={width}"])
    backbone = TASKS[task_name].backbone if cfg.model.backbone == "auto" else cfg.model.backbone
    return stack.unstackable(train.make_model(cfg, 16, 8, backbone)) is None


def run_cost(grid: grids.Grid, run: grids.Run, rates: Rates, concurrency: int = 1) -> dict:
    """Expected epochs, batches per epoch, GPU-seconds per step and of the run alone, with their sources."""
    train = _train_config(run.overrides)
    ds = grid.full_datasets[run.dataset_path(grid.name)]
    n, seq_len = ds.train_shape()
    batches = -(-n // train.batch_size)
    n_test = int(ds.split_params["test"].get("num_examples", _test_examples(ds.task)))
    eval_batches = -(-n_test // train.eval_batch_size)
    epochs, epoch_source = rates.epochs(run.task, run.arch, run.width, train.max_epochs)
    sps, rate_source = rates.seconds_per_step(run.task, ds.task, seq_len, run.arch, run.width, concurrency)
    return {"study": run.studies[0], "task": run.task, "arch": run.arch, "variant": run.variant,
            "width": run.width, "seed": run.seed, "epochs": epochs, "batches": batches, "s_per_step": sps,
            "seconds": epochs * (batches + EVAL_STEP * eval_batches) * sps,
            "stacks": stackable(run.arch, run.width, ds.task, tuple(run.overrides)),
            "epochs_from": epoch_source, "rate_from": rate_source}


def _test_examples(task_name: str) -> int:
    from statemix.tasks import TASKS

    return int(TASKS[task_name].num_examples["test"])


def costs(grid: grids.Grid, runs: dict, rates: Rates, concurrency: int = 1) -> pd.DataFrame:
    """One row per run (indexed by its result folder) with its expected cost."""
    return pd.DataFrame([run_cost(grid, r, rates, concurrency) for r in runs.values()], index=list(runs))


def gpu_seconds(df: pd.DataFrame) -> float:
    """GPU-seconds of these runs in batch workers: a stacking cell costs its dearest seed once, others each run."""
    if not len(df):
        return 0.0
    alone = df.loc[~df["stacks"], "seconds"].sum()
    stacked = df[df["stacks"]].groupby(["task", "arch", "variant", "width"])["seconds"].max().sum()
    return float(alone + stacked)


def estimate(grid: grids.Grid, rates: Rates) -> tuple[str, bool]:
    """The markdown budget: per study at full protocol, then the hours after each cut; True when it fits."""
    spec = grid.spec.get("budget", {})
    limit, conc = float(spec.get("gpu_hours", 2.0)), int(spec.get("concurrency", 16))
    full = costs(grid, grid.full_runs, rates, conc)
    hours = lambda df: gpu_seconds(df) / 3600  # noqa: E731
    lines = [f"grid {grid.name}: {len(grid.full_runs)} runs at full protocol, trained in batch workers (seeds "
             f"stacked where the model stacks), limit {limit:g} GPU-hours", "",
             "Per study at full protocol (epochs: pilot early stop where seen, else max_epochs):", "",
             "| study | runs | stacked cells | run-steps | GPU-hours |", "|---|---|---|---|---|"]
    for study, rows in full.groupby("study", sort=False):
        cells = rows[rows["stacks"]].groupby(["task", "arch", "variant", "width"]).ngroups
        lines.append(f"| {study} | {len(rows)} | {cells} | {int((rows['epochs'] * rows['batches']).sum()):,} | "
                     f"{hours(rows):.2f} |")
    lines += [f"| total | {len(full)} | | {int((full['epochs'] * full['batches']).sum()):,} | "
              f"{hours(full):.2f} |", "",
              "Cuts, in the order applied (params/grids, `budget.cuts`):", "",
              "| # | cut | runs removed | runs left | GPU-hours left |", "|---|---|---|---|---|",
              f"| 0 | none | 0 | {len(full)} | {hours(full):.2f} |"]
    left = dict(grid.full_runs)
    for i, cut in enumerate(spec.get("cuts", []), 1):
        gone = [k for k, r in left.items() if grids.cut_matches(cut, r)]
        for k in gone:
            del left[k]
        lines.append(f"| {i} | {cut['why']} | {len(gone)} | {len(left)} | {hours(full.loc[list(left)]):.2f} |")
    final = full.loc[list(grid.runs)]
    longest = final.loc[final["seconds"].idxmax()] if len(final) else None
    fits = hours(final) <= limit
    by_arch = {a: (len(rows), hours(rows)) for a, rows in final.groupby("arch")}
    lines += ["", "After the cuts, per arch: " + "; ".join(
        f"{a} {n} runs {h:.2f} h" for a, (n, h) in sorted(by_arch.items(), key=lambda kv: -kv[1][1])) + "."]
    lines += ["", f"After the cuts: {len(final)} runs, {hours(final):.2f} GPU-hours "
              f"({'fits' if fits else 'does NOT fit'} in {limit:g}).",
              "" if longest is None else f"Longest single run: {longest['task']} {longest['arch']} w{longest['width']}, "
              f"{longest['seconds'] / 3600:.2f} GPU-hours ({longest['epochs']} epochs of {longest['batches']} steps).",
              "",
              "Rate sources used: " + "; ".join(f"{k} ({v})" for k, v in final["rate_from"].str.split(",").str[0]
                                                 .str.replace(r" w\d+$", "", regex=True).value_counts().items())
              + ". Epoch sources: " + "; ".join(f"{k} ({v})" for k, v in final["epochs_from"].value_counts().items())
              + "."]
    lines += ["", coverage.section(grid)]
    if rates.bench is None:
        lines.append("`reports/benchmarks/bench_grid_throughput.csv` has no batched rows: steps/s come from the "
                     "pilot (reports/pilot/summary.csv, measured with its runs sharing the H200) and, for an arch "
                     "it lacks, from the S5 chunk (reports/benchmarks/paper_chunk_h200/runs.csv).")
    return "\n".join(lines), fits


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m statemix.budget", description=__doc__.splitlines()[0])
    p.add_argument("grid", help="paper | cpu | smoke | pilot | path to a grid YAML")
    p.add_argument("--pilot", default=str(PILOT), help="pilot summary.csv (statemix.pilot summarise)")
    p.add_argument("--bench", default=str(BENCH), help="throughput benchmark CSV (used when present)")
    p.add_argument("--chunk", default=str(CHUNK), help="per-run table of the measured S5 chunk")
    args = p.parse_args(argv)
    try:
        grid = grids.load(args.grid)
        text, fits = estimate(grid, Rates(args.pilot, args.bench, args.chunk))
    except ValueError as err:
        print(f"statemix.budget: error: {err}", file=sys.stderr)
        return 2
    print(text)
    return 0 if fits else 1


if __name__ == "__main__":
    sys.exit(main())
