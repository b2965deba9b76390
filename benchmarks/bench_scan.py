"""Fused H-LRU / BD-LRU scans on the GPU: time and bandwidth against the baselines.

For each op, order/block size M, dtype and shape, times the forward and the
forward + backward of `statemix.ops` backends (triton, scan, reference), of
`torch.compile` of the reference (MAD shape), and of a diagonal first-order scan
(accelerated-scan's Triton kernel, given normalised gates) with the same state size. For
M > 1 the Triton op runs through its shape dispatch (`triton`) and, as the same-run baseline,
through the chunked sequential kernels (`triton-chunked`; at M ≥ 8, where the dispatch takes
those, with one chunk: `triton-onechunk`), and for M ≤ 5 through the pair scan with each row's
logits loaded and stored in one instruction (`triton-pair-joint`). Bandwidth counts minimal
bytes (each input read once, each output written once, in its dtype):
forward `L + 2V`, forward + backward `3L + 6V` (the backward reads logits, v, the
output and its gradient, and writes the logit and v gradients), with L and V the
element counts of the logits and of v. Shares are of a copy measured in this run. Modes
ending in `(graph)` time replays of a CUDA graph of the call: no host overhead, as in the
CUDA-graphed training step; the others time eager calls, host overhead included.

    python benchmarks/bench_scan.py --out reports/benchmarks   # writes bench_scan.{md,csv,png}
"""
import argparse
import os

import torch
from timing import copy_bandwidth, hardware, markdown, median_ms, stamp, write_atomic, write_csv

from statemix.ops import bdlru, hlru
from statemix.ops.naive import bdlru_ref, hlru_ref
from statemix.ops.triton import bdlru_triton, hlru_triton
from statemix.testing import make_inputs

SHAPES = {"B128-T128-S128": (128, 128, 128), "B8-T4096-S1024": (8, 4096, 1024)}
ORDERS = {"hlru": (1, 2, 3, 4, 5), "bdlru": (1, 2, 4, 8, 16)}
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
OPS = {"hlru": hlru, "bdlru": bdlru}
REFS = {"hlru": hlru_ref, "bdlru": bdlru_ref}
TRITON_FNS = {"hlru": hlru_triton, "bdlru": bdlru_triton}
MAIN = ("triton", "triton-chunked", "triton-onechunk", "triton-pair-joint", "accelerated-scan")
NAME = "bench_scan"
MODES = ("fwd", "fwd+bwd", "fwd (graph)", "fwd+bwd (graph)")


def extra_paths(kind, M):
    """Same-run comparisons: for M > 1 the chunked sequential kernels (the dispatch's pick at M ≥ 8, where
    they are timed with a single chunk instead); up to M = 5 also the pair scan with joint row loads
    (`pair-joint`, not yet in the dispatch)."""
    if M == 1:
        return ()
    return ("onechunk",) if M >= 8 else ("chunked", "pair-joint")


def runner(fn, tensors, mode):
    """A closure running the forward, or forward + backward with a fixed output gradient."""
    if mode.endswith("(graph)"):
        return graphed(runner(fn, tensors, mode.split()[0]))
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


def graphed(call):
    """`call` captured in a CUDA graph (after warm-up on a side stream): its replay has no host overhead,
    as in the CUDA-graphed training step, so it times the kernels alone."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            call()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        call()
    return graph.replay


def minimal_bytes(tensors, mode):
    L, V = (t.numel() * t.element_size() for t in tensors)
    return L + 2 * V if mode.startswith("fwd ") or mode == "fwd" else 3 * L + 6 * V


def scan_cases(kind, M, dtype, shape_name, compile_ref=False, pytorch=True):
    B, T, S = SHAPES[shape_name]
    logits, v, _ = make_inputs(kind, B, T, S // M, M, "softmax", dtype, device="cuda")
    tensors = (logits.detach().requires_grad_(), v.detach().requires_grad_())
    op, ref = OPS[kind], REFS[kind]
    backends = ("triton", "scan", "reference") if pytorch else ("triton",)
    cases = {b: (lambda lg, vv, b=b: op(lg, vv, backend=b)) for b in backends}
    tri = TRITON_FNS[kind]
    for path in extra_paths(kind, M):
        kw = dict(chunk=T) if path == "onechunk" else dict(path=path)
        cases[f"triton-{path}"] = lambda lg, vv, kw=kw: tri(lg, vv, **kw)[0]
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
    print(f"{r['op']:>6} M={r['M']:<2} {r['dtype']} {r['shape']:<15} {r['backend']:<20} {r['mode']:<16} "
          f"{ms:9.4f} ms {gbs:8.0f} GB/s {r['pct_copy']:5.1f}%", flush=True)


def warm(spec, shapes):
    """Compile (run once) every Triton case of `KIND:M` at both shapes and dtypes, untimed: the device
    script runs one such process per case in parallel so that the timed run finds Triton's cache warm."""
    kind, M = spec.split(":")
    for shape_name in shapes:
        for dtype in DTYPES.values():
            tensors, cases = scan_cases(kind, int(M), dtype, shape_name, pytorch=False)
            for fn in cases.values():
                runner(fn, tensors, "fwd+bwd")()
    torch.cuda.synchronize()
    print(f"warm {spec} done", flush=True)


def bench(args):
    copy_gbs = copy_bandwidth()
    print(f"# {hardware()}\n# copy {copy_gbs:.0f} GB/s", flush=True)
    rows = []
    meta = os.path.join(args.out, f"{NAME}_meta.txt")
    write_atomic(meta, f"{hardware()}\ncopy_GBps={copy_gbs:.1f}\n")
    for shape_name in args.shapes:
        for dname, dtype in DTYPES.items():
            for mode in MODES if not (args.compile_only or args.only) else ():
                tensors, fn = diagonal_case(dtype, shape_name)
                call = runner(fn, tensors, mode)
                passes = 3 if mode.split()[0] == "fwd" else 8
                record(rows, copy_gbs, op="diag", M=1, dtype=dname, shape=shape_name, backend="accelerated-scan",
                       mode=mode, ms=timed(call), bytes=passes * tensors[0].numel() * tensors[0].element_size())
            for kind, M, compile_ref in cases_for(shape_name, dname, args.compile):
                if (args.compile_only and not compile_ref) or (args.only and f"{kind}:{M}" not in args.only):
                    continue
                pytorch = shape_name in args.pytorch_shapes
                tensors, cases = scan_cases(kind, M, dtype, shape_name, compile_ref, pytorch)
                for backend, fn in cases.items():
                    if backend == "reference" and dname != "fp32":
                        continue
                    for mode in MODES if backend in MAIN else MODES[:2]:
                        try:
                            call = runner(fn, tensors, mode)
                        except (RuntimeError, torch.cuda.OutOfMemoryError) as e:
                            print(f"failed: {str(e).splitlines()[0][:200]}", flush=True)
                            torch.cuda.empty_cache()
                            continue
                        ms = timed(call, slow=backend not in MAIN)
                        record(rows, copy_gbs, op=kind, M=M, dtype=dname, shape=shape_name, backend=backend,
                               mode=mode, ms=ms, bytes=minimal_bytes(tensors, mode))
                if rows:
                    write_csv(os.path.join(args.out, f"{NAME}.csv"), rows)
                torch.cuda.empty_cache()
    return rows


def report_from_csv(paths, out):
    """Table and plot from benchmark CSVs (the first is the main run; its meta file gives the copy
    bandwidth and hardware); later files only add rows (op, M, dtype, shape, backend, mode) the
    earlier ones lack."""
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
                if key in seen:
                    continue
                seen.add(key)
                r["run"] = os.path.basename(os.path.dirname(os.path.abspath(path)))
                rows.append(r)
    with open(os.path.join(os.path.dirname(paths[0]), f"{NAME}_meta.txt")) as f:
        hw, copy_line = f.read().splitlines()[:2]
    write_csv(os.path.join(out, f"{NAME}.csv"), rows)
    report(rows, float(copy_line.split("=")[1]), out, hw)


def report(rows, copy_gbs, out, hw):
    cols = ["op", "M", "dtype", "shape", "backend", "mode", "ms", "GBps", "pct_copy", "run"]
    main = [r for r in rows if r["backend"] in MAIN]
    others = [r for r in rows if r["backend"] not in MAIN]
    text = (
        f"# Scan benchmark\n\n{stamp()}; {hw}.\n\n"
        f"Device-to-device copy measured in the main run: {copy_gbs:.0f} GB/s (bytes read + written); "
        "each row's share is of the copy measured in its own run (column `run`).\n"
        "Bandwidth counts minimal bytes: forward L + 2V, forward + backward 3L + 6V elements "
        "(L logits, V values); the diagonal baseline 3 and 8 passes of its (B, C, T) tensors. "
        "State size S = N·M (N = S // M for H-LRU M = 3, 5).\n\n"
        "Command: `benchmarks/run_issue16.sh OUT WHEELDIR` on the H200 (runs "
        "`python benchmarks/bench_scan.py --out OUT`, accelerated-scan carried as a wheel), then "
        "`python benchmarks/bench_scan.py --out reports/benchmarks --report OUT/bench_scan.csv` here.\n\n"
        f"## Triton kernels and the diagonal baseline\n\n{markdown(main, cols)}\n\n"
        f"## PyTorch backends (scan, reference loop, torch.compile of the reference)\n\n{markdown(others, cols)}\n"
    )
    write_atomic(os.path.join(out, f"{NAME}.md"), text)
    plot(rows, os.path.join(out, f"{NAME}.png"))


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
    ap.add_argument("--out", default="reports/benchmarks", help="folder for bench_scan.{csv,md,png}")
    ap.add_argument("--no-compile", dest="compile", action="store_false", help="skip torch.compile of the reference")
    ap.add_argument("--compile-only", action="store_true",
                    help="only time torch.compile of the reference (MAD shape, fp32)")
    ap.add_argument("--pytorch-shapes", nargs="*", default=[], help="shapes that also time scan/reference")
    ap.add_argument("--warm", metavar="KIND:M", help="only compile the Triton cases of one op and order")
    ap.add_argument("--shapes", nargs="*", default=list(SHAPES), choices=list(SHAPES), help="shapes to run")
    ap.add_argument("--only", nargs="*", metavar="KIND:M", help="only these ops and orders (no diagonal baseline)")
    ap.add_argument("--report", metavar="CSV", nargs="*",
                    help="only rebuild the table and plot from CSV files (no GPU)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.report:
        report_from_csv(args.report, args.out)
        return
    if not torch.cuda.is_available():
        raise SystemExit("bench_scan needs a CUDA device")
    if args.warm:
        warm(args.warm, args.shapes)
        return
    bench(args)


if __name__ == "__main__":
    main()
