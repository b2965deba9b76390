"""One op's forward + backward, run twice, for Nsight Compute (`ncu`) to profile its kernels.

    ncu --clock-control none --launch-skip 2 python benchmarks/profile_scan.py bdlru 4 bf16 B128-T128-S128
    ncu ... python benchmarks/profile_scan.py bdlru 4 bf16 B128-T128-S128 --case triton-pair-joint
"""
import argparse

import torch
from bench_scan import DTYPES, SHAPES, runner, scan_cases


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=("hlru", "bdlru"))
    ap.add_argument("M", type=int)
    ap.add_argument("dtype", choices=list(DTYPES))
    ap.add_argument("shape", choices=list(SHAPES))
    ap.add_argument("--case", default="triton", help="triton (the dispatch), triton-chunked, triton-pair-joint, ...")
    args = ap.parse_args()
    tensors, cases = scan_cases(args.kind, args.M, DTYPES[args.dtype], args.shape, pytorch=False)
    if args.case not in cases:
        ap.error(f"--case {args.case!r}: allowed for {args.kind} M={args.M}: {', '.join(cases)}")
    call = runner(cases[args.case], tensors, "fwd+bwd")
    for _ in range(2):
        call()
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
