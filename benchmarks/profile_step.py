"""Where a graphed training step's GPU time goes: kernels per phase and the replay time of one group-step.

A batch worker's group (K stacked seeds of one arch x width, MAD's in-context-recall shape) is built through the
real pipeline code (statemix.train.prepare, statemix.worker.build_groups). Per architecture:
  kernels: launches in one eager step, split into forward (with the loss), backward, gradient clipping and AdamW
           (torch.profiler; a launch is a cudaLaunchKernel / cuLaunchKernel / memcpy / memset runtime call,
           classified by the CPU range that issued it);
  kernel_us: the GPU time of those kernels, summed;
  replay_ms: one replay of the captured step (CUDA events, median of 50), and its ratio to kernel_us, the
           share of the replay that is not kernel time (gaps between dependent tiny kernels);
  copy_ms: a device-to-device copy of the group's parameter, gradient and AdamW bytes (2x for read + write),
           measured in the same run: the floor a step that touched each byte once would approach.
The first architecture is the baseline of the `vs_first` column. On a CPU (no CUDA) the same table counts the
leaf aten ops of an eager step instead (a proxy, for checking the script), and times nothing.

    python benchmarks/profile_step.py --out reports/benchmarks/profile_step    # on the GPU machine
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from statemix import train, worker  # noqa: E402
from statemix.generate import generate  # noqa: E402
from statemix.io import atomic_write_text  # noqa: E402
from statemix.provenance import code_id, describe_hardware  # noqa: E402

LAUNCHES = ("cudaLaunchKernel", "cuLaunchKernel", "cudaMemcpyAsync", "cudaMemsetAsync", "cudaLaunchCooperativeKernel")
PHASES = ("forward", "backward", "clip", "adamw")
DEFAULT_ARCHS = ["lru:32", "hlru-m2:32", "bdlru-m2:32", "bdlru-m4:32", "lstm:32", "gdn:128", "dproduct:128",
                 "mamba2:512"]


def group(arch: str, width: int, K: int, data: Path, tmp: Path, graphs: str) -> worker.Group:
    runs = [f"{arch}:{width},{s},{tmp / f'{arch}_{width}_{graphs}_{s}'}" for s in range(K)]
    args = ["--task", "in-context-recall", "--data", str(data), "--set", "track.enabled=false",
            "--set", f"train.cuda_graphs={graphs}", *(x for r in runs for x in ("--run", r))]
    jobs = [train.prepare(a, {}, graphed=False) for a in worker.parse_args(args)[1]]
    built = worker.build_groups(jobs, jobs[0].device, [])
    assert len(built) == 1, f"{arch} w{width}: {len(built)} groups, expected one stack of {K}"
    return built[0]


def _phase(event) -> str:
    """The phase of a profiler event: the labelled range or autograd/optimizer frame above it."""
    node = event
    while node is not None:
        name = node.name
        if name.startswith("statemix.") and name[len("statemix."):] in PHASES:
            return name[len("statemix."):]
        if name.startswith("Optimizer.step"):
            return "adamw"
        if name.startswith("autograd::engine") or "Backward" in name:
            return "backward"
        node = node.cpu_parent
    return "forward"


def kernel_counts(g: worker.Group, cuda: bool) -> tuple[Counter, float]:
    """Launches per phase in one eager step (leaf aten ops on a CPU), and their GPU microseconds."""
    steps = g.steps
    clip, opt_step = steps._clip, steps.optimizer.step

    def labelled(fn, label):
        def call(*a, **k):
            with record_function(f"statemix.{label}"):
                return fn(*a, **k)
        return call

    steps._clip, steps.optimizer.step = labelled(clip, "clip"), labelled(opt_step, "adamw")
    g.begin()
    g.step(0)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    try:
        with profile(activities=activities) as prof:
            g.step(1)
            if cuda:
                torch.cuda.synchronize()
    finally:
        steps._clip, steps.optimizer.step = clip, opt_step
    events = prof.events()
    if cuda:
        launches = [e for e in events if e.name.startswith(LAUNCHES)]
        device_us = sum(e.time_range.elapsed_us() for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
    else:
        launches = [e for e in events if e.name.startswith("aten::") and not e.cpu_children
                    and e.name not in ("aten::view", "aten::as_strided", "aten::empty", "aten::_unsafe_view",
                                       "aten::empty_strided", "aten::resolve_conj", "aten::_reshape_alias")]
        device_us = float("nan")
    return Counter(_phase(e) for e in launches), device_us


def replay_ms(g: worker.Group, n: int = 50) -> float:
    """Median ms of one captured step replay (CUDA events)."""
    g.begin()
    times = []
    for i in range(n):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        g.step(i % g.n_steps)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times[5:])


def copy_ms(g: worker.Group) -> float:
    """A device copy of the group's parameter, gradient and AdamW state bytes (read + written once)."""
    n = sum(p.numel() * p.element_size() for p in g.params) * 4
    src = torch.empty(n, dtype=torch.uint8, device=g.device)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(20):
        dst.copy_(src)
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 20


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", nargs="+", default=DEFAULT_ARCHS, help="ARCH:WIDTH, the first is the baseline")
    p.add_argument("--stack", type=int, default=3, help="runs per group (seeds stacked)")
    p.add_argument("--examples", type=int, default=1280, help="train examples of the dataset (steps = /128)")
    p.add_argument("--out", default="reports/benchmarks/profile_step")
    args = p.parse_args(argv)
    cuda = torch.cuda.is_available()
    rows = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        data = tmp / "data"
        generate("in-context-recall", "train", data / "train", seed=0, sets={"num_examples": args.examples})
        generate("in-context-recall", "test", data / "test", seed=1, sets={"num_examples": 256})
        for spec in args.archs:
            arch, width = spec.split(":")
            eager = group(arch, int(width), args.stack, data, tmp, "off")
            counts, device_us = kernel_counts(eager, cuda)
            row = {"arch": arch, "width": int(width), "runs": args.stack, **{p: counts.get(p, 0) for p in PHASES},
                   "kernels": sum(counts.values()), "kernel_us": device_us}
            if cuda:
                graphed = group(arch, int(width), args.stack, data, tmp, "on")
                row["replay_ms"] = replay_ms(graphed)
                row["replay_vs_kernels"] = row["replay_ms"] * 1e3 / device_us if device_us else float("nan")
                row["copy_ms"] = copy_ms(graphed)
                row["step_path"] = graphed.steps.path
            rows.append(row)
            print(row, flush=True)
    import pandas as pd

    table = pd.DataFrame(rows)
    if cuda:
        table["vs_first"] = table["replay_ms"] / table["replay_ms"].iloc[0]
    unit = "CUDA kernel launches" if cuda else "leaf aten ops (CPU proxy, no timing)"
    header = (f"# One training step of a worker group, by phase\n\nHardware: {describe_hardware(torch.device('cuda' if cuda else 'cpu'))}; "
              f"torch {torch.__version__}; code id {code_id()[:12]}. In-context recall (B=128, T=127, d=128, 2 blocks, bf16 on CUDA), "
              f"{args.stack} seeds stacked per group. Columns forward..adamw: {unit} in one eager step; "
              f"`kernel_us`: their summed GPU time; `replay_ms`: one replay of the captured step (median); "
              f"`replay_vs_kernels`: replay / kernel time; `copy_ms`: a device copy of the group's parameter, "
              f"gradient and AdamW bytes in the same run; `vs_first`: replay time over the first row's. "
              f"Command: `python benchmarks/profile_step.py --archs {' '.join(args.archs)} --stack {args.stack}`.\n\n")
    atomic_write_text(f"{args.out}.csv", table.to_csv(index=False))
    atomic_write_text(f"{args.out}.md", header + table.to_markdown(index=False, floatfmt=".3g") + "\n")
    print(header + table.to_markdown(index=False, floatfmt=".3g"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
