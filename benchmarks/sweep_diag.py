"""M = 1 (diagonal) Triton scan: channel-major vs time-major operands, and tile shapes.

Times forward and forward + backward of `hlru_triton` at M = 1 (B=8, T=4096, N=1024,
bf16 and fp32) with the operands in the contiguous `[B, T, N]` layout and in the
time-major layout (T the unit-stride axis), for several `(BT, BN, warps)` tiles, next
to accelerated-scan's first-order scan on the same state size and a device copy, all in
one run. Bandwidth counts minimal bytes as bench_scan.py does (forward 4 passes over
`[B, T, N]`, forward + backward 12).

    python benchmarks/sweep_diag.py --out reports/benchmarks
"""
import os

import torch
from bench_scan import runner
from timing import hardware, markdown, median_ms, start, write_atomic, write_csv

from statemix.ops.norm import NORMS
from statemix.ops.triton.diag import diag_scan, time_major
from statemix.testing import make_inputs

B, T, N = 8, 4096, 1024
TILES = [None, (1024, 1, 4), (256, 1, 2)]


def main():
    out, copy_gbs = start(__doc__)
    rows = []
    for dname, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        logits, v, _ = make_inputs("hlru", B, T, N, 1, "softmax", dtype, device="cuda")
        h0 = torch.zeros(B, N, device="cuda")
        layouts = {"channel-major": (logits.detach(), v.detach()),
                   "time-major": (time_major(logits.detach()), time_major(v.detach()))}
        nbytes = v.numel() * v.element_size()
        for lname, (lg, vv) in layouts.items():
            lg, vv = lg.requires_grad_(), vv.requires_grad_()
            for tile in TILES if lname == "time-major" else [None]:
                fn = lambda a, b, tile=tile: diag_scan(a, b, h0, NORMS.index("softmax"), False, tile)[0]  # noqa: E731
                for mode, passes in (("fwd", 4), ("fwd+bwd", 12)):
                    try:
                        ms = median_ms(runner(fn, (lg, vv), mode))
                    except RuntimeError as e:
                        print(f"failed {lname} {tile}: {str(e).splitlines()[0][:160]}", flush=True)
                        ms = float("nan")
                    gbs = passes * nbytes / ms / 1e6
                    rows.append(dict(dtype=dname, layout=lname, tile=str(tile or "default"), mode=mode, ms=ms,
                                     GBps=gbs, pct_copy=100 * gbs / copy_gbs))
                    print(rows[-1], flush=True)
        try:
            from accelerated_scan.scalar import scan
            gates = torch.rand(B, N, T, device="cuda").to(dtype).requires_grad_()
            tokens = torch.randn(B, N, T, device="cuda").to(dtype).requires_grad_()
            for mode, passes in (("fwd", 3), ("fwd+bwd", 8)):
                ms = median_ms(runner(scan, (gates, tokens), mode))
                gbs = passes * nbytes / ms / 1e6
                rows.append(dict(dtype=dname, layout="accelerated-scan [B,N,T]", tile="-", mode=mode, ms=ms,
                                 GBps=gbs, pct_copy=100 * gbs / copy_gbs))
                print(rows[-1], flush=True)
        except ImportError:
            print("accelerated-scan not installed; baseline skipped", flush=True)
    cols = ["dtype", "layout", "tile", "mode", "ms", "GBps", "pct_copy"]
    write_csv(os.path.join(out, "sweep_diag.csv"), rows)
    write_atomic(os.path.join(out, "sweep_diag.md"),
                 f"# M = 1 scan: layouts and tiles (B={B}, T={T}, N={N})\n\n{hardware()}; copy {copy_gbs:.0f} GB/s\n\n"
                 + markdown(rows, cols) + "\n")
    print(markdown(rows, cols))


if __name__ == "__main__":
    main()
