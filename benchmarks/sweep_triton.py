"""Launch-parameter sweep for the Triton scans: chunk length and pipeline stages.

Times forward + backward at B=8, T=4096, state 1024 (bf16 and fp32) for a few orders,
so the heuristics in `statemix.ops.triton.common` can be set from measurements.

    python benchmarks/sweep_triton.py --out reports/benchmarks
"""
import os
from dataclasses import replace

import torch
from timing import median_ms, start, write_csv

from statemix.ops.triton import bdlru_triton, hlru_triton
from statemix.ops.triton.common import default_config, pow2
from statemix.testing import make_inputs

CASES = [("hlru", 4), ("bdlru", 4), ("bdlru", 16)]
CHUNKS = [None, 4096, 512, 128]
STAGES = [1, 3]


def main():
    out, copy_gbs = start(__doc__)
    rows = []
    B, T, S = 8, 4096, 1024
    for dtype in (torch.bfloat16,):
        for kind, M in CASES:
            logits, v, _ = make_inputs(kind, B, T, S // M, M, "softmax", dtype, device="cuda")
            x = (logits.detach().requires_grad_(), v.detach().requires_grad_())
            fn = hlru_triton if kind == "hlru" else bdlru_triton
            nbytes = 3 * x[0].numel() * x[0].element_size() + 6 * x[1].numel() * x[1].element_size()
            for stages in STAGES:
                cfg = replace(default_config(kind, pow2(M)), stages=stages)
                for chunk in CHUNKS:
                    g = torch.randn_like(v)
                    ms_f = median_ms(lambda: fn(*x, "softmax", chunk=chunk, config=cfg))
                    ms = median_ms(lambda: torch.autograd.grad(fn(*x, "softmax", chunk=chunk, config=cfg)[0], x, g))
                    pct = 100 * nbytes / ms / 1e6 / copy_gbs
                    rows.append(dict(op=kind, M=M, dtype=str(dtype)[6:], stages=stages, chunk=chunk or "auto",
                                     block=cfg.block, fwd_ms=ms_f, fwdbwd_ms=ms, pct_copy_fwdbwd=pct))
                    print(f"{kind:>6} M={M:<2} {rows[-1]['dtype']:<8} stages={stages} chunk={str(chunk):>5} "
                          f"fwd {ms_f:8.3f} ms  fwd+bwd {ms:8.3f} ms  {pct:5.1f}% of copy", flush=True)
            write_csv(os.path.join(out, "sweep_triton.csv"), rows)


if __name__ == "__main__":
    main()
