"""Where a graphed training step's GPU time goes: kernels per phase and the replay time of one group-step.

A batch worker's group (K stacked seeds of one arch x width, MAD's in-context-recall shape) is built through the
real pipeline code (statemix.train.prepare, statemix.worker.build_groups). Per architecture:
  kernels: launches in one uncaptured step (compiled, for compiled rows), split into forward (with the loss),
           backward, gradient clipping and AdamW (torch.profiler; a launch is a cudaLaunchKernel /
           cuLaunchKernel / memcpy / memset runtime call, classified by the CPU range that issued it);
  kernel_us: the GPU time of those kernels, summed;
  replay_ms: ms per captured step, replayed back to back on the group's stream as the worker does (CUDA
           events on that stream), and its ratio to kernel_us (under 1: the profiler's gaps and overheads);
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
import time
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


def group(arch: str, width: int, K: int, data: Path, tmp: Path, graphs: str, compile_: bool = False) -> worker.Group:
    runs = [f"{arch}:{width},{s},{tmp / f'{arch}_{width}_{graphs}_{K}_{compile_}_{s}'}" for s in range(K)]
    args = ["--task", "in-context-recall", "--data", str(data), "--set", "track.enabled=false",
            "--set", f"train.cuda_graphs={graphs}", "--set", f"train.compile={compile_}",
            *(x for r in runs for x in ("--run", r))]
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


def kernel_counts(g: worker.Group, cuda: bool) -> tuple[Counter, float, Counter]:
    """Launches per phase in one eager step (leaf aten ops on a CPU), their GPU microseconds, and the GPU
    microseconds per kernel name."""
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
        kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
        device_us = sum(e.time_range.elapsed_us() for e in kernels)
        by_name = Counter()
        for e in kernels:
            by_name[e.name[:90]] += e.time_range.elapsed_us()
    else:
        launches = [e for e in events if e.name.startswith("aten::") and not e.cpu_children
                    and e.name not in ("aten::view", "aten::as_strided", "aten::empty", "aten::_unsafe_view",
                                       "aten::empty_strided", "aten::resolve_conj", "aten::_reshape_alias")]
        device_us, by_name = float("nan"), Counter()
    return Counter(_phase(e) for e in launches), device_us, by_name


def replay_ms(g: worker.Group, n: int = 50, repeats: int = 5) -> float:
    """ms per captured step when `n` steps are replayed back to back, as the worker issues them (CUDA events on
    the group's own stream, where the replays run); the median of `repeats` such runs after a warm-up run."""
    g.begin()
    stream = g.stream
    times = []
    for r in range(repeats + 1):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(stream)
        for i in range(n):
            g.step(i % g.n_steps)
        end.record(stream)
        torch.cuda.synchronize()
        if r:
            times.append(start.elapsed_time(end) / n)
    return statistics.median(times)


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


def _timed_group(*args, **kw) -> tuple[worker.Group, float]:
    """A group, and the seconds to build it and lay out its first epoch (capture, and compile, included)."""
    t0 = time.perf_counter()
    g = group(*args, **kw)
    g.begin()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return g, time.perf_counter() - t0


def profile_arch(arch: str, width: int, K: int, compile_: bool, data: Path, tmp: Path, cuda: bool) -> tuple[dict, Counter]:
    """One row: launches and kernel time of one uncaptured step (compiled for compiled rows, on a GPU only), and
    the replay of the captured step with its build time."""
    row = {"arch": arch, "width": width, "runs": K, "compile": compile_}
    device_us, by_name = float("nan"), Counter()
    if not compile_:
        counts, device_us, by_name = kernel_counts(group(arch, width, K, data, tmp, "off"), cuda)
        row.update({p: counts.get(p, 0) for p in PHASES}, kernels=sum(counts.values()), kernel_us=device_us)
    if cuda:
        graphed, build_s = _timed_group(arch, width, K, data, tmp, "on", compile_)
        row["replay_ms"] = replay_ms(graphed)
        row["ms_per_run"] = row["replay_ms"] / K
        row["copy_ms"] = copy_ms(graphed)
        row["build_s"] = build_s
        row["step_path"] = graphed.steps.path
        del graphed
        if compile_:  # after the graphed build, so the compiled graphs come from Inductor's cache
            counts, device_us, by_name = kernel_counts(group(arch, width, K, data, tmp, "off", True), cuda)
            row.update({p: counts.get(p, 0) for p in PHASES}, kernels=sum(counts.values()), kernel_us=device_us)
        row["replay_vs_kernels"] = row["replay_ms"] * 1e3 / device_us if device_us else float("nan")
        torch.cuda.empty_cache()
    return row, by_name


def top_kernels(tops: dict, n: int = 6) -> str:
    """Markdown: the n kernels with the most GPU time in one uncaptured step of each row, with their share."""
    lines = ["## Top kernels of one uncaptured step (per architecture, stack and compile)", ""]
    for spec, by_name in tops.items():
        total = sum(by_name.values()) or 1.0
        parts = [f"`{name}` {us:.0f} us ({us / total:.0%})" for name, us in by_name.most_common(n)]
        lines.append(f"- **{spec}**: " + "; ".join(parts))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", nargs="+", default=DEFAULT_ARCHS, help="ARCH:WIDTH, the first is the baseline")
    p.add_argument("--stacks", type=int, nargs="+", default=[3], help="runs per group (seeds stacked) to time")
    p.add_argument("--compile-stacks", type=int, nargs="*", default=[],
                   help="runs per group to time again with train.compile=true (none by default)")
    p.add_argument("--examples", type=int, default=1280, help="train examples of the dataset (steps = /128)")
    p.add_argument("--out", default="reports/benchmarks/profile_step")
    args = p.parse_args(argv)
    cuda = torch.cuda.is_available()
    rows, tops = [], {}

    def write() -> str:
        import pandas as pd

        table = pd.DataFrame(rows)
        if cuda:
            table["vs_first"] = table["replay_ms"] / table["replay_ms"].iloc[0]
        unit = "CUDA kernel launches" if cuda else "leaf aten ops (CPU proxy, no timing)"
        header = (f"# One training step of a worker group, by phase\n\nHardware: "
                  f"{describe_hardware(torch.device('cuda' if cuda else 'cpu'))}; torch {torch.__version__}; code id "
                  f"{code_id()[:12]}. In-context recall (B=128, T=127, d=128, 2 blocks, bf16 on CUDA); `runs` seeds "
                  f"stacked per group; `compile`: train.compile. Columns forward..adamw: {unit} in one uncaptured step (compiled in compiled rows); "
                  f"`kernel_us`: their summed GPU time; `replay_ms`: ms per captured step replayed back to back on the group's stream; "
                  f"`ms_per_run`: replay / runs; `replay_vs_kernels`: replay / kernel time; `copy_ms`: a device copy "
                  f"of the group's parameter, gradient and AdamW bytes in the same run; `build_s`: building the group "
                  f"and capturing its step (compiling included); `vs_first`: replay time over the first row's. "
                  f"Command: `python benchmarks/profile_step.py --archs {' '.join(args.archs)} --stacks "
                  f"{' '.join(map(str, args.stacks))} --compile-stacks {' '.join(map(str, args.compile_stacks))}`.\n\n")
        text = header + table.to_markdown(index=False, floatfmt=".3g") + "\n\n" + top_kernels(tops)
        atomic_write_text(f"{args.out}.csv", table.to_csv(index=False))
        atomic_write_text(f"{args.out}.md", text)
        return text

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        data = tmp / "data"
        generate("in-context-recall", "train", data / "train", seed=0, sets={"num_examples": args.examples})
        generate("in-context-recall", "test", data / "test", seed=1, sets={"num_examples": 256})
        plan = [(K, False) for K in args.stacks] + ([(K, True) for K in args.compile_stacks] if cuda else [])
        for spec in args.archs:
            arch, width = spec.split(":")
            for K, compile_ in plan:
                try:
                    row, by_name = profile_arch(arch, int(width), K, compile_, data, tmp, cuda)
                except Exception as err:  # noqa: BLE001 -- one failing case must not lose the others' rows
                    row, by_name = {"arch": arch, "width": int(width), "runs": K, "compile": compile_,
                                    "step_path": f"error: {type(err).__name__}: {err}"[:200]}, Counter()
                if by_name:
                    tops[f"{spec} x{K}{' compiled' if compile_ else ''}"] = by_name
                rows.append(row)
                print(row, flush=True)
                write()
    print(write())
    return 0


if __name__ == "__main__":
    sys.exit(main())
