"""Benchmark: time to generate each task at its MAD defaults (train and test splits).

    python benchmarks/bench_tasks.py [--repeats 3] [--out reports/benchmarks/bench_tasks]

Two baselines are measured in the same run on the same output shapes: drawing the two
arrays as plain uniform random tokens (``rng.integers``), and copying them (memory
bandwidth). The table gives the best of ``repeats`` runs, the slowdown over the random
fill, and the output bandwidth as a share of the copy's. Writes ``OUT.json`` and ``OUT.md``.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from statemix.io import atomic_write_json, atomic_write_text
from statemix.provenance import cpu_model
from statemix.tasks import TASKS, make_dataset


def _best(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure(repeats: int = 3) -> list[dict]:
    """One row per (task, split) at the task's default parameters and example counts."""
    rows = []
    rng = np.random.default_rng(0)
    for task, spec in TASKS.items():
        for split in ("train", "test"):
            n = spec.num_examples[split]
            x, y = make_dataset(task, n, 12345, split)
            gen = _best(lambda: make_dataset(task, n, 12345, split), repeats)
            vocab = spec.vocab_size(spec.defaults)
            fill = _best(lambda: (rng.integers(0, vocab, size=x.shape),
                                  rng.integers(0, vocab, size=y.shape)), repeats)
            dx, dy = np.empty_like(x), np.empty_like(y)
            copy = _best(lambda: (np.copyto(dx, x), np.copyto(dy, y)), repeats)
            nbytes = x.nbytes + y.nbytes
            rows.append(dict(task=task, split=split, shape=list(x.shape), seconds=gen,
                             megabytes=nbytes / 1e6, mb_per_s=nbytes / 1e6 / gen,
                             fill_seconds=fill, slowdown_vs_fill=gen / fill,
                             copy_seconds=copy, share_of_copy_bw=copy / gen))
    return rows


def render(rows: list[dict], hardware: dict) -> str:
    """Markdown table of the measurements."""
    lines = [
        "# Task generation time at MAD defaults",
        "",
        f"CPU: {hardware['cpu']} ({hardware['cores']} cores visible, shared), numpy "
        f"{hardware['numpy']}, Python {hardware['python']}; best of {hardware['repeats']} runs.",
        "Baselines from the same run: `rng.integers` fill of both arrays, and `np.copyto` of both.",
        "",
        "| task | split | shape | time (s) | MB | MB/s | x random fill | % of copy bandwidth |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['split']} | {r['shape'][0]}x{r['shape'][1]} | {r['seconds']:.3f} "
            f"| {r['megabytes']:.1f} | {r['mb_per_s']:.0f} | {r['slowdown_vs_fill']:.1f} "
            f"| {100 * r['share_of_copy_bw']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python benchmarks/bench_tasks.py", description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="reports/benchmarks/bench_tasks")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    hardware = dict(cpu=cpu_model(), cores=os.cpu_count(), numpy=np.__version__,
                    python=platform.python_version(), repeats=args.repeats)
    rows = measure(args.repeats)
    text = render(rows, hardware)
    print(text)
    atomic_write_json(args.out + ".json", dict(hardware=hardware, rows=rows))
    atomic_write_text(args.out + ".md", text)


if __name__ == "__main__":
    main()
