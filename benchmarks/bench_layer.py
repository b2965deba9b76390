"""Whole-layer training throughput: forward + backward tokens/s of the selective layers.

BD-LRU M ∈ {1, 2, 4, 8} and H-LRU M ∈ {2, 4} at D=1024, state size N·M = 1024,
B=8, T=4096, with the Triton scan; projections included. Parameters and activations in
the benchmark dtype.

    python benchmarks/bench_layer.py --out reports/benchmarks
"""
import argparse
import os

import torch
from timing import hardware, markdown, median_ms, stamp, write_atomic, write_csv

from statemix.mixers import BDLRU, HLRU

LAYERS = [("bdlru", 1), ("bdlru", 2), ("bdlru", 4), ("bdlru", 8), ("hlru", 2), ("hlru", 4)]


def build(kind, M, D, S):
    return BDLRU(D, S // M, M, backend="triton") if kind == "bdlru" else HLRU(D, S // M, M, backend="triton")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="reports/benchmarks")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    B, T, D, S = 8, 4096, 1024, 1024
    rows = []
    for dname, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        for kind, M in LAYERS:
            layer = build(kind, M, D, S).to("cuda", dtype)
            x = torch.randn(B, T, D, device="cuda", dtype=dtype, requires_grad=True)
            g = torch.randn_like(x)
            params = [x, *layer.parameters()]
            ms = median_ms(lambda: torch.autograd.grad(layer(x), params, g))
            rows.append(dict(layer=f"{kind}-m{M}", dtype=dname, params=sum(p.numel() for p in layer.parameters()),
                             ms=ms, tokens_per_s=B * T / ms * 1e3))
            print(rows[-1], flush=True)
            del layer, x, g, params
            torch.cuda.empty_cache()
        base = next(r["tokens_per_s"] for r in rows if r["layer"] == "bdlru-m1" and r["dtype"] == dname)
        for r in rows:
            if r["dtype"] == dname:
                r["vs_bdlru_m1"] = r["tokens_per_s"] / base
    write_csv(os.path.join(args.out, "bench_layer.csv"), rows)
    text = (f"# Layer throughput\n\n{stamp()}; {hardware()}.\n\nForward + backward of one layer (projections "
            f"included), B={B}, T={T}, D={D}, state N·M={S}, Triton scan.\n\n"
            "Command: `python benchmarks/bench_layer.py --out reports/benchmarks`\n\n"
            + markdown(rows, ["layer", "dtype", "params", "ms", "tokens_per_s", "vs_bdlru_m1"]) + "\n")
    write_atomic(os.path.join(args.out, "bench_layer.md"), text)


if __name__ == "__main__":
    main()
