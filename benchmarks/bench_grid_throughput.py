"""Grid throughput: optimizer steps/s of a fixed mix of trainings through the real pipeline code.

The mix is the paper grid's main study on in-context recall (MAD's shape: B=128, T=127, d=128, 2 blocks):
its architectures, each at its first three widths there (params/grids/paper.yaml, so every baseline at a
valid size) x 3 seeds, each run exactly `--epochs` x `--steps` optimizer steps (early stop off; 100 steps
is one epoch of MAD's 12,800 training examples).
Three ways are timed in one run, on the same data:
  pool:   today's path, one `python -m statemix.train` process per run, `--concurrency` at a time, eager
          (train.cuda_graphs=off), as the Snakemake GPU pool runs them;
  worker: one `python -m statemix.worker` process per architecture (all its widths and seeds, seeds
          stacked, widths on separate streams, CUDA graphs), all architectures at once;
  task:   the pipeline's batch path (`--config batch=true`): one worker process for the whole mix, every
          architecture's groups on their own streams in one CUDA context;
  single: one graphed `python -m statemix.train` alone, per architecture and width.
Aggregate steps/s counts wall time from the first process start to the last exit (startup included) and, in
`train_steps_per_s`, the training time the runs report. GPU busy share = mean of nvidia-smi utilization
sampled every 100 ms while a phase runs. Phases run in the order task, pool, single, worker (the least telling last); <out>.csv and <out>.md are
rewritten (atomically) after each, so a run cut off at its time limit keeps the phases it finished.

    python benchmarks/bench_grid_throughput.py --out reports/benchmarks/bench_grid_throughput
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from statemix.generate import generate  # noqa: E402
from statemix.io import atomic_write_text  # noqa: E402

SEEDS = (0, 1, 2)
TODAY = "one process per run (eager, today)"
PER_ARCH = "one worker per architecture (graphed, stacked)"
PER_TASK = "one worker for every architecture (graphed, stacked; batch=true)"
BATCHED = {PER_TASK: "batched", PER_ARCH: "batched, worker per arch"}


def main_study_widths(n: int = 3) -> dict:
    """{arch: its first n widths} of the paper grid's main study."""
    import yaml

    main = yaml.safe_load((ROOT / "params/grids/paper.yaml").read_text())["studies"]["main"]
    return {a: list(main.get("widths_by_arch", {}).get(a, main["widths"]))[:n] for a in main["archs"]}


class GpuSampler:
    """Mean nvidia-smi utilization.gpu over a phase (None without nvidia-smi)."""

    def __enter__(self):
        self.samples, self.stop = [], threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        return self

    def _loop(self):
        while not self.stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5).stdout.split()
                self.samples.append(float(out[0]))
            except (OSError, subprocess.SubprocessError, IndexError, ValueError):
                return
            time.sleep(0.1)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()

    @property
    def busy(self):
        return sum(self.samples) / len(self.samples) / 100 if self.samples else float("nan")


def _env():
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}:{os.environ.get('PYTHONPATH', '')}", OMP_NUM_THREADS="1")
    return env


def _sets(args, graphs):
    """Every run's overrides; the graphed paths (workers, singles) compile with --compile, today's eager path never."""
    sets = [f"train.max_epochs={args.epochs}", "train.early_stop_acc=0", "track.enabled=false",
            f"train.cuda_graphs={graphs}", f"train.compile={args.compile and graphs != 'off'}"]
    return [x for s in sets for x in ("--set", s)]


def _call(cmd, log):
    """Run one command to `log`; an error text when it failed (a crashed process leaves the phase's others)."""
    with open(log, "w") as f:
        code = subprocess.run(cmd, env=_env(), stdout=f, stderr=subprocess.STDOUT).returncode
    if code not in (0, 3):  # 3: a run diverged; it is counted as failed in the table
        return f"{' '.join(map(str, cmd))[:300]} exited {code}; see {log}:\n{Path(log).read_text()[-3000:]}"
    return None


def _steady(folder: Path) -> float:
    """A run's steps/s over its epochs after the first: the first holds CUDA-graph capture and warm-up, which a
    paper run (200 epochs) pays once. NaN for a one-epoch run."""
    history = pd.read_csv(folder / "history.csv")
    rest = history.iloc[1:]
    return float(rest["steps"].sum() / rest["train_s"].sum()) if len(rest) and rest["train_s"].sum() > 0 else float("nan")


def _metrics(folders):
    return [{**json.loads((Path(f) / "metrics.json").read_text()), "steady_steps_per_s": _steady(Path(f))}
            for f in folders]


def phase(name, jobs, concurrency, tmp):
    """Run `jobs` [(cmd, folders)] `concurrency` at a time; aggregate steps/s from the metrics of the runs that
    wrote them (a failed process is reported and its runs are missing from the table)."""
    t0 = time.perf_counter()
    with GpuSampler() as gpu, ThreadPoolExecutor(concurrency) as pool:
        errors = [e for e in pool.map(lambda ij: _call(ij[1][0], tmp / f"{name}{ij[0]}.log"), enumerate(jobs)) if e]
    wall = time.perf_counter() - t0
    for e in errors:
        print(f"{name}: {e}", file=sys.stderr, flush=True)
    metrics = _metrics([f for _, folders in jobs for f in folders if (Path(f) / "metrics.json").exists()])
    steps = sum(m.get("steps", 0) for m in metrics)
    print(f"{name}: {len(metrics)} runs, {steps} steps in {wall:.1f} s -> {steps / wall:.0f} steps/s, "
          f"GPU busy {gpu.busy:.2f}", flush=True)
    return {"wall_s": wall, "steps": steps, "busy": gpu.busy, "metrics": metrics}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", nargs="+", default=None, help="default: the main study's")
    p.add_argument("--widths", nargs="+", type=int, default=None,
                   help="the same widths for every arch (default: each arch's first three in the main study)")
    p.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    p.add_argument("--steps", type=int, default=100, help="optimizer steps per epoch (train rows = steps x 128)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--concurrency", type=int, default=16, help="processes at a time on today's path")
    p.add_argument("--single-widths", nargs="+", type=int, default=None,
                   help="widths timed alone (default: each arch's first)")
    p.add_argument("--single-archs", nargs="+", default=None, help="archs timed alone (default all)")
    p.add_argument("--skip-pool", action="store_true", help="skip today's path (quick checks only)")
    p.add_argument("--workers", nargs="+", choices=["arch", "task"], default=["arch", "task"],
                   help="worker phases: one process per architecture, and/or one for the whole mix")
    p.add_argument("--compile", action="store_true", help="train.compile=true on the graphed paths (the paper grid's)")
    p.add_argument("--out", default="reports/benchmarks/bench_grid_throughput")
    args = p.parse_args(argv)
    study = main_study_widths()
    args.archs = args.archs or list(study)
    args.widths_of = {a: args.widths or study.get(a, [32]) for a in args.archs}
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        data = tmp / "data"
        generate("in-context-recall", "train", data / "train", seed=0, sets={"num_examples": 128 * args.steps})
        generate("in-context-recall", "test", data / "test", seed=1, sets={"num_examples": 256})
        base = [py, "-m", "statemix.train", "--task", "in-context-recall", "--data", str(data)]
        grid = [(a, w, s) for a in args.archs for w in args.widths_of[a] for s in args.seeds]
        results, singles = {}, {}
        worker = [py, "-m", "statemix.worker", "--task", "in-context-recall", "--data", str(data),
                  *_sets(args, "auto")]

        def worker_job(folder, archs):
            """One worker command holding every width and seed of `archs`, and its runs' folders."""
            runs = [(f"{a}:{w},{s}", tmp / folder / f"{a}_{w}_{s}")
                    for a in archs for w in args.widths_of[a] for s in args.seeds]
            return [*worker, *(x for spec, out in runs for x in ("--run", f"{spec},{out}"))], [out for _, out in runs]

        if "task" in args.workers:
            results[PER_TASK] = phase("task", [worker_job("task", args.archs)], 1, tmp)
            write(args, results, singles)
        if not args.skip_pool:
            jobs = [([*base, "--arch", a, "--width", str(w), "--seed", str(s), "--out", str(tmp / f"pool/{a}_{w}_{s}"),
                      *_sets(args, "off")], [tmp / f"pool/{a}_{w}_{s}"]) for a, w, s in grid]
            results[TODAY] = phase("pool", jobs, args.concurrency, tmp)
            write(args, results, singles)
        for a in args.single_archs or args.archs:
            for w in args.single_widths or args.widths_of[a][:1]:
                out = tmp / f"single/{a}_{w}"
                singles[a, w] = phase(f"single_{a}_{w}", [([*base, "--arch", a, "--width", str(w), "--seed", "0",
                                                             "--out", str(out), *_sets(args, "auto")], [out])], 1, tmp)
        write(args, results, singles)
        if "arch" in args.workers:
            jobs = [worker_job("worker", [a]) for a in args.archs]
            results[PER_ARCH] = phase("worker", jobs, len(jobs), tmp)
            write(args, results, singles)


def batched_rows(result, mode):
    """Per (arch, width) rows of one worker phase: a run's steps over its training time, averaged over seeds."""
    rows, by = [], {}
    for m in result["metrics"]:
        if m["status"] != "ok":
            rows.append({"arch": m["arch"], "width": m["width"], "mode": mode, "runs": 1, "failed": 1,
                         "steps_per_s": float("nan"), "step_path": m["error"]})
            continue
        by.setdefault((m["arch"], m["width"]), []).append(m)
    for (arch, width), ms in by.items():
        rows.append({"arch": arch, "width": width, "mode": mode, "runs": len(ms),
                     "steps_per_s": sum(m["steps"] / m["train_s"] for m in ms) / len(ms),
                     "steady_steps_per_s": sum(m["steady_steps_per_s"] for m in ms) / len(ms),
                     "wall_s": max(m["wall_time_s"] for m in ms), "gpu_busy": result["busy"],
                     "run_steps_per_s": float("nan"), "step_path": ms[0]["step_path"],
                     "stacked_runs": ms[0].get("stacked_runs", 1)})
    return rows


def write(args, results, singles):
    rows = []
    for name, r in results.items():
        ok = [m for m in r["metrics"] if m["status"] == "ok"]
        train_rate = sum(m["steps"] / m["train_s"] for m in ok) / max(len(ok), 1)
        rows.append({"arch": "mix", "width": 0, "mode": name, "runs": len(r["metrics"]), "failed": len(r["metrics"]) - len(ok),
                     "steps_per_s": r["steps"] / r["wall_s"], "wall_s": r["wall_s"], "gpu_busy": r["busy"],
                     "run_steps_per_s": train_rate, "step_path": "",
                     "steady_steps_per_s": sum(m["steady_steps_per_s"] for m in ok) if name == PER_TASK else float("nan")})
    for name, mode in BATCHED.items():
        if name in results:
            rows += batched_rows(results[name], mode)
    for (arch, width), r in singles.items():
        m = r["metrics"][0] if r["metrics"] else {"status": "missing"}
        if m["status"] != "ok":
            continue
        rows.append({"arch": arch, "width": width, "mode": "single", "runs": 1, "steps_per_s": m["steps_per_s"],
                     "steady_steps_per_s": m["steady_steps_per_s"],
                     "wall_s": r["wall_s"], "gpu_busy": r["busy"], "run_steps_per_s": float("nan"),
                     "step_path": m["step_path"], "stacked_runs": 1})
    table = pd.DataFrame(rows)
    runs = [m for r in [*results.values(), *singles.values()] for m in r["metrics"]]
    if not runs:
        print("no run wrote metrics; no table", file=sys.stderr)
        return
    hw = runs[0]["provenance"]
    mix = table[table.arch == "mix"].set_index("mode")["steps_per_s"]
    base = mix.get(TODAY, float("nan"))
    header = (f"# Grid throughput on in-context recall (B=128, T=127, d=128, 2 blocks, bf16)\n\n"
              f"Hardware: {hw['hardware']}; torch {hw['torch']}; triton {hw['triton']}; commit {hw['git_commit']}"
              f"{' (dirty)' if hw['git_dirty'] else ''}, code id {str(hw.get('code_id'))[:12]} (`python -m "
              f"statemix.provenance commits ID` names its commits). Mix: {len(args.archs)} archs at widths "
              f"{', '.join(f'{a} {w}' for a, w in args.widths_of.items())} x seeds {args.seeds}, {args.epochs} epochs x {args.steps} steps each; graphed paths compiled (train.compile): {args.compile}. `steps_per_s` for `mix` rows: all "
              f"optimizer steps / wall time of the phase (process start-up included); `run_steps_per_s`: mean of "
              f"one run's steps / its training time. `steady_steps_per_s`: the same over the epochs after the first "
              f"(capture and warm-up excluded; for the batch path's `mix` row, the sum over its runs, which step "
              f"in lockstep). Per-arch rows: one run's steps/s over its training time, "
              f"`single` = one graphed run alone, `batched` = inside the one worker that holds the whole mix "
              f"(the pipeline's batch path), `batched, worker per arch` = inside its architecture's worker while "
              f"all workers run at once. `gpu_busy`: mean nvidia-smi utilization while the phase ran. Speed-up of "
              f"the fastest worker path over today's: {mix.max() / base:.1f}x.\n\n")
    markdown = header + table.to_markdown(index=False, floatfmt=".3g") + "\n"
    atomic_write_text(f"{args.out}.csv", table.to_csv(index=False))
    atomic_write_text(f"{args.out}.md", markdown)
    print(markdown)


if __name__ == "__main__":
    main()
