"""CPU speed of the `scan` backend against the `reference` loop (forward and forward+backward).

Writes reports/benchmarks/bench_cpu_backends.{csv,md}. Effective bandwidth counts each input read
once and each output written once, and is given as a share of a tensor copy timed in the same run.
"""
import argparse
import os
import platform
import time

import pandas as pd
import torch

from statemix.io import atomic_write_text
from statemix.ops import bdlru, hlru
from statemix.testing import make_inputs


def timeit(fn, repeat):
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def copy_bandwidth(nbytes, repeat):
    src = torch.empty(nbytes // 4, dtype=torch.float32).normal_()
    dst = torch.empty_like(src)
    sec = timeit(lambda: dst.copy_(src), repeat)
    return 2 * nbytes / sec


def case(kind, M, B, T, state, repeat):
    N = state // M
    op = {"hlru": hlru, "bdlru": bdlru}[kind]
    logits, v, _ = make_inputs(kind, B, T, N, M)
    out_bytes = 4 * B * T * N * (1 if kind == "hlru" else M)
    nbytes = 4 * (logits.numel() + v.numel()) + out_bytes
    rows = []
    for backend in ("reference", "scan"):
        fwd = lambda: op(logits.detach(), v.detach(), backend=backend)  # noqa: E731

        def fwd_bwd():
            logits.grad = v.grad = None
            op(logits, v, backend=backend).sum().backward()

        for mode, fn, traffic in (("fwd", fwd, nbytes), ("fwd+bwd", fwd_bwd, 2 * nbytes + 4 * logits.numel())):
            sec = timeit(fn, repeat)
            rows.append(dict(op=kind, M=M, N=N, B=B, T=T, backend=backend, mode=mode, ms=1e3 * sec, GBps=traffic / sec / 1e9))
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--B", type=int, default=8)
    p.add_argument("--T", type=int, nargs="+", default=[64, 1024])
    p.add_argument("--state", type=int, default=256)
    p.add_argument("--orders", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", default="reports/benchmarks")
    a = p.parse_args()
    torch.manual_seed(0)
    rows = [r for T in a.T for kind in ("hlru", "bdlru") for M in a.orders for r in case(kind, M, a.B, T, a.state, a.repeat)]
    df = pd.DataFrame(rows)
    copy = copy_bandwidth(256 << 20, a.repeat)
    df["copy_share"] = df.GBps * 1e9 / copy
    ref = df[df.backend == "reference"].set_index(["op", "M", "T", "mode"]).ms
    df["speedup_vs_reference"] = [ref[(r.op, r.M, r.T, r.mode)] / r.ms for r in df.itertuples()]
    hw = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, " \
         f"load average {os.getloadavg()[0]:.1f} at the end (other processes share the cores)"
    table = df.round(3).to_markdown(index=False)
    text = f"# CPU backends: scan vs reference\n\nHardware: {hw}. Copy bandwidth measured in this run: {copy / 1e9:.2f} GB/s.\n" \
           f"Command: `python benchmarks/bench_cpu_backends.py`\n\n{table}\n"
    print(text)
    os.makedirs(a.out, exist_ok=True)
    atomic_write_text(os.path.join(a.out, "bench_cpu_backends.md"), text)
    atomic_write_text(os.path.join(a.out, "bench_cpu_backends.csv"), df.to_csv(index=False))


if __name__ == "__main__":
    main()
