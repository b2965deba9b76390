"""Fused H-LRU / BD-LRU scans on the GPU: time and bandwidth against the baselines.

For each op, order/block size M, dtype and shape, times the forward and the
forward + backward of `statemix.ops` backends (triton, scan, reference), of
`torch.compile` of the reference (MAD shape), and of a diagonal first-order scan
(accelerated-scan's Triton kernel) with the same state size. Bandwidth counts minimal
bytes (each input read once, each output written once, in its dtype):
forward `L + 2V`, forward + backward `3L + 6V` (the backward reads logits, v, the
output and its gradient, and writes the logit and v gradients), with L and V the
element counts of the logits and of v. Shares are of a copy measured in this run.

    python benchmarks/bench_scan.py --out reports/benchmarks
"""
import argparse
import os

import torch
from timing import copy_bandwidth, hardware, markdown, median_ms, stamp, write_atomic, write_csv

from statemix.ops import bdlru, hlru
from statemix.ops.naive import bdlru_ref, hlru_ref
from statemix.testing import make_inputs

SHAPES = {"B8-T4096-S1024": (8, 4096, 1024), "B128-T128-S128": (128, 128, 128)}
ORDERS = {"hlru": (1, 2, 3, 4, 5), "bdlru": (1, 2, 4, 8, 16)}
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
OPS = {"hlru": hlru, "bdlru": bdlru}
REFS = {"hlru": hlru_ref, "bdlru": bdlru_ref}


def runner(fn, tensors, mode):
    """A closure running the forward, or forward + backward with a fixed output gradient."""
    out = fn(*tensors)
    grad = torch.randn_like(out)
    if mode == "fwd":
        def call():
            with torch.no_grad():
                fn(*tensors)
    else:
        def call():
            torch.autograd.grad(fn(*tensors), tensors, grad)
    return call


def minimal_bytes(tensors, mode):
    L, V = (t.numel() * t.element_size() for t in tensors)
    return L + 2 * V if mode == "fwd" else 3 * L + 6 * V


def scan_cases(kind, M, dtype, shape_name, compile_ref=False, pytorch=True):
    B, T, S = SHAPES[shape_name]
    logits, v, _ = make_inputs(kind, B, T, S // M, M, "softmax", dtype, device="cuda")
    tensors = (logits.detach().requires_grad_(), v.detach().requires_grad_())
    op, ref = OPS[kind], REFS[kind]
    backends = ("triton", "scan", "reference") if pytorch else ("triton",)
    cases = {b: (lambda lg, vv, b=b: op(lg, vv, backend=b)) for b in backends}
    if compile_ref:
        cases = {"compile(reference)": torch.compile(lambda lg, vv: ref(lg, vv)[0])}
    return tensors, cases


def diagonal_case(dtype, shape_name):
    from accelerated_scan.scalar import scan

    B, T, S = SHAPES[shape_name]
    gates = torch.rand(B, S, T, device="cuda").to(dtype).requires_grad_()
    tokens = torch.randn(B, S, T, device="cuda").to(dtype).requires_grad_()
    return (gates, tokens), scan


def timed(call, slow=False):
    """Median ms of `call`, or NaN (with the error printed) when it fails, e.g. out of memory."""
    try:
        return median_ms(call, slow)
    except (RuntimeError, torch.cuda.OutOfMemoryError) as e:
        print(f"failed: {str(e).splitlines()[0][:200]}", flush=True)
        torch.cuda.empty_cache()
        return float("nan")


def cases_for(shape_name, dname, compile_ref):
    """(op, M, compile?) in run order; torch.compile of the reference (slow to build: it unrolls
    the time loop) runs last, at the MAD shape in fp32, for BD-LRU M=4."""
    out = [(kind, M, False) for kind, orders in ORDERS.items() for M in orders]
    if compile_ref and shape_name.startswith("B128") and dname == "fp32":
        out += [("bdlru", 4, True), ("hlru", 2, True)]
    return out


def record(rows, copy_gbs, **kw):
    ms, nbytes = kw["ms"], kw.pop("bytes")
    gbs = nbytes / ms / 1e6
    rows.append(dict(kw, MB=nbytes / 1e6, GBps=gbs, pct_copy=100 * gbs / copy_gbs))
    r = rows[-1]
    print(f"{r['op']:>6} M={r['M']:<2} {r['dtype']} {r['shape']:<15} {r['backend']:<20} {r['mode']:<7} "
          f"{ms:9.3f} ms {gbs:8.0f} GB/s {r['pct_copy']:5.1f}%", flush=True)


def bench(args):
    copy_gbs = copy_bandwidth()
    print(f"# {hardware()}\n# copy {copy_gbs:.0f} GB/s", flush=True)
    rows = []
    meta = os.path.join(args.out, "scan_h200_meta.txt")
    write_atomic(meta, f"{hardware()}\ncopy_GBps={copy_gbs:.1f}\n")
    for shape_name in SHAPES:
        for dname, dtype in DTYPES.items():
            for mode in ("fwd", "fwd+bwd") if not args.compile_only else ():
                tensors, fn = diagonal_case(dtype, shape_name)
                call = runner(fn, tensors, mode)
                passes = 3 if mode == "fwd" else 8
                record(rows, copy_gbs, op="diag", M=1, dtype=dname, shape=shape_name, backend="accelerated-scan",
                       mode=mode, ms=timed(call), bytes=passes * tensors[0].numel() * tensors[0].element_size())
            for kind, M, compile_ref in cases_for(shape_name, dname, args.compile):
                if args.compile_only and not compile_ref:
                    continue
                pytorch = shape_name in args.pytorch_shapes
                tensors, cases = scan_cases(kind, M, dtype, shape_name, compile_ref, pytorch)
                for backend, fn in cases.items():
                    if backend == "reference" and dname != "fp32":
                        continue
                    for mode in ("fwd", "fwd+bwd"):
                        try:
                            call = runner(fn, tensors, mode)
                        except (RuntimeError, torch.cuda.OutOfMemoryError) as e:
                            print(f"failed: {str(e).splitlines()[0][:200]}", flush=True)
                            torch.cuda.empty_cache()
                            continue
                        ms = timed(call, slow=backend != "triton")
                        record(rows, copy_gbs, op=kind, M=M, dtype=dname, shape=shape_name, backend=backend,
                               mode=mode, ms=ms, bytes=minimal_bytes(tensors, mode))
                if rows:
                    write_csv(os.path.join(args.out, "scan_h200.csv"), rows)
                torch.cuda.empty_cache()
    return rows


def report_from_csv(paths, out):
    """Table and plot from benchmark CSVs (the first is the main run; its meta file gives the copy
    bandwidth and hardware); later files only add PyTorch-baseline rows the first lacks."""
    import csv

    rows, seen = [], set()
    for i, path in enumerate(paths):
        with open(path) as f:
            for r in csv.DictReader(f):
                for k in ("M", ):
                    r[k] = int(r[k])
                for k in ("ms", "MB", "GBps", "pct_copy"):
                    r[k] = float(r[k])
                key = (r["op"], r["M"], r["dtype"], r["shape"], r["backend"], r["mode"])
                if key in seen or (i > 0 and r["backend"] in ("triton", "accelerated-scan")):
                    continue
                seen.add(key)
                r["run"] = os.path.basename(os.path.dirname(os.path.abspath(path)))
                rows.append(r)
    with open(os.path.join(os.path.dirname(paths[0]), "scan_h200_meta.txt")) as f:
        hw, copy_line = f.read().splitlines()[:2]
    write_csv(os.path.join(out, "scan_h200.csv"), rows)
    report(rows, float(copy_line.split("=")[1]), out, hw)


def report(rows, copy_gbs, out, hw):
    cols = ["op", "M", "dtype", "shape", "backend", "mode", "ms", "GBps", "pct_copy", "run"]
    main = [r for r in rows if r["backend"] in ("triton", "accelerated-scan")]
    others = [r for r in rows if r["backend"] not in ("triton", "accelerated-scan")]
    text = (
        f"# Scan benchmark\n\n{stamp()}; {hw}.\n\n"
        f"Device-to-device copy measured in the main run: {copy_gbs:.0f} GB/s (bytes read + written); "
        "each row's share is of the copy measured in its own run (column `run`).\n"
        "Bandwidth counts minimal bytes: forward L + 2V, forward + backward 3L + 6V elements "
        "(L logits, V values); the diagonal baseline 3 and 8 passes of its (B, C, T) tensors. "
        "State size S = N·M (N = S // M for H-LRU M = 3, 5).\n\n"
        "Commands: `benchmarks/run_h200.sh OUT .whl-kernels` on the H200 (runs "
        "`python benchmarks/bench_scan.py --out OUT`), then "
        "`python benchmarks/bench_scan.py --out reports/benchmarks --report OUT/scan_h200.csv` here.\n\n"
        f"## Triton kernels and the diagonal baseline\n\n{markdown(main, cols)}\n\n"
        f"## PyTorch backends (scan, reference loop, torch.compile of the reference)\n\n{markdown(others, cols)}\n"
    )
    write_atomic(os.path.join(out, "scan_h200.md"), text)
    plot(rows, os.path.join(out, "scan_h200.png"))


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SHAPES), figsize=(14, 4.5), sharey=True)
    for ax, shape_name in zip(axes, SHAPES):
        sel = [r for r in rows if r["shape"] == shape_name and r["backend"] in ("triton", "accelerated-scan")]
        labels = sorted({(r["op"], r["M"]) for r in sel}, key=lambda k: (k[0] != "diag", k[0], k[1]))
        width = 0.2
        for j, (dname, mode) in enumerate([(d, m) for d in DTYPES for m in ("fwd", "fwd+bwd")]):
            vals = [next((r["pct_copy"] for r in sel if (r["op"], r["M"]) == lab and r["dtype"] == dname
                          and r["mode"] == mode), 0.0) for lab in labels]
            ax.bar([i + (j - 1.5) * width for i in range(len(labels))], vals, width, label=f"{dname} {mode}")
        names = [("accelerated-scan" if o == "diag" else f"{o}-m{m}") for o, m in labels]
        ax.set_xticks(range(len(labels)), names, rotation=45, ha="right")
        ax.axhline(80, color="k", lw=0.8, ls="--")
        ax.set_title(shape_name)
        ax.set_ylabel("% of copy bandwidth (minimal bytes)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="reports/benchmarks", help="folder for scan_h200.{csv,md,png}")
    ap.add_argument("--no-compile", dest="compile", action="store_false", help="skip torch.compile of the reference")
    ap.add_argument("--compile-only", action="store_true",
                    help="only time torch.compile of the reference (MAD shape, fp32)")
    ap.add_argument("--pytorch-shapes", nargs="*", default=list(SHAPES), help="shapes that also time scan/reference")
    ap.add_argument("--report", metavar="CSV", nargs="*",
                    help="only rebuild the table and plot from CSV files (no GPU)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.report:
        report_from_csv(args.report, args.out)
        return
    if not torch.cuda.is_available():
        raise SystemExit("bench_scan needs a CUDA device")
    bench(args)


if __name__ == "__main__":
    main()
