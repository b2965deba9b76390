"""Timing, bandwidth and report helpers shared by the GPU benchmarks.

Times are medians of CUDA-event timings (`triton.testing.do_bench`); bandwidth is
counted on minimal bytes and reported as a share of a device-to-device copy measured
in the same process.
"""
import argparse
import csv
import io
import os
import platform
import time

import torch
import triton


def median_ms(fn, slow=False):
    """Median time of `fn()` in ms; `slow` backends get one warm-up and one timed call."""
    if not slow:
        return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(1):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return times[0]


def copy_bandwidth(gib=2):
    """Device-to-device copy of `gib` GiB, counting bytes read plus written, in GB/s."""
    n = gib * (1 << 30) // 4
    src = torch.randn(n, device="cuda")
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src))
    del src, dst
    torch.cuda.empty_cache()
    return 2 * n * 4 / ms / 1e6


def start(doc):
    """The sweeps' common start: parse `--out` (created), measure the copy bandwidth, print both headers.

    Returns `(out_dir, copy_GBps)`.
    """
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--out", default="reports/benchmarks")
    out = ap.parse_args().out
    os.makedirs(out, exist_ok=True)
    copy_gbs = copy_bandwidth()
    print(f"# {hardware()}\n# copy {copy_gbs:.0f} GB/s", flush=True)
    return out, copy_gbs


def hardware():
    p = torch.cuda.get_device_properties(0)
    return (
        f"{p.name}, {p.multi_processor_count} SMs, {p.total_memory / 2**30:.0f} GiB; "
        f"torch {torch.__version__}, triton {triton.__version__}, python {platform.python_version()}"
    )


def write_atomic(path, text):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_csv(path, rows):
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    write_atomic(path, buf.getvalue())


def markdown(rows, cols):
    """A markdown table of `rows` (dicts) restricted to `cols`."""
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def stamp():
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
